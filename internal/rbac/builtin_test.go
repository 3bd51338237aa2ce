package rbac

import (
	"reflect"
	"strings"
	"testing"
)

// publishedGUIDs returns the role definition GUIDs of Microsoft's built-in
// roles list (see builtin.go for the files they were read from).
func publishedGUIDs() map[string]string {
	return map[string]string{
		"Owner":                     "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
		"Contributor":               "b24988ac-6180-42a0-ab88-20f7382dd24c",
		"Reader":                    "acdd72a7-3385-48ef-bd42-f606fba81ae7",
		"User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
		"Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
		"Backup Contributor":                      "5e467623-bb1f-42f4-a55d-6e525e11384b",
		"Backup Operator":                         "00c29273-979b-4161-815c-10b084fb9324",
		"Backup Reader":                           "a795c7a0-d4a2-40c1-ae25-d81f01202912",
		"Disk Backup Reader":                      "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24",
		"Disk Snapshot Contributor":               "7efff54f-a5b4-42b5-a1c5-5411624893ce",
		"Disk Restore Operator":                   "b50d9833-a0cb-478e-945f-707fcc997c13",
		"Backup MUA Admin":                        "c2a970b4-16a7-4a51-8c84-8a8ea6ee0bb8",
		"Backup MUA Operator":                     "f54b6d04-23c6-443e-b462-9c16ab7b4a52",
	}
}

func TestBuiltInRolesPresent(t *testing.T) {
	for name, guid := range publishedGUIDs() {
		t.Run(name, func(t *testing.T) {
			byName, ok := BuiltInRole(name)
			if !ok {
				t.Fatalf("no built-in role named %q", name)
			}
			if byName.ID != guid {
				t.Errorf("%s has GUID %s, published %s", name, byName.ID, guid)
			}
			byID, ok := BuiltInRole(strings.ToUpper(guid))
			if !ok || byID.RoleName != name {
				t.Errorf("BuiltInRole(%s) = %q, %v; want %q", strings.ToUpper(guid), byID.RoleName, ok, name)
			}
			if r, ok := BuiltInRole(strings.ToLower(name)); !ok || r.ID != guid {
				t.Errorf("lookup by lower-case name failed: %q, %v", r.ID, ok)
			}
		})
	}
	if _, ok := BuiltInRole("Storage Blob Data Owner Of Nothing"); ok {
		t.Error("unknown role name found")
	}
	if _, ok := BuiltInRole(""); ok {
		t.Error("empty name found")
	}
}

func TestBuiltInRolesWellFormed(t *testing.T) {
	ids := map[string]string{}
	names := map[string]bool{}
	for _, r := range BuiltInRoles() {
		t.Run(r.RoleName, func(t *testing.T) {
			if !isGUID(r.ID) || r.ID != strings.ToLower(r.ID) {
				t.Errorf("ID %q is not a lower-case GUID", r.ID)
			}
			if other, dup := ids[r.ID]; dup {
				t.Errorf("GUID %s shared with %s", r.ID, other)
			}
			ids[r.ID] = r.RoleName
			if names[strings.ToLower(r.RoleName)] {
				t.Errorf("role name repeated")
			}
			names[strings.ToLower(r.RoleName)] = true
			if r.RoleType != BuiltInRoleType {
				t.Errorf("RoleType = %q", r.RoleType)
			}
			if r.Description == "" {
				t.Error("no description")
			}
			if !reflect.DeepEqual(r.AssignableScopes, []string{"/"}) {
				t.Errorf("AssignableScopes = %q", r.AssignableScopes)
			}
			if !r.CreatedOn.IsZero() || !r.UpdatedOn.IsZero() {
				t.Error("built-in carries dates")
			}
			if len(r.Permissions) != 1 {
				t.Fatalf("%d permission blocks, want 1", len(r.Permissions))
			}
			p := r.Permissions[0]
			// Empty, not nil, so the role serialises with [] like Azure's.
			if p.Actions == nil || p.NotActions == nil || p.DataActions == nil || p.NotDataActions == nil {
				t.Errorf("nil list in %+v", p)
			}
			for _, a := range append(append([]string{}, p.Actions...), p.NotActions...) {
				if a == "" || strings.TrimSpace(a) != a {
					t.Errorf("malformed action %q", a)
				}
			}
		})
	}
	if len(ids) != len(publishedGUIDs()) {
		t.Errorf("%d built-in roles, test knows %d: add the new ones to publishedGUIDs", len(ids), len(publishedGUIDs()))
	}
}

