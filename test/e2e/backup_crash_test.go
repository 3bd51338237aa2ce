package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"
	"github.com/google/uuid"
)

// protectedDisk is a disk protected by a fresh vault through raw REST, on
// a policy whose first slot is at first.
type protectedDisk struct {
	sub, disk, vault, instance, snaps string
	principal                         string
}

func (s *server) protectDisk(t *testing.T, admin string, sizeGB int, first time.Time) protectedDisk {
	t.Helper()
	const v = "?api-version=2026-06-01"
	p := protectedDisk{sub: newSubscription()}
	subPath := "/subscriptions/" + p.sub
	for _, g := range []string{"disks", "vaults", "snaps", "restored"} {
		s.mustDo("PUT", subPath+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	p.snaps = subPath + "/resourceGroups/snaps"
	p.disk = subPath + "/resourceGroups/disks/providers/Microsoft.Compute/disks/d1"
	s.createDisk(admin, p.disk, "westus", sizeGB)
	p.vault = subPath + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/v1"
	h, _ := s.mustDo("PUT", p.vault+v, admin, `{"location":"westus","identity":{"type":"SystemAssigned"},"properties":{}}`, 201)
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	_, body := s.mustDo("GET", p.vault+v, admin, "", 200)
	p.principal = at(jsonOf(t, body), "identity", "principalId").(string)
	policy := p.vault + "/backupPolicies/hourly"
	s.mustDo("PUT", policy+v, admin, `{"properties":{"datasourceTypes":["Microsoft.Compute/disks"],"objectType":"BackupPolicy","policyRules":[
		 {"backupParameters":{"backupType":"Incremental","objectType":"AzureBackupParams"},"name":"BackupHourly","objectType":"AzureBackupRule",
		  "dataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"},
		  "trigger":{"objectType":"ScheduleBasedTriggerContext","schedule":{"repeatingTimeIntervals":["R/`+first.UTC().Format("2006-01-02T15:04:05")+`+00:00/PT1H"],"timeZone":"UTC"},
		   "taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}]}},
		 {"isDefault":true,"name":"Default","objectType":"AzureRetentionRule","lifecycles":[{"deleteAfter":{"duration":"P7D","objectType":"AbsoluteDeleteOption"},
		   "sourceDataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"}}]}]}}`, 200)
	for role, scope := range map[string]string{diskBackupReaderRole: p.disk, diskSnapshotContrib: p.snaps, diskRestoreOperator: subPath + "/resourceGroups/restored"} {
		s.mustDo("PUT", scope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+"?api-version=2022-04-01", admin,
			`{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/`+role+`","principalId":"`+p.principal+`"}}`, 201)
	}
	p.instance = p.vault + "/backupInstances/d1"
	h, _ = s.mustDo("PUT", p.instance+v, admin, `{"properties":{"objectType":"BackupInstance",
		"dataSourceInfo":{"objectType":"Datasource","resourceID":"`+p.disk+`","resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"},
		"policyInfo":{"policyId":"`+policy+`","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"`+p.snaps+`"}]}}}}`, 201)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("configure: %v", st)
	}
	return p
}

type wireJob struct {
	Name       string
	Properties struct {
		Operation, Status string
		ExtendedInfo      struct{ AdditionalDetails map[string]string }
		ErrorDetails      []struct{ Code string }
	}
}

func (s *server) jobs(t *testing.T, admin, vault string) []wireJob {
	t.Helper()
	_, body := s.mustDo("GET", vault+"/backupJobs?api-version=2026-06-01", admin, "", 200)
	var out struct{ Value []wireJob }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Value
}

func (s *server) pointNames(t *testing.T, admin, instance string) []string {
	t.Helper()
	_, body := s.mustDo("GET", instance+"/recoveryPoints?api-version=2026-06-01", admin, "", 200)
	var out struct{ Value []struct{ Name string } }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range out.Value {
		names = append(names, p.Name)
	}
	return names
}

// TestScheduledBackupSurvivesKill9: the policy's slot fires on its own; a
// kill -9 while its snapshot uploads leaves, after the restart, exactly one
// job for the slot and either one recovery point (Completed) or none
// (Failed), never two and never a job stuck InProgress; the point restores
// to a disk equal to the source; a kill -9 during that restore ends it
// Completed or Failed, never stuck.
func TestScheduledBackupSurvivesKill9(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			admin := s.token()
			first := time.Now().Add(20 * time.Second).Truncate(time.Second)
			p := s.protectDisk(t, admin, 1, first)

			// Enough random data that the upload takes a moment.
			dir := t.TempDir()
			img := make([]byte, 1<<30)
			rand.Read(img[:160<<20])
			uri, attachment := s.attach(admin, p.disk)
			src := filepath.Join(dir, "src.raw")
			if err := os.WriteFile(src, img[:160<<20], 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "nbdcopy", src, uri)
			s.mustDo("POST", p.disk+"/detach"+computeAPI, admin, `{"attachmentId":"`+attachment+`"}`, 200)

			// Wait for the slot's job to start, then kill the server mid-run.
			deadline := time.Now().Add(90 * time.Second)
			for len(s.jobs(t, admin, p.vault)) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the scheduled slot never fired")
				}
				time.Sleep(50 * time.Millisecond)
			}
			s.kill9()
			s.start()
			admin = s.token()
			var jobs []wireJob
			for {
				jobs = s.jobs(t, admin, p.vault)
				if len(jobs) == 1 && jobs[0].Properties.Status != "InProgress" {
					break
				}
				if len(jobs) != 1 || time.Now().After(deadline) {
					t.Fatalf("after the restart: %+v", jobs)
				}
				time.Sleep(100 * time.Millisecond)
			}
			j := jobs[0]
			if j.Properties.ExtendedInfo.AdditionalDetails["ScheduledTime"] != first.UTC().Format(time.RFC3339) || j.Properties.Operation != "Backup" {
				t.Fatalf("scheduled job: %+v", j)
			}
			points := s.pointNames(t, admin, p.instance)
			switch j.Properties.Status {
			case "Completed":
				if len(points) != 1 {
					t.Fatalf("completed job with %d recovery points", len(points))
				}
			case "Failed":
				if len(points) != 0 {
					t.Fatalf("failed job with %d recovery points", len(points))
				}
				// Nothing to restore from the slot: an ad hoc backup makes the
				// point the restore half of the test still needs.
				t.Logf("the slot's backup failed after the kill (%+v); backing up ad hoc", j.Properties.ErrorDetails)
				h, _ := s.mustDo("POST", p.instance+"/backup?api-version=2026-06-01", admin,
					`{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
				if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
					t.Fatalf("ad hoc backup after the failed slot: %v", st)
				}
				if points = s.pointNames(t, admin, p.instance); len(points) != 1 {
					t.Fatalf("%d recovery points after the ad hoc backup", len(points))
				}
			default:
				t.Fatalf("job status %q", j.Properties.Status)
			}
			// Snapshots in the group: exactly the point's.
			_, body := s.mustDo("GET", p.snaps+"/providers/Microsoft.Compute/snapshots"+computeAPI, admin, "", 200)
			if n := strings.Count(body, `"Microsoft.Compute/snapshots"`); n != 1 {
				t.Fatalf("%d snapshots for one recovery point: %s", n, body)
			}

			// Restore, killed as it starts; after the restart it ends.
			target := "/subscriptions/" + p.sub + "/resourceGroups/restored/providers/Microsoft.Compute/disks/back"
			h, _ := s.mustDo("POST", p.instance+"/restore?api-version=2026-06-01", admin, `{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest",
				"recoveryPointId":"`+points[0]+`","sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"restoreTargetInfo",
				"recoveryOption":"FailIfExists","restoreLocation":"westus","datasourceInfo":{"objectType":"Datasource","resourceID":"`+target+`",
				"resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"}}}`, 202)
			if h.Get("Retry-After") != "30" || h.Get("Azure-AsyncOperation") == "" {
				t.Fatalf("restore headers: %v", h)
			}
			s.kill9()
			s.start()
			admin = s.token()
			for {
				var restore *wireJob
				for _, j := range s.jobs(t, admin, p.vault) {
					if j.Properties.Operation == "Restore" {
						restore = &j
					}
				}
				if restore != nil && restore.Properties.Status == "Completed" {
					break
				}
				if restore == nil || restore.Properties.Status != "InProgress" || time.Now().After(deadline.Add(60*time.Second)) {
					t.Fatalf("restore after the kill: %+v", restore)
				}
				time.Sleep(100 * time.Millisecond)
			}
			out := filepath.Join(dir, "back.raw")
			if o, err := s.run("disk", "export", target, out); err != nil {
				t.Fatalf("export: %v\n%s", err, o)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, img) {
				t.Fatal("the restored disk differs from the source at the backup's moment")
			}
		})
	}
}

// TestInstanceSettingsTakeEffectOrAreRefused: what an instance or a
// restore request says is either done or refused with a specific code,
// never accepted and ignored.
func TestInstanceSettingsTakeEffectOrAreRefused(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	p := s.protectDisk(t, admin, 1, time.Now().Add(24*time.Hour))
	const v = "?api-version=2026-06-01"
	policy := p.vault + "/backupPolicies/hourly"
	body := func(snaps, extra string) string {
		return `{"properties":{"objectType":"BackupInstance",` + extra + `
		"dataSourceInfo":{"objectType":"Datasource","resourceID":"` + p.disk + `","resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"},
		"policyInfo":{"policyId":"` + policy + `","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"` + snaps + `"}]}}}}`
	}
	state := func() string {
		_, b := s.mustDo("GET", p.instance+v, admin, "", 200)
		return at(jsonOf(t, b), "properties", "currentProtectionState").(string)
	}
	expect := func(what, method, path, b string, status int, code string) {
		t.Helper()
		got, _, out := s.do(method, path, admin, b)
		if got != status || !strings.Contains(out, `"`+code+`"`) {
			t.Fatalf("%s: %d %s, want %d %s", what, got, out, status, code)
		}
	}
	expect("moving the snapshot resource group", "PUT", p.instance+v, body("/subscriptions/"+p.sub+"/resourceGroups/restored", ""),
		400, "UserErrorSnapshotResourceGroupChangeNotAllowed")
	expect("a user-assigned identity", "PUT", p.instance+v, body(p.snaps, `"identityDetails":{"useSystemAssignedIdentity":false},`),
		400, "UserErrorUserAssignedIdentityNotSupported")
	h, _ := s.mustDo("POST", p.instance+"/stopProtection"+v, admin, "", 202)
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	expect("an update of a stopped instance", "PUT", p.instance+v, body(p.snaps, ""), 400, "UserErrorInvalidProtectionStateForOperation")
	if st := state(); st != "ProtectionStopped" {
		t.Fatalf("a refused update changed the state to %s", st)
	}
	expect("a point-in-time restore", "POST", p.instance+"/restore"+v, `{"objectType":"AzureBackupRecoveryTimeBasedRestoreRequest",
		"recoveryPointTime":"2026-01-01T00:00:00Z","sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"RestoreTargetInfo",
		"recoveryOption":"FailIfExists","datasourceInfo":{"resourceID":"`+p.disk+`"}}}`, 400, "UserErrorRestoreTypeNotSupported")
	expect("an ad hoc backup of a stopped instance", "POST", p.instance+"/backup"+v,
		`{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 400, "UserErrorInvalidProtectionStateForOperation")
	h, _ = s.mustDo("POST", p.instance+"/resumeProtection"+v, admin, "", 202)
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	expect("an ad hoc backup under an unknown rule", "POST", p.instance+"/backup"+v,
		`{"backupRuleOptions":{"ruleName":"Nope","triggerOption":{"retentionTagOverride":"Default"}}}`, 400, "UserErrorInvalidRuleName")
	expect("a restore of a missing point", "POST", p.instance+"/restore"+v, `{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest",
		"recoveryPointId":"nope","sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"RestoreTargetInfo",
		"recoveryOption":"FailIfExists","datasourceInfo":{"resourceID":"/subscriptions/`+p.sub+`/resourceGroups/restored/providers/Microsoft.Compute/disks/x"}}}`,
		404, "UserErrorRecoveryPointNotFound")
	// The limit of ten ad hoc backups a day: the eleventh is a clear 400.
	for i := 0; i < 10; i++ {
		h, _ := s.mustDo("POST", p.instance+"/backup"+v, admin, `{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
		if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
			t.Fatalf("ad hoc backup %d: %v", i, st)
		}
	}
	expect("the eleventh ad hoc backup of the day", "POST", p.instance+"/backup"+v,
		`{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 400, "UserErrorMaxAdhocBackupLimitReached")
	if n := len(s.pointNames(t, admin, p.instance)); n != 10 {
		t.Fatalf("%d recovery points after ten ad hoc backups", n)
	}
}

// TestGuardedBackupsStay: a vault's security settings take effect. PATCH
// merges them field by field; AlwaysOn soft delete and Locked immutability
// cannot be undone; and while they are on, the snapshots that hold its
// recovery points cannot be deleted, stripped of their backup tags, or
// taken with their resource group through Microsoft.Compute.
func TestGuardedBackupsStay(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	p := s.protectDisk(t, admin, 1, time.Now().Add(24*time.Hour))
	const v = "?api-version=2026-06-01"
	h, _ := s.mustDo("POST", p.instance+"/backup"+v, admin, `{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("backup: %v", st)
	}
	_, body := s.mustDo("GET", p.snaps+"/providers/Microsoft.Compute/snapshots"+computeAPI, admin, "", 200)
	var snaps struct {
		Value []struct {
			ID   string
			Tags map[string]string
		}
	}
	json.Unmarshal([]byte(body), &snaps)
	if len(snaps.Value) != 1 {
		t.Fatalf("snapshots: %s", body)
	}
	snap := snaps.Value[0]
	expect := func(what, method, path, b string, status int, code string) {
		t.Helper()
		got, _, out := s.do(method, path, admin, b)
		if got != status || !strings.Contains(out, `"`+code+`"`) {
			t.Fatalf("%s: %d %s, want %d %s", what, got, out, status, code)
		}
	}

	// Unguarded, the snapshot's tags may change (and it could be deleted).
	s.mustDo("PATCH", snap.ID+computeAPI, admin, `{"tags":{"note":"mine"}}`, 200)
	s.mustDo("PATCH", snap.ID+computeAPI, admin, `{"tags":`+mustJSON(snap.Tags)+`}`, 200)

	// Soft delete AlwaysOn, then immutability alone: soft delete stays.
	s.mustDo("PATCH", p.vault+v, admin, `{"properties":{"securitySettings":{"softDeleteSettings":{"state":"AlwaysOn","retentionDurationInDays":14}}}}`, 200)
	_, body = s.mustDo("PATCH", p.vault+v, admin, `{"properties":{"securitySettings":{"immutabilitySettings":{"state":"Unlocked"}}}}`, 200)
	if at(jsonOf(t, body), "properties", "securitySettings", "softDeleteSettings", "state") != "AlwaysOn" {
		t.Fatalf("a PATCH naming only immutability dropped soft delete: %s", body)
	}
	expect("AlwaysOn soft delete turned off", "PATCH", p.vault+v, `{"properties":{"securitySettings":{"softDeleteSettings":{"state":"Off"}}}}`,
		400, "UserErrorSoftDeleteAlwaysOnCannotBeChanged")
	s.mustDo("PATCH", p.vault+v, admin, `{"properties":{"securitySettings":{"immutabilitySettings":{"state":"Locked"}}}}`, 200)
	expect("Locked immutability unlocked", "PATCH", p.vault+v, `{"properties":{"securitySettings":{"immutabilitySettings":{"state":"Unlocked"}}}}`,
		400, "UserErrorImmutabilityLockedCannotBeChanged")

	// The snapshot is now held by its vault.
	expect("deleting a guarded snapshot", "DELETE", snap.ID+computeAPI, "", 409, "SnapshotHeldByBackupVault")
	expect("stripping its backup tags", "PATCH", snap.ID+computeAPI, `{"tags":{}}`, 409, "SnapshotHeldByBackupVault")
	expect("deleting its resource group", "DELETE", p.snaps+"?api-version=2021-04-01", "", 409, "SnapshotHeldByBackupVault")
	_, body = s.mustDo("GET", snap.ID+computeAPI, admin, "", 200)
	if at(jsonOf(t, body), "properties", "provisioningState") != "Succeeded" || !strings.Contains(body, p.instance) {
		t.Fatalf("the guarded snapshot changed: %s", body)
	}
	if n := len(s.pointNames(t, admin, p.instance)); n != 1 {
		t.Fatalf("%d recovery points after the refusals", n)
	}
}

var ctx0 = context.Background()

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestSoftDeleteThroughSDK: in a vault with soft delete on, deleting a
// backup instance soft-deletes it; the official DeletedBackupInstancesClient
// lists, gets and undeletes it; it comes back stopped with its recovery
// points, and after resuming takes a new backup. In an immutable vault
// without soft delete, a delete that would destroy unexpired points is
// refused.
func TestSoftDeleteThroughSDK(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			admin := s.token()
			p := s.protectDisk(t, admin, 1, time.Now().Add(24*time.Hour))
			const v = "?api-version=2026-06-01"
			backUp := func() {
				t.Helper()
				h, _ := s.mustDo("POST", p.instance+"/backup"+v, admin, `{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
				if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
					t.Fatalf("backup: %v", st)
				}
			}
			backUp()

			// Immutable, no soft delete: the delete is refused, nothing lost.
			s.mustDo("PATCH", p.vault+v, admin, `{"properties":{"securitySettings":{"immutabilitySettings":{"state":"Unlocked"},"softDeleteSettings":{"state":"Off"}}}}`, 200)
			if code, _, body := s.do("DELETE", p.instance+v, admin, ""); code != 409 || !strings.Contains(body, "UserErrorImmutableVaultOperationNotAllowed") {
				t.Fatalf("delete under immutability: %d %s", code, body)
			}
			s.mustDo("PATCH", p.vault+v, admin, `{"properties":{"securitySettings":{"immutabilitySettings":{"state":"Disabled"},"softDeleteSettings":{"state":"On","retentionDurationInDays":14}}}}`, 200)

			cred, opts := s.sdk(admin)
			factory, err := armdataprotection.NewClientFactory(p.sub, cred, opts)
			if err != nil {
				t.Fatal(err)
			}
			instances := factory.NewBackupInstancesClient()
			dp, err := instances.BeginDelete(ctx0, "vaults", "v1", "d1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dp.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}
			if _, err := instances.Get(ctx0, "vaults", "v1", "d1", nil); !hasStatus(err, 404, "ResourceNotFound") {
				t.Fatalf("a soft-deleted instance is still listed as an instance: %v", err)
			}
			deleted := factory.NewDeletedBackupInstancesClient()
			page, err := deleted.NewListPager("vaults", "v1", nil).NextPage(ctx0)
			if err != nil || len(page.Value) != 1 || *page.Value[0].Name != "d1" {
				t.Fatalf("deleted instances: %+v %v", page.Value, err)
			}
			got, err := deleted.Get(ctx0, "vaults", "v1", "d1", nil)
			if err != nil || got.Properties.DeletionInfo == nil || got.Properties.DeletionInfo.ScheduledPurgeTime == nil {
				t.Fatalf("deleted instance: %+v %v", got.Properties, err)
			}
			// Its snapshot and point are kept, and the disk cannot be
			// protected again meanwhile.
			_, body := s.mustDo("GET", p.snaps+"/providers/Microsoft.Compute/snapshots"+computeAPI, admin, "", 200)
			if n := strings.Count(body, `"Microsoft.Compute/snapshots"`); n != 1 {
				t.Fatalf("%d snapshots kept by the soft-deleted instance: %s", n, body)
			}
			if code, _, body := s.do("PUT", p.instance+v, admin, `{"properties":{"objectType":"BackupInstance",
				"dataSourceInfo":{"objectType":"Datasource","resourceID":"`+p.disk+`"},
				"policyInfo":{"policyId":"`+p.vault+`/backupPolicies/hourly","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"`+p.snaps+`"}]}}}}`); code != 409 ||
				!strings.Contains(body, "UserErrorBackupInstanceSoftDeleted") {
				t.Fatalf("protecting again under the soft-deleted name: %d %s", code, body)
			}
			up, err := deleted.BeginUndelete(ctx0, "vaults", "v1", "d1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := up.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}
			bi, err := instances.Get(ctx0, "vaults", "v1", "d1", nil)
			if err != nil || *bi.Properties.CurrentProtectionState != armdataprotection.CurrentProtectionStateProtectionStopped {
				t.Fatalf("after undelete: %+v %v", bi.Properties, err)
			}
			rp, err := instances.BeginResumeProtection(ctx0, "vaults", "v1", "d1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rp.PollUntilDone(ctx0, fastPoll); err != nil {
				t.Fatal(err)
			}
			backUp()
			if n := len(s.pointNames(t, admin, p.instance)); n != 2 {
				t.Fatalf("%d recovery points after undelete and a new backup", n)
			}
		})
	}
}
