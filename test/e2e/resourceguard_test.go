package e2e

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"
	"github.com/google/uuid"
)

const (
	muaAdminRole    = "c2a970b4-16a7-4a51-8c84-8a8ea6ee0bb8"
	muaOperatorRole = "f54b6d04-23c6-443e-b462-9c16ab7b4a52"
	userAccessAdmin = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
)

// TestResourceGuardThroughSDK: multi-user authorization with the official
// SDK's ResourceGuardsClient and DppResourceGuardProxyClient. A security
// admin (A, Backup MUA Admin) creates a guard; the vault's owner (B)
// associates it with the vault. B alone can then neither delete the backup
// instance, stop protection, turn soft delete off nor remove the guard, and
// after each refusal the backup still restores byte for byte; an invalid
// auxiliary token fails like an invalid main one; the operation the guard
// excludes is not guarded. Once A makes B an operator of the guard, each
// goes through with the approval in the body or in
// x-ms-authorization-auxiliary.
func TestResourceGuardThroughSDK(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			root := s.token()
			p := s.protectDisk(t, root, 1, time.Now().Add(24*time.Hour))
			const v = "?api-version=2026-06-01"
			subPath := "/subscriptions/" + p.sub
			s.mustDo("PUT", subPath+"/resourceGroups/sec?api-version=2021-04-01", root, `{"location":"westus"}`, 201)

			// The disk's data, and one backup of it.
			dir := t.TempDir()
			img := make([]byte, 1<<30)
			rand.Read(img[:8<<20])
			src := filepath.Join(dir, "src.raw")
			if err := os.WriteFile(src, img[:8<<20], 0o644); err != nil {
				t.Fatal(err)
			}
			uri, attachment := s.attach(root, p.disk)
			run(t, "nbdcopy", src, uri)
			s.mustDo("POST", p.disk+"/detach"+computeAPI, root, `{"attachmentId":"`+attachment+`"}`, 200)
			h, _ := s.mustDo("POST", p.instance+"/backup"+v, root, `{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
			if st := s.poll(h.Get("Azure-AsyncOperation"), root); st["status"] != "Succeeded" {
				t.Fatalf("backup: %v", st)
			}
			point := s.pointNames(t, root, p.instance)[0]
			s.mustDo("PATCH", p.vault+v, root, `{"properties":{"securitySettings":{"softDeleteSettings":{"state":"On","retentionDurationInDays":14}}}}`, 200)
			restores := 0
			restoresIntact := func(after string) {
				t.Helper()
				restores++
				target := subPath + "/resourceGroups/restored/providers/Microsoft.Compute/disks/r" + itoa(restores)
				h, _ := s.mustDo("POST", p.instance+"/restore"+v, root, `{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest",
					"recoveryPointId":"`+point+`","sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"restoreTargetInfo",
					"recoveryOption":"FailIfExists","restoreLocation":"westus","datasourceInfo":{"objectType":"Datasource","resourceID":"`+target+`",
					"resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"}}}`, 202)
				if st := s.poll(h.Get("Azure-AsyncOperation"), root); st["status"] != "Succeeded" {
					t.Fatalf("restore after %s: %v", after, st)
				}
				out := filepath.Join(dir, "r.raw")
				if o, err := s.run("disk", "export", target, out); err != nil {
					t.Fatalf("export: %v\n%s", err, o)
				}
				if got, _ := os.ReadFile(out); !bytes.Equal(got, img) {
					t.Fatalf("after %s the backup no longer restores to the disk it was taken of", after)
				}
				os.Remove(out)
			}

			// A runs guards in "sec"; B owns the vault's group.
			a, bob := "a0000000-0000-4000-8000-00000000000a", "b0000000-0000-4000-8000-00000000000b"
			grant, err := s.sdkRoleAssignments(p.sub, root)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range []struct{ role, scope, who string }{
				{muaAdminRole, subPath + "/resourceGroups/sec", a},
				{userAccessAdmin, subPath + "/resourceGroups/sec", a},
				{ownerRoleGUID, subPath + "/resourceGroups/vaults", bob},
			} {
				if err := grant(g.role, g.scope, g.who); err != nil {
					t.Fatal(err)
				}
			}
			tokA, tokB := s.token("--principal", a), s.token("--principal", bob)
			credA, optsA := s.sdk(tokA)
			asA, err := armdataprotection.NewClientFactory(p.sub, credA, optsA)
			if err != nil {
				t.Fatal(err)
			}
			credB, optsB := s.sdk(tokB)
			asB, err := armdataprotection.NewClientFactory(p.sub, credB, optsB)
			if err != nil {
				t.Fatal(err)
			}

			// A creates the guard, excluding suspendBackups.
			const suspendOp = "Microsoft.DataProtection/backupVaults/backupInstances/suspendBackups/action"
			guards := asA.NewResourceGuardsClient()
			if _, err := guards.Put(ctx0, "sec", "g1", armdataprotection.ResourceGuardResource{Location: to.Ptr("westus"),
				Properties: &armdataprotection.ResourceGuard{VaultCriticalOperationExclusionList: []*string{
					to.Ptr("Microsoft.DataProtection/backupVaults/backupResourceGuardProxies/delete")}}}, nil); !hasStatus(err, 400, "UserErrorMandatoryCriticalOperationCannotBeExcluded") {
				t.Fatalf("excluding a mandatory operation: %v", err)
			}
			g, err := guards.Put(ctx0, "sec", "g1", armdataprotection.ResourceGuardResource{Location: to.Ptr("westus"),
				Properties: &armdataprotection.ResourceGuard{VaultCriticalOperationExclusionList: []*string{to.Ptr(suspendOp)}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			guard := *g.ID
			if n := len(g.Properties.ResourceGuardOperations); n != 6 || *g.Properties.ProvisioningState != armdataprotection.ProvisioningStateSucceeded {
				t.Fatalf("guard: %d operations, %v", n, *g.Properties.ProvisioningState)
			}
			if page, err := guards.NewGetResourcesInResourceGroupPager("sec", nil).NextPage(ctx0); err != nil || len(page.Value) != 1 || *page.Value[0].ID != guard {
				t.Fatalf("guards in the group: %+v %v", page.Value, err)
			}
			if req, err := guards.GetDefaultDeleteProtectedItemRequestsObject(ctx0, "sec", "g1", "default", nil); err != nil ||
				*req.ID != guard+"/deleteProtectedItemRequests/default" {
				t.Fatalf("the guard's default delete request: %+v %v", req, err)
			}
			if _, err := asB.NewResourceGuardsClient().Get(ctx0, "sec", "g1", nil); !hasStatus(err, 403, "AuthorizationFailed") {
				t.Fatalf("B reads the guard before A lets it: %v", err)
			}
			if err := grantAs(s, p.sub, tokA, readerRole, guard, bob); err != nil {
				t.Fatal(err)
			}

			// B associates the guard with the vault.
			proxies := asB.NewDppResourceGuardProxyClient()
			if _, err := proxies.CreateOrUpdate(ctx0, "vaults", "v1", "DppResourceGuardProxy", armdataprotection.ResourceGuardProxyBaseResource{
				Properties: &armdataprotection.ResourceGuardProxyBase{ResourceGuardResourceID: to.Ptr(guard)}}, nil); err != nil {
				t.Fatal(err)
			}
			vaults := asB.NewBackupVaultsClient()
			if got, err := vaults.Get(ctx0, "vaults", "v1", nil); err != nil || !*got.Properties.IsVaultProtectedByResourceGuard {
				t.Fatalf("vault after association: %v", err)
			}
			if _, err := guards.Delete(ctx0, "sec", "g1", nil); !hasStatus(err, 409, "UserErrorResourceGuardInUse") {
				t.Fatalf("deleting a guard in use: %v", err)
			}
			for group, code := range map[string]string{"sec": "UserErrorResourceGuardInUse", "vaults": "UserErrorBackupVaultHasBackupInstances"} {
				if got, _, body := s.do("DELETE", subPath+"/resourceGroups/"+group+"?api-version=2021-04-01", root, ""); got != 409 || !strings.Contains(body, `"`+code+`"`) {
					t.Fatalf("deleting the group %s: %d %s", group, got, body)
				}
			}

			// B alone is refused each critical operation.
			instances := asB.NewBackupInstancesClient()
			refused := "ResourceGuardAuthorizationFailed"
			_, err = instances.BeginDelete(ctx0, "vaults", "v1", "d1", nil)
			if !hasStatus(err, 403, refused) {
				t.Fatalf("delete instance without approval: %v", err)
			}
			restoresIntact("a refused delete")
			_, err = instances.BeginStopProtection(ctx0, "vaults", "v1", "d1", &armdataprotection.BackupInstancesClientBeginStopProtectionOptions{
				Parameters: &armdataprotection.StopProtectionRequest{ResourceGuardOperationRequests: []*string{to.Ptr(guard + "/updateProtectedItemRequests/default")}}})
			if !hasStatus(err, 403, refused) {
				t.Fatalf("stop protection naming a request B cannot approve: %v", err)
			}
			restoresIntact("a refused stop protection")
			softDeleteOff := armdataprotection.PatchResourceRequestInput{Properties: &armdataprotection.PatchBackupVaultInput{
				SecuritySettings: &armdataprotection.SecuritySettings{SoftDeleteSettings: &armdataprotection.SoftDeleteSettings{State: to.Ptr(armdataprotection.SoftDeleteStateOff)}}}}
			_, err = vaults.BeginUpdate(ctx0, "vaults", "v1", softDeleteOff, nil)
			if !hasStatus(err, 403, refused) {
				t.Fatalf("soft delete off without approval: %v", err)
			}
			restoresIntact("a refused soft delete off")
			if _, err := proxies.Delete(ctx0, "vaults", "v1", "DppResourceGuardProxy", nil); !hasStatus(err, 403, refused) {
				t.Fatalf("removing the guard without approval: %v", err)
			}
			if _, err := proxies.UnlockDelete(ctx0, "vaults", "v1", "DppResourceGuardProxy", armdataprotection.UnlockDeleteRequest{
				ResourceGuardOperationRequests: []*string{to.Ptr(guard + "/deleteResourceGuardProxyRequests/default")}}, nil); !hasStatus(err, 403, refused) {
				t.Fatalf("unlockDelete without the guard permission: %v", err)
			}
			_, err = instances.BeginDelete(ctx0, "vaults", "v1", "d1", &armdataprotection.BackupInstancesClientBeginDeleteOptions{
				XMSAuthorizationAuxiliary: to.Ptr("Bearer " + tokB[:len(tokB)-4] + "AAAA")})
			if !hasStatus(err, 401, "InvalidAuthenticationToken") {
				t.Fatalf("delete with a forged auxiliary token: %v", err)
			}
			restoresIntact("a refused guard removal and a forged approval")

			// Operation status lives at the subscription's location scope,
			// which B's group-level Owner does not cover; Reader there lets
			// B's SDK poll (and grants nothing a guard counts).
			if err := grant(readerRole, subPath, bob); err != nil {
				t.Fatal(err)
			}

			// The excluded operation is not guarded.
			sp, err := instances.BeginSuspendBackups(ctx0, "vaults", "v1", "d1", nil)
			if err != nil {
				t.Fatalf("suspend backups, excluded from the guard: %v", err)
			}
			if _, err := sp.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}
			rb, err := instances.BeginResumeBackups(ctx0, "vaults", "v1", "d1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rb.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}

			// A makes B an operator of the guard; B's approvals now count.
			if err := grantAs(s, p.sub, tokA, muaOperatorRole, guard, bob); err != nil {
				t.Fatal(err)
			}
			st, err := instances.BeginStopProtection(ctx0, "vaults", "v1", "d1", &armdataprotection.BackupInstancesClientBeginStopProtectionOptions{
				Parameters: &armdataprotection.StopProtectionRequest{ResourceGuardOperationRequests: []*string{to.Ptr(guard + "/updateProtectedItemRequests/default")}}})
			if err != nil {
				t.Fatalf("approved stop protection: %v", err)
			}
			if _, err := st.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}
			softDeleteOff.Properties.ResourceGuardOperationRequests = []*string{to.Ptr(guard + "/disableSoftDeleteRequests/default")}
			up, err := vaults.BeginUpdate(ctx0, "vaults", "v1", softDeleteOff, nil)
			if err != nil {
				t.Fatalf("approved soft delete off: %v", err)
			}
			if got, err := up.PollUntilDone(ctx0, fastPoll); err != nil || *got.Properties.SecuritySettings.SoftDeleteSettings.State != armdataprotection.SoftDeleteStateOff {
				t.Fatalf("soft delete after the approved PATCH: %v", err)
			}
			dp, err := instances.BeginDelete(ctx0, "vaults", "v1", "d1", &armdataprotection.BackupInstancesClientBeginDeleteOptions{
				XMSAuthorizationAuxiliary: to.Ptr("Bearer " + tokB)})
			if err != nil {
				t.Fatalf("delete approved by an auxiliary token: %v", err)
			}
			if _, err := dp.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}
			if _, err := instances.Get(ctx0, "vaults", "v1", "d1", nil); !hasStatus(err, 404, "ResourceNotFound") {
				t.Fatalf("the instance after its approved delete: %v", err)
			}
			un, err := proxies.UnlockDelete(ctx0, "vaults", "v1", "DppResourceGuardProxy", armdataprotection.UnlockDeleteRequest{
				ResourceGuardOperationRequests: []*string{to.Ptr(guard + "/deleteResourceGuardProxyRequests/default")}}, nil)
			if err != nil || un.UnlockDeleteExpiryTime == nil {
				t.Fatalf("unlockDelete: %+v %v", un, err)
			}
			if _, err := proxies.Delete(ctx0, "vaults", "v1", "DppResourceGuardProxy", nil); err != nil {
				t.Fatalf("removing the unlocked guard: %v", err)
			}
			if got, err := vaults.Get(ctx0, "vaults", "v1", nil); err != nil || *got.Properties.IsVaultProtectedByResourceGuard {
				t.Fatalf("vault after the guard was removed: %v", err)
			}
			if _, err := guards.Delete(ctx0, "sec", "g1", nil); err != nil {
				t.Fatalf("deleting a guard no vault uses: %v", err)
			}
		})
	}
}

// grantAs assigns role to principal at scope as the holder of token.
func grantAs(s *server, sub, token, role, scope, principal string) error {
	grant, err := s.sdkRoleAssignments(sub, token)
	if err != nil {
		return err
	}
	return grant(role, scope, principal)
}

// TestGoldenGuardBodies pins the resource guard, its default request
// object, the vault's guard proxy and the refusal of an unapproved critical
// operation, by plain HTTP (the SDK drops fields it does not know).
func TestGoldenGuardBodies(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	subPath := "/subscriptions/" + sub
	const dpAPI = "?api-version=2026-06-01"
	for _, g := range []string{"vaults", "sec"} {
		s.createGroup(admin, sub, g)
	}
	vault := subPath + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/v1"
	h, _ := s.mustDo("PUT", vault+dpAPI, admin, `{"location":"westus","identity":{"type":"SystemAssigned"},
		"properties":{"securitySettings":{"softDeleteSettings":{"state":"On","retentionDurationInDays":14}}}}`, 201)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("vault: %v", st)
	}
	guard := subPath + "/resourceGroups/sec/providers/Microsoft.DataProtection/resourceGuards/g1"
	_, body := s.mustDo("PUT", guard+dpAPI, admin, `{"location":"westus","tags":{"team":"security"},
		"properties":{"vaultCriticalOperationExclusionList":["Microsoft.DataProtection/backupVaults/backupInstances/suspendBackups/action"]}}`, 201)
	golden(t, "resource_guard", []byte(body))
	_, body = s.mustDo("GET", guard+"/deleteProtectedItemRequests/default"+dpAPI, admin, "", 200)
	golden(t, "resource_guard_request", []byte(body))
	_, body = s.mustDo("PUT", vault+"/backupResourceGuardProxies/DppResourceGuardProxy"+dpAPI, admin,
		`{"properties":{"resourceGuardResourceId":"`+guard+`"}}`, 200)
	golden(t, "resource_guard_proxy", []byte(body))
	// The bootstrap administrator is Owner everywhere, so only a
	// principal without rights on the guard shows the refusal.
	owner := "c0000000-0000-4000-8000-00000000000c"
	s.mustDo("PUT", subPath+"/resourceGroups/vaults/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+"?api-version=2022-04-01", admin,
		`{"properties":{"roleDefinitionId":"`+authorizationProvider+ownerRoleGUID+`","principalId":"`+owner+`"}}`, 201)
	code, _, body := s.do("PATCH", vault+dpAPI, s.token("--principal", owner), `{"properties":{"securitySettings":{"softDeleteSettings":{"state":"Off"}}}}`)
	if code != 403 {
		t.Fatalf("soft delete off without approval: %d %s", code, body)
	}
	golden(t, "cloud_error_resource_guard", []byte(body))
}
