package arm

import (
	"strings"
	"unicode"
	"unicode/utf8"

	azarm "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/coffer-backup/coffer/internal/errs"
)

// ResourceID is a parsed, validated ARM resource id such as
// /subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/disks/D.
// The zero value is no id. It is comparable; two ids that differ only in
// case address the same resource, so compare with Equal and key maps and
// rows with Key.
type ResourceID struct {
	s      string // canonical text; "" for the zero id
	sub    string
	group  string
	ns     string // provider namespace of the leaf, canonical casing
	typ    string // full type of the leaf, canonical casing
	name   string
	parent int // len(s) of the parent's id; 0 when the parent is the tenant
}

// ParseResourceID parses an id from a client. The structure is azcore's
// (the parser the Azure SDKs use); on top of it every segment must be
// non-empty, valid UTF-8 without '%', control characters or surrounding
// spaces, and not "." or "..", because a name is later a path component,
// a SQL key and part of a log line.
func ParseResourceID(s string) (ResourceID, error) {
	if !strings.HasPrefix(s, "/") {
		return ResourceID{}, invalidID(s, "it must start with '/'")
	}
	for _, seg := range strings.Split(s[1:], "/") {
		if problem := segmentProblem(seg); problem != "" {
			return ResourceID{}, invalidID(s, problem)
		}
	}
	az, err := azarm.ParseResourceID(s)
	if err != nil {
		return ResourceID{}, invalidID(s, "it is not of the form /subscriptions/{id}/resourceGroups/{name}/providers/{namespace}/{type}/{name}")
	}
	// azcore drops empty segments and trims spaces; what it read must be
	// what the client sent, or two spellings would name one resource.
	if !strings.EqualFold(az.String(), s) {
		return ResourceID{}, invalidID(s, "it is not in canonical form")
	}
	return fromAzure(az), nil
}

// segmentProblem says what is wrong with one segment of an id or path, ""
// when nothing is.
func segmentProblem(seg string) string {
	switch {
	case seg == "":
		return "it has an empty segment"
	case seg == "." || seg == "..":
		return "'.' and '..' are not names"
	case !utf8.ValidString(seg):
		return "it is not valid UTF-8"
	case strings.TrimSpace(seg) != seg:
		return "a segment begins or ends with white space"
	}
	for _, r := range seg {
		if r == '%' || r == '/' || r == '\\' || unicode.IsControl(r) {
			return "a segment holds '%', '/', '\\' or a control character"
		}
	}
	return ""
}

func invalidID(s, why string) error {
	return errs.E(errs.Invalid, "InvalidResourceId", "The resource id '%s' is invalid: %s.", shown(s), why)
}

