package rbac

import (
	"fmt"
	"testing"
)

const (
	sub     = "/subscriptions/00000000-0000-0000-0000-000000000001"
	rg      = sub + "/resourceGroups/rg"
	rg2     = sub + "/resourceGroups/rg2"
	disk    = rg + "/providers/Microsoft.Compute/disks/d1"
	vaultID = "11111111-1111-1111-1111-111111111111" // the vault identity's principal id
	alice   = "a1ce0000-0000-4000-8000-00000000a11c"

	ownerID       = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	contributorID = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	readerID      = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	diskBackupID  = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	diskRestoreID = "b50d9833-a0cb-478e-945f-707fcc997c13"
	customID      = "33333333-3333-3333-3333-333333333333"
	narrowedID    = "44444444-4444-4444-4444-444444444444"
)

// customRole is a tenant's own role: it reads disks and manages snapshots in
// one subscription, but may not delete them.
func customRole() RoleDefinition {
	return RoleDefinition{
		ID:       customID,
		RoleName: "Snapshot Keeper",
		RoleType: CustomRoleType,
		Permissions: []Permission{{
			Actions:    []string{"Microsoft.Compute/disks/read", "Microsoft.Compute/snapshots/*"},
			NotActions: []string{"Microsoft.Compute/snapshots/delete"},
		}},
		AssignableScopes: []string{sub},
	}
}

// narrowedRole is a custom role whose assignable scopes were narrowed to one
// resource group after it had been assigned at the subscription, and whose
// actions were widened to everything: the shape of a privilege escalation.
func narrowedRole() RoleDefinition {
	return RoleDefinition{
		ID:               narrowedID,
		RoleName:         "Narrowed",
		RoleType:         CustomRoleType,
		Permissions:      []Permission{{Actions: []string{"*"}}},
		AssignableScopes: []string{rg},
	}
}

func testIndex(t testing.TB) *RoleIndex {
	t.Helper()
	return NewRoleIndex(append(BuiltInRoles(), customRole(), narrowedRole()))
}

func role(t testing.TB, idOrName string) RoleDefinition {
	t.Helper()
	r, ok := BuiltInRole(idOrName)
	if !ok {
		t.Fatalf("built-in role %q missing", idOrName)
	}
	return r
}

