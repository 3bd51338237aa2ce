package rbac

import (
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
)

const roleDefinitionsSegment = "/providers/Microsoft.Authorization/roleDefinitions/"

// ParseRoleDefinitionID takes a role definition id in any of the forms ARM
// clients send and returns its GUID in lower case and the scope it was
// addressed under:
//
//	/providers/Microsoft.Authorization/roleDefinitions/{guid}                  scope "/"
//	/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}  scope "/subscriptions/{sub}"
//	{guid}                                                                     scope ""
//
// Clients send the subscription form and ARM answers with the tenant form, so
// callers should compare roles by GUID alone. Matching ignores case. Any other
// shape is an errs.Invalid error with ARM's code InvalidRoleDefinitionId.
func ParseRoleDefinitionID(s string) (guid, scope string, err error) {
	if isGUID(s) {
		return strings.ToLower(s), "", nil
	}
	i := lastIndexFold(s, roleDefinitionsSegment)
	if i < 0 {
		return "", "", invalidRoleDefinitionID(s)
	}
	g := s[i+len(roleDefinitionsSegment):]
	if !isGUID(g) {
		return "", "", invalidRoleDefinitionID(s)
	}
	prefix := s[:i]
	switch {
	case prefix == "":
		scope = "/"
	case isSubscriptionScope(prefix):
		scope = prefix
	default:
		return "", "", invalidRoleDefinitionID(s)
	}
	return strings.ToLower(g), scope, nil
}

func invalidRoleDefinitionID(s string) error {
	return errs.E(errs.Invalid, "InvalidRoleDefinitionId",
		"The role definition ID '%s' is not valid.", s).WithTarget("roleDefinitionId")
}

// isSubscriptionScope reports whether s is exactly "/subscriptions/{sub}".
func isSubscriptionScope(s string) bool {
	const seg = "/subscriptions/"
	if len(s) <= len(seg) || !strings.EqualFold(s[:len(seg)], seg) {
		return false
	}
	return !strings.Contains(s[len(seg):], "/")
}

// lastIndexFold is strings.LastIndex ignoring ASCII case, without lowering a
// copy of s.
func lastIndexFold(s, sub string) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// isGUID reports whether s is a GUID in its 8-4-4-4-12 hexadecimal form,
// the only form ARM uses in ids.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