// shown is s made safe to echo in a message: bounded, valid UTF-8, no
// control characters.
func shown(s string) string {
	const max = 200
	var b strings.Builder
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) {
			r = '\uFFFD'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// build parses text this package composed from parts its caller vouches
// for; it returns the zero id when the parts do not form one.
func build(s string) ResourceID {
	az, err := azarm.ParseResourceID(s)
	if err != nil {
		return ResourceID{}
	}
	return fromAzure(az)
}

// fromAzure rewrites azcore's id with Azure's casing of the words coffer
// knows. azcore keeps the client's casing of types and does not say which
// segments are words and which names, so each node's share of the segments
// is read off the length of its own id.
func fromAzure(az *azarm.ResourceID) ResourceID {
	var chain []*azarm.ResourceID
	for n := az; n != nil && n.Parent != nil; n = n.Parent {
		chain = append(chain, n)
	}
	segs := strings.Split(strings.TrimPrefix(az.String(), "/"), "/")
	var b strings.Builder
	id := ResourceID{sub: az.SubscriptionID, group: az.ResourceGroupName}
	pos := 0
	for i := len(chain) - 1; i >= 0; i-- {
		node := chain[i]
		end := strings.Count(node.String(), "/")
		part := segs[pos:end]
		ns := node.ResourceType.Namespace
		switch {
		case len(part) == 4: // providers/{namespace}/{type}/{name}
			part[0], part[1], part[2] = "providers", canonicalNamespace(part[1]), canonicalWord(part[1], part[2])
		case len(part) == 2 && node.ResourceType.String() == azarm.ProviderResourceType.String():
			part[0], part[1] = "providers", canonicalNamespace(part[1])
		default: // {type}/{name} or a lone {type}
			part[0] = canonicalWord(ns, part[0])
		}
		if i == 0 {
			id.parent = b.Len()
			if len(part) > 1 {
				id.name = part[len(part)-1]
			}
		}
		for _, p := range part {
			b.WriteByte('/')
			b.WriteString(p)
		}
		pos = end
	}
	id.s = b.String()
	id.ns = canonicalNamespace(az.ResourceType.Namespace)
	types := make([]string, len(az.ResourceType.Types))
	for i, t := range az.ResourceType.Types {
		types[i] = canonicalWord(az.ResourceType.Namespace, t)
	}
	id.typ = id.ns + "/" + strings.Join(types, "/")
	return id
}

// casing is Azure's spelling of the provider namespaces and type words
// coffer serves, keyed by their lower case.
var casing = map[string]struct {
	namespace string
	words     map[string]string
}{
	"microsoft.resources":      {"Microsoft.Resources", words("subscriptions", "resourceGroups", "providers", "tenants", "locations", "operationresults")},
	"microsoft.compute":        {"Microsoft.Compute", words("disks", "snapshots", "locations", "operations")},
	"microsoft.authorization":  {"Microsoft.Authorization", words("roleAssignments", "roleDefinitions")},
	"microsoft.dataprotection": {"Microsoft.DataProtection", words("backupVaults", "backupPolicies", "backupInstances", "backupJobs", "recoveryPoints", "deletedBackupInstances", "operationResults", "operationStatus", "locations", "operations")},
}

func words(ws ...string) map[string]string {
	m := make(map[string]string, len(ws))
	for _, w := range ws {
		m[strings.ToLower(w)] = w
	}
	return m
}

func canonicalNamespace(ns string) string {
	if c, ok := casing[strings.ToLower(ns)]; ok {
		return c.namespace
	}
	return ns
}

func canonicalWord(ns, w string) string {
	if c, ok := casing[strings.ToLower(ns)]; ok {
		if cw, ok := c.words[strings.ToLower(w)]; ok {
			return cw
		}
	}
	return w
}

// String is the canonical id: Azure's casing of the words, the names as
// given.
func (id ResourceID) String() string { return id.s }

// Key is the lower-cased id, for maps and metadata rows.
func (id ResourceID) Key() string { return strings.ToLower(id.s) }

// Equal reports whether id and other address the same resource.
func (id ResourceID) Equal(other ResourceID) bool { return id.Key() == other.Key() }

// IsZero reports whether id is no id.
func (id ResourceID) IsZero() bool { return id.s == "" }

// Subscription is the subscription id, "" above subscriptions.
func (id ResourceID) Subscription() string { return id.sub }

// ResourceGroup is the resource group name, "" above groups.
func (id ResourceID) ResourceGroup() string { return id.group }

// Provider is the namespace of the resource's type, e.g. Microsoft.Compute.
func (id ResourceID) Provider() string {
	if id.IsZero() {
		return ""
	}
	return id.ns
}

// Type is the full resource type, e.g. Microsoft.Compute/disks or
// Microsoft.DataProtection/backupVaults/backupInstances.
func (id ResourceID) Type() string {
	if id.IsZero() {
		return ""
	}
	return id.typ
}

// Is reports whether the resource is of type typ, compared
// case-insensitively.
func (id ResourceID) Is(typ string) bool { return !id.IsZero() && strings.EqualFold(id.typ, typ) }

// Name is the resource's own name.
func (id ResourceID) Name() string { return id.name }

// Parent is the id the resource lives in (a disk's group, a backup
// instance's vault); zero for a subscription.
func (id ResourceID) Parent() ResourceID {
	if id.parent == 0 {
		return ResourceID{}
	}
	return build(id.s[:id.parent])
}

// GroupID is the /subscriptions/S/resourceGroups/G prefix; zero when the
// id is not in a resource group.
func (id ResourceID) GroupID() ResourceID {
	if id.group == "" {
		return ResourceID{}
	}
	return GroupID(id.sub, id.group)
}

// Child is the resource named name of type typ under id. typ is either the
// child's own type word ("backupInstances"), the full type of a child
// ("Microsoft.DataProtection/backupVaults/backupInstances") or the type of
// a resource of another provider placed under id
// ("Microsoft.Compute/disks" under a group, "Microsoft.Authorization/roleAssignments"
// under anything). The parts are trusted; client text goes through
// ParseResourceID.
func (id ResourceID) Child(typ, name string) ResourceID {
	if id.IsZero() {
		return ResourceID{}
	}
	prefix := id.Type() + "/"
	switch {
	case !strings.Contains(typ, "/"):
		return build(id.s + "/" + typ + "/" + name)
	case len(typ) > len(prefix) && strings.EqualFold(typ[:len(prefix)], prefix) && !strings.Contains(typ[len(prefix):], "/"):
		return build(id.s + "/" + typ[len(prefix):] + "/" + name)
	default:
		return build(id.s + "/providers/" + typ + "/" + name)
	}
}

// GroupID is the id of resource group group in subscription sub.
func GroupID(sub, group string) ResourceID {
	return build("/subscriptions/" + sub + "/resourceGroups/" + group)
}

// NewResourceID is the id of a resource of type typ in group group:
// NewResourceID(sub, "rg", "Microsoft.Compute/disks", "d1"), or for a
// nested type one name a level:
// NewResourceID(sub, "rg", "Microsoft.DataProtection/backupVaults/backupPolicies", "vault", "policy").
// The parts are trusted (client text goes through ParseResourceID); a
// count of names that does not fit typ is a bug at the call site and
// panics.
func NewResourceID(sub, group, typ string, names ...string) ResourceID {
	ns, rest, _ := strings.Cut(typ, "/")
	types := strings.Split(rest, "/")
	if ns == "" || rest == "" || len(types) != len(names) {
		panic("arm: NewResourceID(" + typ + ") needs one name a type level")
	}
	var b strings.Builder
	b.WriteString(GroupID(sub, group).String())
	b.WriteString("/providers/" + ns)
	for i, t := range types {
		b.WriteString("/" + t + "/" + names[i])
	}
	return build(b.String())
}

// NormalizeLocation lower-cases and drops spaces, as ARM echoes "West US"
// back as "westus".
func NormalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

// CheckLocation refuses a resource body without a location, as ARM does.
func CheckLocation(loc *string) error {
	if loc == nil || strings.TrimSpace(*loc) == "" {
		return errs.E(errs.Invalid, "LocationRequired", "The location property is required for this definition.").WithTarget("location")
	}
	return nil
}

// CheckTags applies ARM's tag rules: at most 50; names up to 512
// characters without <>%&\?/; values up to 256.
func CheckTags(tags *map[string]string) error {
	if tags == nil {
		return nil
	}
	if len(*tags) > 50 {
		return errs.E(errs.Invalid, "InvalidTagCount", "A resource may carry at most 50 tags, not %d.", len(*tags)).WithTarget("tags")
	}
	for k, v := range *tags {
		if k == "" || len(k) > 512 || strings.ContainsAny(k, "<>%&\\?/") {
			return errs.E(errs.Invalid, "InvalidTagNameCharacters", "The tag name '%s' is empty, longer than 512 characters or has one of <>%%&\\?/.", k).WithTarget("tags")
		}
		if len(v) > 256 {
			return errs.E(errs.Invalid, "InvalidTagValueLength", "The value of tag '%s' is longer than 256 characters.", k).WithTarget("tags")
		}
	}
	return nil
}
