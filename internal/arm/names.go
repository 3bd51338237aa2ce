package arm

import (
	"regexp"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
)

// nameRule is Azure's naming rule of one resource type.
type nameRule struct {
	valid func(string) bool
	code  string // the ARM error code Azure answers with
	// message formats the refusal; %s is the name.
	message string
}

func matches(re string, more ...func(string) bool) func(string) bool {
	r := regexp.MustCompile(re)
	return func(s string) bool {
		if !r.MatchString(s) {
			return false
		}
		for _, f := range more {
			if !f(s) {
				return false
			}
		}
		return true
	}
}

func notEndingIn(suffix string) func(string) bool {
	return func(s string) bool { return !strings.HasSuffix(s, suffix) }
}

const guidPattern = `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`

// nameRules holds the naming rules of the types coffer serves, keyed by
// the lower-cased full type. Subscriptions, resource groups and role ids
// answer with the codes Azure uses for them; the rest with
// InvalidResourceName.
var nameRules = map[string]nameRule{
	"microsoft.resources/subscriptions": {
		valid: matches(guidPattern), code: "InvalidSubscriptionId",
		message: "The provided subscription identifier '%s' is malformed or invalid.",
	},
	// Resource groups: 1-90 letters, digits, '_', '(', ')', '-', '.', not
	// ending in '.' (resource-name-rules, Microsoft.Resources).
	"microsoft.resources/resourcegroups": {
		valid: matches(`^[-\w._()]{1,90}$`, notEndingIn(".")), code: "InvalidResourceGroup",
		message: "The provided resource group name '%s' has these invalid characters or length: resource group names are 1-90 letters, digits, '_', '-', '.', '(' or ')', and do not end with '.'.",
	},
	// Disks and snapshots: 1-80 letters, digits, '_', '.', '-', starting
	// with a letter or digit and ending with a letter, digit or '_'
	// (resource-name-rules, Microsoft.Compute).
	"microsoft.compute/disks": {
		valid: matches(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`), code: "InvalidResourceName",
		message: "The resource name '%s' is invalid: disk names are 1 to 80 letters, digits, '_', '.' or '-', start with a letter or digit and end with a letter, digit or '_'.",
	},
	"microsoft.compute/snapshots": {
		valid: matches(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$`), code: "InvalidResourceName",
		message: "The resource name '%s' is invalid: snapshot names are 1 to 80 letters, digits, '_', '.' or '-', start with a letter or digit and end with a letter, digit or '_'.",
	},
	// The DataProtection OpenAPI (stable 2026-06-01) gives vaultName
	// minLength 2, maxLength 50 and ^[A-Za-z][-A-Za-z0-9]*[A-Za-z0-9]$.
	"microsoft.dataprotection/backupvaults": {
		valid: matches(`^[A-Za-z][-A-Za-z0-9]{0,48}[A-Za-z0-9]$`), code: "InvalidResourceName",
		message: "The backup vault name '%s' is invalid: use 2 to 50 letters, digits or '-', starting with a letter and ending with a letter or digit.",
	},
	// The OpenAPI gives backupPolicyName no pattern; this is the rule the
	// policy handler has applied since it was written.
	"microsoft.dataprotection/backupvaults/backuppolicies": {
		valid: matches(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,149}$`), code: "InvalidResourceName",
		message: "The backup policy name '%s' is invalid: use up to 150 letters, digits, '_', '.' and '-', starting with a letter or digit.",
	},
	// The OpenAPI gives backupInstanceName no pattern. PowerShell names an
	// instance <diskResourceGroup>-<diskName>-<guid>, so the rule is what
	// those parts may hold: letters, digits, '_', '.', '-', '(', ')', up to
	// 90+1+80+1+36 = 208 characters, starting with a letter or digit and
	// not ending with '.'.
	"microsoft.dataprotection/backupvaults/backupinstances": {
		valid: matches(`^[A-Za-z0-9][A-Za-z0-9_.()-]{0,207}$`, notEndingIn(".")), code: "InvalidResourceName",
		message: "The backup instance name '%s' is invalid: use up to 208 letters, digits, '_', '.', '-', '(' or ')', starting with a letter or digit and not ending with '.'.",
	},
	"microsoft.authorization/roleassignments": {
		valid: matches(guidPattern), code: "InvalidRoleAssignmentId",
		message: "The role assignment ID '%s' is not valid. The role assignment ID must be a GUID.",
	},
	"microsoft.authorization/roledefinitions": {
		valid: matches(guidPattern), code: "InvalidRoleDefinitionId",
		message: "The role definition ID '%s' must be a GUID.",
	},
}

// ValidateName checks name against Azure's naming rule for resources of
// type typ (e.g. "Microsoft.Compute/disks"), and returns an Invalid error
// whose message states the rule. Types without a rule accept any name;
// the id around it has already refused bytes no name may hold.
func ValidateName(typ, name string) error {
	rule, ok := nameRules[strings.ToLower(typ)]
	if !ok || rule.valid(name) {
		return nil
	}
	return errs.E(errs.Invalid, rule.code, rule.message, shown(name))
}

// validateNames checks every name along id against its type's rule, the
// outermost first, so a bad group is reported before a bad disk in it.
func validateNames(id ResourceID) error {
	var chain []ResourceID
	for n := id; !n.IsZero(); n = n.Parent() {
		chain = append(chain, n)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := ValidateName(chain[i].Type(), chain[i].Name()); err != nil {
			return err
		}
	}
	return nil
}