func TestMatchAction(t *testing.T) {
	tests := []struct {
		pattern, action string
		want            bool
	}{
		{"*", "Microsoft.Compute/disks/write", true},
		{"*/read", "Microsoft.Compute/disks/read", true},
		{"*/read", "Microsoft.Compute/disks/write", false},
		{"*/read", "Microsoft.Compute/disks/beginGetAccess/action", false},
		{"*/read", "read", false}, // "*/" needs a slash before the verb
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/roleAssignments/read", true},
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/policies/audit/read", true},
		{"Microsoft.Authorization/*/read", "Microsoft.Authorization/roleAssignments/write", false},
		{"Microsoft.Authorization/*/read", "Microsoft.Compute/disks/read", false},
		{"Microsoft.Compute/*", "Microsoft.Compute/disks/write", true},
		{"Microsoft.Compute/*", "Microsoft.Compute/snapshots/beginGetAccess/action", true},
		{"Microsoft.Compute/*", "Microsoft.ComputeX/disks/write", false},
		{"Microsoft.Compute/disks/read", "microsoft.compute/DISKS/READ", true},
		{"MICROSOFT.AUTHORIZATION/*/WRITE", "Microsoft.Authorization/roleAssignments/write", true},
		{"Microsoft.Compute/disks/read", "Microsoft.Compute/disks/readx", false},
		{"Microsoft.Compute/disks/read", "Microsoft.Compute/disks/rea", false},
		{"Microsoft.*/disks/*/action", "Microsoft.Compute/disks/beginGetAccess/action", true},
		{"Microsoft.*/disks/*/action", "Microsoft.Compute/snapshots/beginGetAccess/action", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXcYb", false},
		{"**", "anything", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" ~ "+tt.action, func(t *testing.T) {
			if got := MatchAction(tt.pattern, tt.action); got != tt.want {
				t.Errorf("MatchAction(%q, %q) = %v, want %v", tt.pattern, tt.action, got, tt.want)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	twoBlocks := RoleDefinition{
		ID:       "44444444-4444-4444-4444-444444444444",
		RoleType: CustomRoleType,
		Permissions: []Permission{
			{Actions: []string{"Microsoft.Compute/*"}, NotActions: []string{"Microsoft.Compute/disks/delete"}},
			{Actions: []string{"Microsoft.Compute/disks/delete"}},
		},
	}
	dataRole := RoleDefinition{
		Permissions: []Permission{{
			DataActions:    []string{"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"},
			NotDataActions: []string{"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"},
		}},
	}
	tests := []struct {
		name   string
		role   RoleDefinition
		action string
		want   bool
	}{
		{"owner anything", role(t, "Owner"), "Microsoft.Authorization/roleAssignments/write", true},
		{"contributor writes disks", role(t, "Contributor"), "Microsoft.Compute/disks/write", true},
		{"contributor reads role assignments", role(t, "Contributor"), "Microsoft.Authorization/roleAssignments/read", true},
		{"contributor cannot assign roles", role(t, "Contributor"), "Microsoft.Authorization/roleAssignments/write", false},
		{"contributor cannot delete assignments", role(t, "Contributor"), "Microsoft.Authorization/roleAssignments/delete", false},
		{"contributor cannot elevate", role(t, "Contributor"), "Microsoft.Authorization/elevateAccess/action", false},
		{"contributor cannot share galleries", role(t, "Contributor"), "Microsoft.Compute/galleries/share/action", false},
		{"contributor notActions ignore case", role(t, "Contributor"), "MICROSOFT.AUTHORIZATION/ROLEDEFINITIONS/WRITE", false},
		{"reader reads", role(t, "Reader"), "Microsoft.Compute/disks/read", true},
		{"reader cannot write", role(t, "Reader"), "Microsoft.Compute/disks/write", false},
		{"reader cannot begin access", role(t, "Reader"), "Microsoft.Compute/disks/beginGetAccess/action", false},
		{"rbac admin assigns", role(t, "Role Based Access Control Administrator"), "Microsoft.Authorization/roleAssignments/write", true},
		{"rbac admin cannot define roles", role(t, "Role Based Access Control Administrator"), "Microsoft.Authorization/roleDefinitions/write", false},
		{"uaa defines roles", role(t, "User Access Administrator"), "Microsoft.Authorization/roleDefinitions/write", true},
		{"uaa cannot write disks", role(t, "User Access Administrator"), "Microsoft.Compute/disks/write", false},
		{"disk backup reader exports", role(t, "Disk Backup Reader"), "Microsoft.Compute/disks/beginGetAccess/action", true},
		{"disk backup reader cannot end access", role(t, "Disk Backup Reader"), "Microsoft.Compute/disks/endGetAccess/action", false},
		{"disk snapshot contributor snapshots", role(t, "Disk Snapshot Contributor"), "Microsoft.Compute/snapshots/write", true},
		{"disk snapshot contributor cannot write disks", role(t, "Disk Snapshot Contributor"), "Microsoft.Compute/disks/write", false},
		{"disk restore operator writes disks", role(t, "Disk Restore Operator"), "Microsoft.Compute/disks/write", true},
		{"disk restore operator cannot delete disks", role(t, "Disk Restore Operator"), "Microsoft.Compute/disks/delete", false},
		{"backup contributor restores", role(t, "Backup Contributor"), "Microsoft.DataProtection/backupVaults/backupInstances/restore/action", true},
		{"backup contributor cannot delete vaults", role(t, "Backup Contributor"), "Microsoft.DataProtection/backupVaults/delete", false},
		{"backup operator cannot delete instances", role(t, "Backup Operator"), "Microsoft.DataProtection/backupVaults/backupInstances/delete", false},
		{"backup reader cannot back up", role(t, "Backup Reader"), "Microsoft.DataProtection/backupVaults/backupInstances/backup/action", false},
		{"custom role evaluated like built-in", customRole(), "Microsoft.Compute/snapshots/write", true},
		{"custom role notActions", customRole(), "Microsoft.Compute/snapshots/delete", false},
		{"notActions subtract within block only", twoBlocks, "Microsoft.Compute/disks/delete", true},
		{"empty action", role(t, "Owner"), "", false},
		{"no permissions", RoleDefinition{}, "Microsoft.Compute/disks/read", false},
		{"data actions are not actions", dataRole, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Allows(tt.role, tt.action); got != tt.want {
				t.Errorf("Allows(%s, %q) = %v, want %v", tt.role.RoleName, tt.action, got, tt.want)
			}
		})
	}
}

func TestAllowsData(t *testing.T) {
	blobs := RoleDefinition{
		Permissions: []Permission{{
			Actions:        []string{"*"},
			DataActions:    []string{"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"},
			NotDataActions: []string{"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"},
		}},
	}
	tests := []struct {
		name   string
		role   RoleDefinition
		action string
		want   bool
	}{
		{"granted", blobs, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", true},
		{"notDataActions subtract", blobs, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete", false},
		{"other data action", blobs, "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read", false},
		{"owner has no data actions", role(t, "Owner"), "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", false},
		{"empty", blobs, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AllowsData(tt.role, tt.action); got != tt.want {
				t.Errorf("AllowsData(%q) = %v, want %v", tt.action, got, tt.want)
			}
		})
	}
}

func TestScopeCovers(t *testing.T) {
	tests := []struct {
		name            string
		assigned, scope string
		want            bool
	}{
		{"root covers subscription", "/", sub, true},
		{"root covers disk", "/", disk, true},
		{"root covers root", "/", "/", true},
		{"subscription covers itself", sub, sub, true},
		{"subscription covers group", sub, rg, true},
		{"subscription covers disk", sub, disk, true},
		{"group covers disk", rg, disk, true},
		{"disk covers itself", disk, disk, true},
		{"group does not cover sibling group", rg, rg2, false},
		{"group does not cover sibling's disk", rg, rg2 + "/providers/Microsoft.Compute/disks/d1", false},
		{"group does not cover prefix-sharing name", rg, rg + "x", false},
		{"disk does not cover its group", disk, rg, false},
		{"group does not cover subscription", rg, sub, false},
		{"subscription does not cover root", sub, "/", false},
		{"other subscription", "/subscriptions/00000000-0000-0000-0000-000000000002", disk, false},
		{"case-insensitive", "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001/RESOURCEGROUPS/RG", disk, true},
		{"trailing slash on assignment", rg + "/", disk, true},
		{"trailing slash on scope", rg, rg + "/", true},
		{"double trailing slash on root", "//", disk, true},
		{"empty assignment scope", "", disk, false},
		{"empty scope", "/", "", false},
		{"relative assignment scope", "subscriptions/00000000-0000-0000-0000-000000000001", disk, false},
		{"relative scope", "/", "subscriptions/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ScopeCovers(tt.assigned, tt.scope); got != tt.want {
				t.Errorf("ScopeCovers(%q, %q) = %v, want %v", tt.assigned, tt.scope, got, tt.want)
			}
		})
	}
}

func TestValidAssignableScope(t *testing.T) {
	tests := []struct {
		name  string
		role  RoleDefinition
		scope string
		want  bool
	}{
		{"built-in anywhere", role(t, "Reader"), disk, true},
		{"built-in at root", role(t, "Reader"), "/", true},
		{"custom inside its subscription", customRole(), rg, true},
		{"custom at its subscription", customRole(), sub, true},
		{"custom in another subscription", customRole(), "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg", false},
		{"custom at root", customRole(), "/", false},
		{"custom with several scopes", RoleDefinition{AssignableScopes: []string{rg2, rg}}, disk, true},
		{"no assignable scopes", RoleDefinition{}, disk, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidAssignableScope(tt.role, tt.scope); got != tt.want {
				t.Errorf("ValidAssignableScope(%s, %q) = %v, want %v", tt.role.RoleName, tt.scope, got, tt.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	idx := testIndex(t)
	assign := func(id, scope, roleID, principal string) Assignment {
		return Assignment{ID: scope + "/providers/Microsoft.Authorization/roleAssignments/" + id, Name: id, Scope: scope, RoleDefinitionID: roleID, PrincipalID: principal}
	}
	tests := []struct {
		name        string
		assignments []Assignment
		principal   string
		action      string
		scope       string
		want        bool
	}{
		{"deny by default", nil, alice, "Microsoft.Compute/disks/read", disk, false},
		{"reader at root reaches disk", []Assignment{assign("a1", "/", readerID, alice)}, alice, "Microsoft.Compute/disks/read", disk, true},
		{"reader at subscription reaches disk", []Assignment{assign("a1", sub, readerID, alice)}, alice, "Microsoft.Compute/disks/read", disk, true},
		{"disk backup reader on the disk", []Assignment{assign("a1", disk, diskBackupID, vaultID)}, vaultID, "Microsoft.Compute/disks/beginGetAccess/action", disk, true},
		{"disk backup reader on another disk", []Assignment{assign("a1", rg+"/providers/Microsoft.Compute/disks/d2", diskBackupID, vaultID)}, vaultID, "Microsoft.Compute/disks/beginGetAccess/action", disk, false},
		{"restore operator on group reaches new disk", []Assignment{assign("a1", rg, diskRestoreID, vaultID)}, vaultID, "Microsoft.Compute/disks/write", rg + "/providers/Microsoft.Compute/disks/restored", true},
		{"restore operator on sibling group", []Assignment{assign("a1", rg2, diskRestoreID, vaultID)}, vaultID, "Microsoft.Compute/disks/write", disk, false},
		{"assignment below the scope does not reach up", []Assignment{assign("a1", disk, ownerID, alice)}, alice, "Microsoft.Compute/disks/read", rg, false},
		{"other principal's assignment", []Assignment{assign("a1", "/", ownerID, vaultID)}, alice, "Microsoft.Compute/disks/read", disk, false},
		{"contributor writes disk", []Assignment{assign("a1", sub, contributorID, alice)}, alice, "Microsoft.Compute/disks/write", disk, true},
		{"contributor cannot assign roles", []Assignment{assign("a1", sub, contributorID, alice)}, alice, "Microsoft.Authorization/roleAssignments/write", rg, false},
		{"second role grants what first role's notActions withheld",
			[]Assignment{assign("a1", sub, contributorID, alice), assign("a2", rg, ownerID, alice)},
			alice, "Microsoft.Authorization/roleAssignments/write", disk, true},
		{"custom role", []Assignment{assign("a1", sub, customID, alice)}, alice, "Microsoft.Compute/snapshots/write", rg + "/providers/Microsoft.Compute/snapshots/s1", true},
		{"custom role notActions", []Assignment{assign("a1", sub, customID, alice)}, alice, "Microsoft.Compute/snapshots/delete", rg + "/providers/Microsoft.Compute/snapshots/s1", false},
		{"custom role assigned outside its assignable scopes grants nothing",
			[]Assignment{assign("a1", "/", customID, alice)}, alice, "Microsoft.Compute/disks/read", disk, false},
		{"custom role narrowed to a group no longer grants at the subscription",
			[]Assignment{assign("a1", sub, narrowedID, alice)}, alice, "Microsoft.Resources/subscriptions/resourceGroups/write", sub + "/resourceGroups/new", false},
		{"custom role narrowed to a group grants nothing inside it either",
			[]Assignment{assign("a1", sub, narrowedID, alice)}, alice, "Microsoft.Compute/disks/read", disk, false},
		{"custom role narrowed to a group grants through an assignment inside it",
			[]Assignment{assign("a1", rg, narrowedID, alice)}, alice, "Microsoft.Compute/disks/read", disk, true},
		{"unknown role grants nothing", []Assignment{assign("a1", "/", "55555555-5555-5555-5555-555555555555", alice)}, alice, "Microsoft.Compute/disks/read", disk, false},
		{"role id in upper case", []Assignment{assign("a1", sub, "ACDD72A7-3385-48EF-BD42-F606FBA81AE7", alice)}, alice, "Microsoft.Compute/disks/read", disk, true},
		{"principal in upper case", []Assignment{assign("a1", sub, readerID, alice)}, "A1CE0000-0000-4000-8000-00000000A11C", "MICROSOFT.COMPUTE/DISKS/READ", "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001/resourcegroups/RG/providers/microsoft.compute/disks/D1", true},
		{"empty principal", []Assignment{assign("a1", "/", ownerID, "")}, "", "Microsoft.Compute/disks/read", disk, false},
		{"empty action", []Assignment{assign("a1", "/", ownerID, alice)}, alice, "", disk, false},
		{"malformed scope", []Assignment{assign("a1", "/", ownerID, alice)}, alice, "Microsoft.Compute/disks/read", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.assignments, idx.Lookup, tt.principal, tt.action, tt.scope)
			if got.Allowed != tt.want {
				t.Fatalf("Decide(%s, %q, %q) = %+v, want allowed=%v", tt.principal, tt.action, tt.scope, got, tt.want)
			}
			if !got.Allowed && got != (Decision{}) {
				t.Errorf("refusal carries detail: %+v", got)
			}
			if got.Allowed && (got.AssignmentID == "" || got.RoleDefinitionID == "") {
				t.Errorf("grant does not name its assignment: %+v", got)
			}
		})
	}
}

func TestDecideNilRoles(t *testing.T) {
	as := []Assignment{{Scope: "/", RoleDefinitionID: ownerID, PrincipalID: alice}}
	if Decide(as, nil, alice, "Microsoft.Compute/disks/read", disk).Allowed {
		t.Fatal("allowed with no role lookup")
	}
}

// benchAssignments is a realistic spread: a few tenant-wide grants, many
// per-disk grants to vault identities, and the caller's own assignments at
// the end so Decide has to walk the list.
func benchAssignments(n int) []Assignment {
	roles := []string{readerID, diskBackupID, diskRestoreID, contributorID}
	as := make([]Assignment, 0, n)
	for i := 0; len(as) < n-3; i++ {
		principal := fmt.Sprintf("%08d-0000-0000-0000-000000000000", i%7)
		scope := fmt.Sprintf("%s/resourceGroups/rg%d/providers/Microsoft.Compute/disks/d%d", sub, i%5, i)
		as = append(as, Assignment{
			ID:               fmt.Sprintf("%s/providers/Microsoft.Authorization/roleAssignments/%d", scope, i),
			Scope:            scope,
			RoleDefinitionID: roles[i%len(roles)],
			PrincipalID:      principal,
		})
	}
	as = append(as,
		// A long role that grants neither benchmarked action, so every one of
		// its 89 patterns is tried first.
		Assignment{ID: "a-backup", Scope: sub, RoleDefinitionID: "5e467623-bb1f-42f4-a55d-6e525e11384b", PrincipalID: vaultID},
		Assignment{ID: "a-reader", Scope: rg2, RoleDefinitionID: readerID, PrincipalID: vaultID},
		Assignment{ID: "a-snap", Scope: rg, RoleDefinitionID: "7efff54f-a5b4-42b5-a1c5-5411624893ce", PrincipalID: vaultID},
	)
	return as
}

func BenchmarkDecide(b *testing.B) {
	idx := testIndex(b)
	as := benchAssignments(50)
	cases := []struct {
		name, action, scope string
		want                bool
	}{
		{"allowed", "Microsoft.Compute/snapshots/write", rg + "/providers/Microsoft.Compute/snapshots/s1", true},
		{"refused", "Microsoft.Compute/disks/delete", disk, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if got := Decide(as, idx.Lookup, vaultID, c.action, c.scope).Allowed; got != c.want {
				b.Fatalf("Decide = %v, want %v", got, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				Decide(as, idx.Lookup, vaultID, c.action, c.scope)
			}
		})
	}
}
