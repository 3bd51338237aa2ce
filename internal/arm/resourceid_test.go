package arm

import (
	"errors"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

const testSub = "11111111-2222-3333-4444-555555555555"

func TestParseResourceID(t *testing.T) {
	sub := "/subscriptions/" + testSub
	cases := []struct {
		in                             string
		canonical, typ, provider, name string
		group, parent                  string
	}{
		{sub, sub, "Microsoft.Resources/subscriptions", "Microsoft.Resources", testSub, "", ""},
		{"/SUBSCRIPTIONS/" + testSub + "/RESOURCEGROUPS/My-RG", sub + "/resourceGroups/My-RG",
			"Microsoft.Resources/resourceGroups", "Microsoft.Resources", "My-RG", "My-RG", sub},
		{sub + "/resourcegroups/rg/PROVIDERS/microsoft.compute/DISKS/Data_1", sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/Data_1",
			"Microsoft.Compute/disks", "Microsoft.Compute", "Data_1", "rg", sub + "/resourceGroups/rg"},
		{sub + "/resourceGroups/rg/providers/Microsoft.DataProtection/BackupVaults/v/backupinstances/bi",
			sub + "/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/bi",
			"Microsoft.DataProtection/backupVaults/backupInstances", "Microsoft.DataProtection", "bi", "rg",
			sub + "/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v"},
		{sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d/providers/microsoft.authorization/roleassignments/a",
			sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d/providers/Microsoft.Authorization/roleAssignments/a",
			"Microsoft.Authorization/roleAssignments", "Microsoft.Authorization", "a", "rg",
			sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d"},
		{"/providers/Microsoft.Authorization/roleDefinitions/r", "/providers/Microsoft.Authorization/roleDefinitions/r",
			"Microsoft.Authorization/roleDefinitions", "Microsoft.Authorization", "r", "", ""},
		{sub + "/providers/Microsoft.Compute/locations/westus/operations/op1", sub + "/providers/Microsoft.Compute/locations/westus/operations/op1",
			"Microsoft.Compute/locations/operations", "Microsoft.Compute", "op1", "", sub + "/providers/Microsoft.Compute/locations/westus"},
		{sub + "/resourceGroups/rg/providers/Contoso.Widgets/Gizmos/g", sub + "/resourceGroups/rg/providers/Contoso.Widgets/Gizmos/g",
			"Contoso.Widgets/Gizmos", "Contoso.Widgets", "g", "rg", sub + "/resourceGroups/rg"},
		{sub + "/resourceGroups/Ünïcode", sub + "/resourceGroups/Ünïcode", "Microsoft.Resources/resourceGroups", "Microsoft.Resources", "Ünïcode", "Ünïcode", sub},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			id, err := ParseResourceID(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tc.canonical || id.Type() != tc.typ || id.Provider() != tc.provider || id.Name() != tc.name ||
				id.ResourceGroup() != tc.group || id.Parent().String() != tc.parent {
				t.Fatalf("got %q type %q provider %q name %q group %q parent %q", id, id.Type(), id.Provider(), id.Name(), id.ResourceGroup(), id.Parent())
			}
			if id.Key() != strings.ToLower(tc.canonical) || !id.Is(strings.ToUpper(tc.typ)) || id.IsZero() {
				t.Fatalf("key %q, Is %v", id.Key(), id.Is(strings.ToUpper(tc.typ)))
			}
			if !strings.HasPrefix(tc.in, "/providers") && id.Subscription() != testSub {
				t.Fatalf("subscription %q", id.Subscription())
			}
			if tc.group != "" && id.GroupID().String() != sub+"/resourceGroups/"+tc.group {
				t.Fatalf("group id %q", id.GroupID())
			}
			upper, err := ParseResourceID(strings.ToUpper(tc.in))
			if err != nil || !upper.Equal(id) {
				t.Fatalf("upper-case spelling %q is not equal: %v", upper, err)
			}
		})
	}
}

func TestParseResourceIDRefuses(t *testing.T) {
	sub := "/subscriptions/" + testSub
	for _, in := range []string{
		"", "subscriptions/x", "/", "/subscriptions", sub + "/", sub + "//resourceGroups/rg", sub + "/resourceGroups",
		sub + "/resourceGroups/rg/", sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks",
		sub + "/resourceGroups/a%2Fb", sub + "/resourceGroups/x\x00y", sub + "/resourceGroups/x\xffy", sub + "/resourceGroups/..",
		sub + "/resourceGroups/.", sub + "/resourceGroups/ rg", sub + "/resourceGroups/rg\t", sub + "/resourceGroups/a\\b",
		"/tenants/x", sub + "/resourceGroups/rg/disks",
	} {
		_, err := ParseResourceID(in)
		var e *errs.Error
		if err == nil || !errors.As(err, &e) || e.Kind != errs.Invalid || e.Code != "InvalidResourceId" {
			t.Errorf("ParseResourceID(%q) = %v, want InvalidResourceId", in, err)
			continue
		}
		if !strings.Contains(e.Message, shown(in)) {
			t.Errorf("message %q does not name the id", e.Message)
		}
	}
}

func TestResourceIDConstructors(t *testing.T) {
	sub := "/subscriptions/" + testSub
	group := GroupID(testSub, "rg")
	if group.String() != sub+"/resourceGroups/rg" || !group.Is("Microsoft.Resources/resourceGroups") {
		t.Fatalf("GroupID = %q", group)
	}
	disk := NewResourceID(testSub, "rg", "microsoft.compute/DISKS", "d1")
	if disk.String() != sub+"/resourceGroups/rg/providers/Microsoft.Compute/disks/d1" || !disk.Parent().Equal(group) {
		t.Fatalf("disk = %q parent %q", disk, disk.Parent())
	}
	policy := NewResourceID(testSub, "rg", "Microsoft.DataProtection/backupVaults/backupPolicies", "v", "p")
	if policy.String() != sub+"/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupPolicies/p" ||
		policy.Type() != "Microsoft.DataProtection/backupVaults/backupPolicies" || policy.Name() != "p" {
		t.Fatalf("policy = %q type %q", policy, policy.Type())
	}
	vault := policy.Parent()
	for _, tc := range []struct {
		got  ResourceID
		want string
	}{
		{group.Child("Microsoft.Compute/disks", "d1"), disk.String()},
		{vault.Child("backupPolicies", "p"), policy.String()},
		{vault.Child("Microsoft.DataProtection/backupVaults/backupPolicies", "p"), policy.String()},
		{disk.Child("Microsoft.Authorization/roleAssignments", "a"), disk.String() + "/providers/Microsoft.Authorization/roleAssignments/a"},
		{build(sub).Child("resourceGroups", "rg"), group.String()},
		{ResourceID{}.Child("disks", "d"), ""},
		{GroupID(testSub, ""), ""},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	var zero ResourceID
	if !zero.IsZero() || zero.Type() != "" || zero.Provider() != "" || !zero.Parent().IsZero() || !zero.GroupID().IsZero() || zero.Is("") {
		t.Fatal("zero id is not empty")
	}
	if !build(sub).Parent().IsZero() {
		t.Fatal("a subscription has a parent")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewResourceID with too few names did not panic")
		}
	}()
	NewResourceID(testSub, "rg", "Microsoft.DataProtection/backupVaults/backupPolicies", "v")
}

func TestLocationAndTags(t *testing.T) {
	if NormalizeLocation(" West US 2 ") != "westus2" {
		t.Fatal(NormalizeLocation(" West US 2 "))
	}
	blank, west := "  ", "westus"
	for _, tc := range []struct {
		loc  *string
		code string
	}{{nil, "LocationRequired"}, {&blank, "LocationRequired"}, {&west, ""}} {
		if got := codeOf(CheckLocation(tc.loc)); got != tc.code {
			t.Errorf("CheckLocation: %q, want %q", got, tc.code)
		}
	}
	many := map[string]string{}
	for i := range 51 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, tc := range []struct {
		tags map[string]string
		code string
	}{
		{map[string]string{"env": "prod"}, ""},
		{many, "InvalidTagCount"},
		{map[string]string{"a/b": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"": "v"}, "InvalidTagNameCharacters"},
		{map[string]string{strings.Repeat("k", 513): "v"}, "InvalidTagNameCharacters"},
		{map[string]string{"k": strings.Repeat("v", 257)}, "InvalidTagValueLength"},
	} {
		if got := codeOf(CheckTags(&tc.tags)); got != tc.code {
			t.Errorf("CheckTags: %q, want %q", got, tc.code)
		}
	}
	if CheckTags(nil) != nil {
		t.Fatal("nil tags refused")
	}
}

func codeOf(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// FuzzParseResourceID: parsing never panics, and an accepted id is
// canonical: its String parses to the same id, and its Key to the same key.
func FuzzParseResourceID(f *testing.F) {
	sub := "/subscriptions/" + testSub
	for _, s := range []string{
		sub, sub + "/resourceGroups/rg", sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d",
		sub + "/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/b",
		sub + "/providers/Microsoft.Compute/locations/westus/operations/o", "/providers/Microsoft.Authorization/roleDefinitions/r",
		sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d/providers/Microsoft.Authorization/roleAssignments/a",
		sub + "/providers/Microsoft.Compute", "/subscriptions/x/locations", sub + "/resourceGroups/x\xffy", "//", "/providers/providers/providers",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseResourceID(s)
		if err != nil {
			if !id.IsZero() {
				t.Fatalf("error %v with id %q", err, id)
			}
			return
		}
		again, err := ParseResourceID(id.String())
		if err != nil {
			t.Fatalf("%q parsed to %q, which does not parse: %v", s, id, err)
		}
		if again != id {
			t.Fatalf("%q: %+v reparses to %+v", s, id, again)
		}
		if !strings.EqualFold(id.String(), s) {
			t.Fatalf("%q canonicalized to a different id %q", s, id)
		}
		lower, err := ParseResourceID(id.Key())
		if err != nil || lower.Key() != id.Key() || !lower.Equal(id) {
			t.Fatalf("key %q of %q: %v, %q", id.Key(), s, err, lower.Key())
		}
		if p := id.Parent(); !p.IsZero() && !strings.HasPrefix(id.String(), p.String()+"/") {
			t.Fatalf("parent %q is not a prefix of %q", p, id)
		}
	})
}
