package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/authorization/armauthorization/v2"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
	"github.com/google/uuid"
)

const (
	readerRole            = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	diskBackupReaderRole  = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	diskSnapshotContrib   = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
	diskRestoreOperator   = "b50d9833-a0cb-478e-945f-707fcc997c13"
	ownerRoleGUID         = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
	authorizationProvider = "/providers/Microsoft.Authorization/roleDefinitions/"
)

// TestRBACThroughSDK: a principal can do exactly what its role assignments
// allow, through the official armauthorization and armresources clients.
func TestRBACThroughSDK(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testRBAC(t, startServer(t, b.db(t))) })
	}
}

func testRBAC(t *testing.T, s *server) {
	ctx := context.Background()
	sub := newSubscription()
	adminCred, opts := s.sdk(s.token())
	adminGroups, _ := armresources.NewResourceGroupsClient(sub, adminCred, opts)
	if _, err := adminGroups.CreateOrUpdate(ctx, "shared", armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); err != nil {
		t.Fatal(err)
	}
	adminRA, _ := armauthorization.NewRoleAssignmentsClient(sub, adminCred, opts)

	alice := uuid.NewString()
	aliceCred, _ := s.sdk(s.token("--principal", alice))
	aliceGroups, _ := armresources.NewResourceGroupsClient(sub, aliceCred, opts)
	aliceRA, _ := armauthorization.NewRoleAssignmentsClient(sub, aliceCred, opts)

	// No roles: refused on read and write, with Azure's message.
	_, err := aliceGroups.Get(ctx, "shared", nil)
	if !hasStatus(err, http.StatusForbidden, "AuthorizationFailed") {
		t.Fatalf("read without roles: %v", err)
	}
	if !strings.Contains(err.Error(), "The client '"+alice+"' with object id '"+alice+"' does not have authorization to perform action 'Microsoft.Resources/subscriptions/resourceGroups/read' over scope '/subscriptions/"+sub+"/resourceGroups/shared'") {
		t.Fatalf("message: %v", err)
	}
	if _, err := aliceGroups.CreateOrUpdate(ctx, "mine", armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); !hasStatus(err, 403, "AuthorizationFailed") {
		t.Fatalf("write without roles: %v", err)
	}

	// Reader on the subscription: reads, cannot write or grant.
	subScope := "/subscriptions/" + sub
	name := uuid.NewString()
	created, err := adminRA.Create(ctx, subScope, name, armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{
			RoleDefinitionID: to.Ptr(subScope + authorizationProvider + readerRole),
			PrincipalID:      to.Ptr(alice),
			PrincipalType:    to.Ptr(armauthorization.PrincipalTypeUser),
		}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *created.Name != name || *created.Properties.Scope != subScope || *created.Type != "Microsoft.Authorization/roleAssignments" {
		t.Fatalf("created %+v", created.RoleAssignment)
	}
	if _, err := aliceGroups.Get(ctx, "shared", nil); err != nil {
		t.Fatalf("Reader cannot read: %v", err)
	}
	if _, err := aliceGroups.CreateOrUpdate(ctx, "mine", armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); !hasStatus(err, 403, "AuthorizationFailed") {
		t.Fatalf("Reader created a group: %v", err)
	}
	_, err = aliceRA.Create(ctx, subScope, uuid.NewString(), armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{
			RoleDefinitionID: to.Ptr(authorizationProvider + readerRole), PrincipalID: to.Ptr(uuid.NewString()),
		}}, nil)
	if !hasStatus(err, 403, "AuthorizationFailed") || !strings.Contains(err.Error(), "Microsoft.Authorization/roleAssignments/write") {
		t.Fatalf("Reader granted a role: %v", err)
	}

	// The same principal, role and scope again under another name: 409.
	// The tenant form of the role id names the same role.
	_, err = adminRA.Create(ctx, subScope, uuid.NewString(), armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{
			RoleDefinitionID: to.Ptr(authorizationProvider + readerRole), PrincipalID: to.Ptr(alice),
		}}, nil)
	if !hasStatus(err, 409, "RoleAssignmentExists") {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := adminRA.Create(ctx, subScope, "not-a-guid", armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{
			RoleDefinitionID: to.Ptr(authorizationProvider + readerRole), PrincipalID: to.Ptr(alice),
		}}, nil); !hasStatus(err, 400, "InvalidRoleAssignmentId") {
		t.Fatalf("non-GUID name: %v", err)
	}

	// Get, by id, and the list forms with their filters.
	byID, err := adminRA.GetByID(ctx, *created.ID, nil)
	if err != nil || *byID.Properties.PrincipalID != alice {
		t.Fatalf("GetByID: %+v %v", byID, err)
	}
	diskScope := subScope + "/resourceGroups/shared/providers/Microsoft.Compute/disks/disk1"
	bob := uuid.NewString()
	diskGrant, err := adminRA.CreateByID(ctx, diskScope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString(),
		armauthorization.RoleAssignmentCreateParameters{Properties: &armauthorization.RoleAssignmentProperties{
			RoleDefinitionID: to.Ptr(authorizationProvider + diskBackupReaderRole), PrincipalID: to.Ptr(bob),
			PrincipalType: to.Ptr(armauthorization.PrincipalTypeServicePrincipal),
		}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	count := func(p interface {
		More() bool
	}, next func() ([]*armauthorization.RoleAssignment, error)) map[string]bool {
		ids := map[string]bool{}
		for p.More() {
			items, err := next()
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range items {
				ids[*a.Properties.PrincipalID] = true
			}
		}
		return ids
	}
	forSub := adminRA.NewListForSubscriptionPager(nil)
	subIDs := count(forSub, func() ([]*armauthorization.RoleAssignment, error) {
		p, err := forSub.NextPage(ctx)
		return p.Value, err
	})
	if !subIDs[alice] || !subIDs[bob] {
		t.Fatalf("subscription list lacks alice or bob: %v", subIDs)
	}
	forDisk := adminRA.NewListForResourcePager("shared", "Microsoft.Compute", "disks", "disk1",
		&armauthorization.RoleAssignmentsClientListForResourceOptions{Filter: to.Ptr("atScope()")})
	diskIDs := count(forDisk, func() ([]*armauthorization.RoleAssignment, error) {
		p, err := forDisk.NextPage(ctx)
		return p.Value, err
	})
	if !diskIDs[bob] || !diskIDs[alice] { // alice's is above the disk
		t.Fatalf("disk atScope() list: %v", diskIDs)
	}
	forBob := adminRA.NewListForScopePager(subScope, &armauthorization.RoleAssignmentsClientListForScopeOptions{
		Filter: to.Ptr("principalId eq '" + bob + "'")})
	bobIDs := count(forBob, func() ([]*armauthorization.RoleAssignment, error) {
		p, err := forBob.NextPage(ctx)
		return p.Value, err
	})
	if len(bobIDs) != 1 || !bobIDs[bob] {
		t.Fatalf("principalId filter: %v", bobIDs)
	}
	forGroup := adminRA.NewListForResourceGroupPager("shared", &armauthorization.RoleAssignmentsClientListForResourceGroupOptions{
		Filter: to.Ptr("atScope()")})
	groupIDs := count(forGroup, func() ([]*armauthorization.RoleAssignment, error) {
		p, err := forGroup.NextPage(ctx)
		return p.Value, err
	})
	if groupIDs[bob] || !groupIDs[alice] {
		t.Fatalf("group atScope() should hold alice (above) and not bob (below): %v", groupIDs)
	}

	// Delete: 200 with the assignment, then 204; alice is refused again.
	deleted, err := adminRA.Delete(ctx, subScope, name, nil)
	if err != nil || deleted.ID == nil || *deleted.ID != *created.ID {
		t.Fatalf("delete: %+v %v", deleted, err)
	}
	again, err := adminRA.Delete(ctx, subScope, name, nil)
	if err != nil || again.ID != nil {
		t.Fatalf("second delete: %+v %v", again, err)
	}
	if _, err := aliceGroups.Get(ctx, "shared", nil); !hasStatus(err, 403, "AuthorizationFailed") {
		t.Fatalf("read after the grant went: %v", err)
	}
	if _, err := adminRA.DeleteByID(ctx, *diskGrant.ID, nil); err != nil {
		t.Fatal(err)
	}

	// The disk roles, with the actions the backup checks rely on.
	defs, _ := armauthorization.NewRoleDefinitionsClient(adminCred, opts)
	want := map[string][]string{
		"Disk Backup Reader": {"Microsoft.Authorization/*/read", "Microsoft.Compute/disks/read", "Microsoft.Compute/disks/beginGetAccess/action"},
		"Disk Snapshot Contributor": {"Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read",
			"Microsoft.Compute/snapshots/delete", "Microsoft.Compute/snapshots/write", "Microsoft.Compute/snapshots/read",
			"Microsoft.Compute/snapshots/beginGetAccess/action", "Microsoft.Compute/snapshots/endGetAccess/action",
			"Microsoft.Compute/disks/beginGetAccess/action", "Microsoft.Storage/storageAccounts/listkeys/action",
			"Microsoft.Storage/storageAccounts/write", "Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/delete"},
		"Disk Restore Operator": {"Microsoft.Authorization/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read",
			"Microsoft.Compute/disks/write", "Microsoft.Compute/disks/read"},
	}
	ids := map[string]string{"Disk Backup Reader": diskBackupReaderRole, "Disk Snapshot Contributor": diskSnapshotContrib, "Disk Restore Operator": diskRestoreOperator}
	for roleName, actions := range want {
		pager := defs.NewListPager(subScope, &armauthorization.RoleDefinitionsClientListOptions{Filter: to.Ptr("roleName eq '" + roleName + "'")})
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Value) != 1 {
			t.Fatalf("%s: %d definitions", roleName, len(page.Value))
		}
		d := page.Value[0]
		if *d.Name != ids[roleName] || *d.Properties.RoleType != "BuiltInRole" || *d.Properties.AssignableScopes[0] != "/" {
			t.Fatalf("%s: %+v", roleName, d.Properties)
		}
		var got []string
		for _, a := range d.Properties.Permissions[0].Actions {
			got = append(got, *a)
		}
		if strings.Join(got, ",") != strings.Join(actions, ",") {
			t.Fatalf("%s actions = %v, want %v", roleName, got, actions)
		}
	}
	byRoleID, err := defs.GetByID(ctx, authorizationProvider+diskRestoreOperator, nil)
	if err != nil || *byRoleID.Properties.RoleName != "Disk Restore Operator" {
		t.Fatalf("GetByID: %+v %v", byRoleID, err)
	}

	// A custom role is enforced like a built-in, within its assignable scopes.
	customID := uuid.NewString()
	groupScope := subScope + "/resourceGroups/shared"
	_, err = defs.CreateOrUpdate(ctx, groupScope, customID, armauthorization.RoleDefinition{Properties: &armauthorization.RoleDefinitionProperties{
		RoleName: to.Ptr("Group Reader (custom)"), RoleType: to.Ptr("CustomRole"),
		Permissions:      []*armauthorization.Permission{{Actions: []*string{to.Ptr("Microsoft.Resources/subscriptions/resourceGroups/read")}}},
		AssignableScopes: []*string{to.Ptr(groupScope)},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminRA.Create(ctx, subScope, uuid.NewString(), armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{RoleDefinitionID: to.Ptr(authorizationProvider + customID), PrincipalID: to.Ptr(alice)},
	}, nil); !hasStatus(err, 400, "InvalidRoleAssignmentScope") {
		t.Fatalf("custom role outside its assignable scopes: %v", err)
	}
	if _, err := adminRA.Create(ctx, groupScope, uuid.NewString(), armauthorization.RoleAssignmentCreateParameters{
		Properties: &armauthorization.RoleAssignmentProperties{RoleDefinitionID: to.Ptr(authorizationProvider + customID), PrincipalID: to.Ptr(alice)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := aliceGroups.Get(ctx, "shared", nil); err != nil {
		t.Fatalf("custom role did not grant read: %v", err)
	}
	if _, err := defs.Delete(ctx, groupScope, customID, nil); !hasStatus(err, 409, "RoleDefinitionHasAssignments") {
		t.Fatalf("deleting a role in use: %v", err)
	}
}

// TestRoleCLI: `coffer role assign|list|remove` against a running server.
func TestRoleCLI(t *testing.T) {
	s := startServer(t, "")
	sub := newSubscription()
	admin := s.token()
	if code, _, body := s.do("PUT", "/subscriptions/"+sub+"/resourceGroups/snaps?api-version=2021-04-01", admin, `{"location":"westus"}`); code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	vault := uuid.NewString()
	scope := "/subscriptions/" + sub + "/resourceGroups/snaps"
	out, err := s.run("role", "assign", "--role", "Disk Snapshot Contributor", "--assignee", vault, "--scope", scope)
	if err != nil || !strings.Contains(out, scope+"/providers/Microsoft.Authorization/roleAssignments/") {
		t.Fatalf("assign: %v\n%s", err, out)
	}
	out, err = s.run("role", "list", "--assignee", vault)
	if err != nil || !strings.Contains(out, "Disk Snapshot Contributor") || !strings.Contains(out, scope) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := s.run("role", "assign", "--role", "No Such Role", "--assignee", vault, "--scope", scope); err == nil || !strings.Contains(out, "unknown role") {
		t.Fatalf("unknown role accepted: %s", out)
	}
	out, err = s.run("role", "remove", "--role", "Disk Snapshot Contributor", "--assignee", vault, "--scope", scope)
	if err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	out, _ = s.run("role", "list", "--assignee", vault)
	if strings.Contains(out, "Disk Snapshot Contributor") {
		t.Fatalf("still listed after remove:\n%s", out)
	}
}

// sdkRoleAssignments returns a function that grants a role through the
// official armauthorization client.
func (s *server) sdkRoleAssignments(sub, token string) (func(role, scope, principal string) error, error) {
	cred, opts := s.sdk(token)
	ra, err := armauthorization.NewRoleAssignmentsClient(sub, cred, opts)
	if err != nil {
		return nil, err
	}
	return func(role, scope, principal string) error {
		_, err := ra.Create(context.Background(), scope, uuid.NewString(), armauthorization.RoleAssignmentCreateParameters{
			Properties: &armauthorization.RoleAssignmentProperties{
				RoleDefinitionID: to.Ptr(authorizationProvider + role), PrincipalID: to.Ptr(principal),
				PrincipalType: to.Ptr(armauthorization.PrincipalTypeServicePrincipal),
			}}, nil)
		return err
	}, nil
}

// TestRoleDefinitionRewriteCannotEscalate: a principal who may write role
// definitions in one resource group cannot rewrite a role that is assignable
// at the whole subscription, and a role narrowed to a group no longer grants
// through an assignment made above it.
func TestRoleDefinitionRewriteCannotEscalate(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testRoleDefinitionRewrite(t, startServer(t, b.db(t))) })
	}
}

func testRoleDefinitionRewrite(t *testing.T, s *server) {
	ctx := context.Background()
	sub := newSubscription()
	subScope := "/subscriptions/" + sub
	ownScope := subScope + "/resourceGroups/own"
	adminCred, opts := s.sdk(s.token())
	adminGroups, _ := armresources.NewResourceGroupsClient(sub, adminCred, opts)
	if _, err := adminGroups.CreateOrUpdate(ctx, "own", armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); err != nil {
		t.Fatal(err)
	}
	adminDefs, _ := armauthorization.NewRoleDefinitionsClient(adminCred, opts)
	adminRA, _ := armauthorization.NewRoleAssignmentsClient(sub, adminCred, opts)

	// G reads disks anywhere in the subscription; P holds it there, and is
	// Owner of the group "own".
	g := uuid.NewString()
	def := func(scopes []string, actions ...string) armauthorization.RoleDefinition {
		var as, ss []*string
		for _, a := range actions {
			as = append(as, to.Ptr(a))
		}
		for _, sc := range scopes {
			ss = append(ss, to.Ptr(sc))
		}
		return armauthorization.RoleDefinition{Properties: &armauthorization.RoleDefinitionProperties{
			RoleName: to.Ptr("Disk Looker"), RoleType: to.Ptr("CustomRole"),
			Permissions: []*armauthorization.Permission{{Actions: as}}, AssignableScopes: ss,
		}}
	}
	if _, err := adminDefs.CreateOrUpdate(ctx, subScope, g, def([]string{subScope}, "Microsoft.Compute/disks/read"), nil); err != nil {
		t.Fatal(err)
	}
	p := uuid.NewString()
	for _, grant := range []struct{ scope, role string }{{subScope, g}, {ownScope, ownerRoleGUID}} {
		if _, err := adminRA.Create(ctx, grant.scope, uuid.NewString(), armauthorization.RoleAssignmentCreateParameters{
			Properties: &armauthorization.RoleAssignmentProperties{RoleDefinitionID: to.Ptr(authorizationProvider + grant.role), PrincipalID: to.Ptr(p)},
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pCred, _ := s.sdk(s.token("--principal", p))
	pDefs, _ := armauthorization.NewRoleDefinitionsClient(pCred, opts)
	pGroups, _ := armresources.NewResourceGroupsClient(sub, pCred, opts)

	// The attack: rewrite G at "own", narrowing its scopes there and granting "*".
	_, err := pDefs.CreateOrUpdate(ctx, ownScope, g, def([]string{ownScope}, "*"), nil)
	if !hasStatus(err, http.StatusForbidden, "AuthorizationFailed") ||
		!strings.Contains(err.Error(), "'Microsoft.Authorization/roleDefinitions/write' over scope '"+subScope+"'") {
		t.Fatalf("rewrite of a subscription-wide role from a group: %v", err)
	}
	if _, err := pGroups.CreateOrUpdate(ctx, "stolen", armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); !hasStatus(err, 403, "AuthorizationFailed") {
		t.Fatalf("P created a resource group at the subscription: %v", err)
	}
	got, err := adminDefs.Get(ctx, subScope, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Properties.Permissions[0].Actions; len(a) != 1 || *a[0] != "Microsoft.Compute/disks/read" || *got.Properties.AssignableScopes[0] != subScope {
		t.Fatalf("role changed by a refused write: %+v", got.Properties)
	}
	// Nor may P delete it: deleting needs the right over its scopes too.
	if _, err := pDefs.Delete(ctx, ownScope, g, nil); !hasStatus(err, 403, "AuthorizationFailed") {
		t.Fatalf("delete of a subscription-wide role from a group: %v", err)
	}

	// P may still manage a role of its own group, within it.
	mine := uuid.NewString()
	if _, err := pDefs.CreateOrUpdate(ctx, ownScope, mine, armauthorization.RoleDefinition{Properties: &armauthorization.RoleDefinitionProperties{
		RoleName: to.Ptr("Own Group Reader"), Permissions: []*armauthorization.Permission{{Actions: []*string{to.Ptr("*/read")}}},
		AssignableScopes: []*string{to.Ptr(ownScope)},
	}}, nil); err != nil {
		t.Fatalf("P cannot write a role in its own group: %v", err)
	}

	// When someone entitled to narrows G to "own" (and widens it), P's
	// assignment at the subscription lies outside G's scopes and grants nothing.
	if _, err := adminDefs.CreateOrUpdate(ctx, subScope, g, def([]string{ownScope}, "*"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pGroups.CreateOrUpdate(ctx, "stolen", armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); !hasStatus(err, 403, "AuthorizationFailed") {
		t.Fatalf("an assignment outside its role's assignable scopes granted: %v", err)
	}
}

// TestGroupScopedCallerPollsItsOperations: a principal whose only role is
// Owner of one resource group creates a disk and a vault there through the
// SDKs, whose pollers read the location-scoped operation status under the
// subscription; another principal without a role there cannot read that
// status.
func TestGroupScopedCallerPollsItsOperations(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	sub := newSubscription()
	s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/team?api-version=2021-04-01", s.token(), `{"location":"westus"}`, 201)
	grant, err := s.sdkRoleAssignments(sub, s.token())
	if err != nil {
		t.Fatal(err)
	}
	alice, mallory := uuid.NewString(), uuid.NewString()
	if err := grant(ownerRoleGUID, "/subscriptions/"+sub+"/resourceGroups/team", alice); err != nil {
		t.Fatal(err)
	}
	aliceTok := s.token("--principal", alice)
	cred, opts := s.sdk(aliceTok)
	disks, _ := armcompute.NewDisksClient(sub, cred, opts)
	dp, err := disks.BeginCreateOrUpdate(ctx, "team", "d1", armcompute.Disk{Location: to.Ptr("westus"),
		Properties: &armcompute.DiskProperties{DiskSizeGB: to.Ptr[int32](1),
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("disk create polled by a group Owner: %v", err)
	}
	vaults, _ := armdataprotection.NewBackupVaultsClient(sub, cred, opts)
	vp, err := vaults.BeginCreateOrUpdate(ctx, "team", "v1", armdataprotection.BackupVaultResource{Location: to.Ptr("westus"),
		Identity: &armdataprotection.DppIdentityDetails{Type: to.Ptr("SystemAssigned")},
		Properties: &armdataprotection.BackupVault{StorageSettings: []*armdataprotection.StorageSetting{{
			DatastoreType: to.Ptr(armdataprotection.StorageSettingStoreTypesVaultStore),
			Type:          to.Ptr(armdataprotection.StorageSettingTypesLocallyRedundant)}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatalf("vault create polled by a group Owner: %v", err)
	}

	// The status URLs themselves: readable by the caller, not by a
	// principal without a role over the resource they act on.
	h, _ := s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/team/providers/Microsoft.Compute/disks/d2?api-version=2025-01-02",
		aliceTok, `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`, 202)
	h2, _ := s.mustDo("DELETE", "/subscriptions/"+sub+"/resourceGroups/team/providers/Microsoft.DataProtection/backupVaults/v1?api-version=2025-07-01",
		aliceTok, "", 202)
	for _, u := range []string{h.Get("Azure-AsyncOperation"), h2.Get("Azure-AsyncOperation"), h2.Get("Location")} {
		if u == "" {
			t.Fatalf("no status URL in %v %v", h, h2)
		}
		if code, _, body := s.do("GET", u, aliceTok, ""); code != 200 && code != 202 && code != 204 {
			t.Fatalf("GET %s as the caller: %d %s", u, code, body)
		}
		if code, _, body := s.do("GET", u, s.token("--principal", mallory), ""); code != 403 || !strings.Contains(body, "AuthorizationFailed") {
			t.Fatalf("GET %s as a principal without a role: %d %s", u, code, body)
		}
	}
}