func TestBuiltInRolesDefinitions(t *testing.T) {
	tests := []struct {
		name string
		want Permission
	}{
		// The three disk roles exactly as shared/docs/azure-disk-backup-facts.md §3 gives them.
		{"Disk Backup Reader", Permission{
			Actions: []string{
				"Microsoft.Authorization/*/read",
				"Microsoft.Compute/disks/read",
				"Microsoft.Compute/disks/beginGetAccess/action",
			},
			NotActions: []string{}, DataActions: []string{}, NotDataActions: []string{},
		}},
		{"Disk Snapshot Contributor", Permission{
			Actions: []string{
				"Microsoft.Authorization/*/read",
				"Microsoft.Resources/subscriptions/resourceGroups/read",
				"Microsoft.Compute/snapshots/delete",
				"Microsoft.Compute/snapshots/write",
				"Microsoft.Compute/snapshots/read",
				"Microsoft.Compute/snapshots/beginGetAccess/action",
				"Microsoft.Compute/snapshots/endGetAccess/action",
				"Microsoft.Compute/disks/beginGetAccess/action",
				"Microsoft.Storage/storageAccounts/listkeys/action",
				"Microsoft.Storage/storageAccounts/write",
				"Microsoft.Storage/storageAccounts/read",
				"Microsoft.Storage/storageAccounts/delete",
			},
			NotActions: []string{}, DataActions: []string{}, NotDataActions: []string{},
		}},
		{"Disk Restore Operator", Permission{
			Actions: []string{
				"Microsoft.Authorization/*/read",
				"Microsoft.Resources/subscriptions/resourceGroups/read",
				"Microsoft.Compute/disks/write",
				"Microsoft.Compute/disks/read",
			},
			NotActions: []string{}, DataActions: []string{}, NotDataActions: []string{},
		}},
		{"Reader", Permission{
			Actions:    []string{"*/read"},
			NotActions: []string{}, DataActions: []string{}, NotDataActions: []string{},
		}},
		{"Owner", Permission{
			Actions:    []string{"*"},
			NotActions: []string{}, DataActions: []string{}, NotDataActions: []string{},
		}},
		{"Contributor", Permission{
			Actions: []string{"*"},
			NotActions: []string{
				"Microsoft.Authorization/*/Delete",
				"Microsoft.Authorization/*/Write",
				"Microsoft.Authorization/elevateAccess/Action",
				"Microsoft.Blueprint/blueprintAssignments/write",
				"Microsoft.Blueprint/blueprintAssignments/delete",
				"Microsoft.Compute/galleries/share/action",
				"Microsoft.Purview/consents/write",
				"Microsoft.Purview/consents/delete",
				"Microsoft.Resources/deploymentStacks/manageDenySetting/action",
				"Microsoft.Subscription/cancel/action",
				"Microsoft.Subscription/enable/action",
			},
			DataActions: []string{}, NotDataActions: []string{},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := role(t, tt.name)
			if !reflect.DeepEqual(r.Permissions, []Permission{tt.want}) {
				t.Errorf("permissions\n got %q\nwant %q", r.Permissions, []Permission{tt.want})
			}
		})
	}
}

// TestBackupRolesLength pins the published list lengths of the long backup
// roles (duplicates included), so an accidental edit shows up.
func TestBackupRolesLength(t *testing.T) {
	tests := []struct {
		name    string
		actions int
	}{
		{"Backup Contributor", 89},
		{"Backup Operator", 103},
		{"Backup Reader", 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := len(role(t, tt.name).Permissions[0].Actions); got != tt.actions {
				t.Errorf("%d actions, published list has %d", got, tt.actions)
			}
		})
	}
}

func TestBuiltInRolesFreshCopy(t *testing.T) {
	first := BuiltInRoles()
	first[0].RoleName = "changed"
	first[0].Permissions[0].Actions[0] = "changed"
	first[0].AssignableScopes[0] = "/subscriptions/changed"
	second := BuiltInRoles()
	if second[0].RoleName == "changed" || second[0].Permissions[0].Actions[0] == "changed" || second[0].AssignableScopes[0] != "/" {
		t.Fatal("BuiltInRoles shares state between calls")
	}
	r := role(t, "Reader")
	r.Permissions[0].Actions[0] = "*"
	if role(t, "Reader").Permissions[0].Actions[0] != "*/read" {
		t.Fatal("BuiltInRole shares state between calls")
	}
}

func TestRoleIndex(t *testing.T) {
	custom := customRole()
	replaced := role(t, "Reader")
	replaced.Description = "stored copy"
	idx := NewRoleIndex(append(BuiltInRoles(), custom, replaced))
	tests := []struct {
		name, id string
		want     string // role name, "" for not found
	}{
		{"built-in", readerID, "Reader"},
		{"upper case", strings.ToUpper(diskBackupID), "Disk Backup Reader"},
		{"custom", customID, "Snapshot Keeper"},
		{"unknown", "55555555-5555-5555-5555-555555555555", ""},
		{"by name is not by id", "Reader", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := idx.Lookup(tt.id)
			if ok != (tt.want != "") || r.RoleName != tt.want {
				t.Errorf("Lookup(%q) = %q, %v; want %q", tt.id, r.RoleName, ok, tt.want)
			}
		})
	}
	if r, _ := idx.Lookup(readerID); r.Description != "stored copy" {
		t.Error("a later definition with the same GUID did not win")
	}
}

// TestMUARolesSeparateApproval: the operator approves a guarded vault's
// critical operations and cannot change the guard; a Reader of the guard
// can read it but approves nothing.
func TestMUARolesSeparateApproval(t *testing.T) {
	role := func(name string) RoleDefinition {
		r, ok := BuiltInRole(name)
		if !ok {
			t.Fatalf("no role %q", name)
		}
		return r
	}
	approve := "Microsoft.DataProtection/resourceGuards/deleteProtectedItemRequests/action"
	cases := []struct {
		role, action string
		want         bool
	}{
		{"Backup MUA Operator", approve, true},
		{"Backup MUA Operator", "Microsoft.DataProtection/resourceGuards/disableSoftDeleteRequests/action", true},
		{"Backup MUA Operator", "Microsoft.DataProtection/resourceGuards/deleteResourceGuardProxyRequests/read", true},
		{"Backup MUA Operator", "Microsoft.DataProtection/resourceGuards/write", false},
		{"Backup MUA Operator", "Microsoft.DataProtection/resourceGuards/delete", false},
		{"Backup MUA Admin", "Microsoft.DataProtection/resourceGuards/write", true},
		{"Backup MUA Admin", approve, true},
		{"Backup MUA Admin", "Microsoft.DataProtection/backupVaults/write", false},
		{"Reader", "Microsoft.DataProtection/resourceGuards/read", true},
		{"Reader", approve, false},
	}
	for _, c := range cases {
		if got := Allows(role(c.role), c.action); got != c.want {
			t.Errorf("%s allows %s: %v, want %v", c.role, c.action, got, c.want)
		}
	}
}
