package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/dataprotection/armdataprotection/v3"
	"github.com/google/uuid"
)

// TestDataProtectionSDK runs the configure-backup flow through the official
// armdataprotection client at its own api-version, on both stores.
func TestDataProtectionSDK(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testDataProtectionSDK(t, startServer(t, b.db(t))) })
	}
}

func testDataProtectionSDK(t *testing.T, s *server) {
	ctx := context.Background()
	admin := s.token()
	sub := newSubscription()
	for _, g := range []string{"disks", "vaults", "snaps"} {
		s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	disk := "/subscriptions/" + sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/sdkdisk"
	s.createDisk(admin, disk, "westus", 1)
	cred, opts := s.sdk(admin)
	factory, err := armdataprotection.NewClientFactory(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}

	vaults := factory.NewBackupVaultsClient()
	vp, err := vaults.BeginCreateOrUpdate(ctx, "vaults", "sdkvault", armdataprotection.BackupVaultResource{
		Location: to.Ptr("westus"),
		Identity: &armdataprotection.DppIdentityDetails{Type: to.Ptr("SystemAssigned")},
		Properties: &armdataprotection.BackupVault{StorageSettings: []*armdataprotection.StorageSetting{{
			DatastoreType: to.Ptr(armdataprotection.StorageSettingStoreTypesVaultStore),
			Type:          to.Ptr(armdataprotection.StorageSettingTypesLocallyRedundant),
		}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vault, err := vp.PollUntilDone(ctx, fastPoll)
	if err != nil {
		t.Fatal(err)
	}
	if vault.Identity == nil || vault.Identity.PrincipalID == nil || *vault.Properties.ProvisioningState != armdataprotection.ProvisioningStateSucceeded {
		t.Fatalf("vault: %+v", vault.BackupVaultResource)
	}
	principal := *vault.Identity.PrincipalID

	store := armdataprotection.DataStoreTypesOperationalStore
	storeInfo := &armdataprotection.DataStoreInfoBase{DataStoreType: &store, ObjectType: to.Ptr("DataStoreInfoBase")}
	policy, err := factory.NewBackupPoliciesClient().CreateOrUpdate(ctx, "vaults", "sdkvault", "daily", armdataprotection.BaseBackupPolicyResource{
		Properties: &armdataprotection.BackupPolicy{
			ObjectType:      to.Ptr("BackupPolicy"),
			DatasourceTypes: []*string{to.Ptr("Microsoft.Compute/disks")},
			PolicyRules: []armdataprotection.BasePolicyRuleClassification{
				&armdataprotection.AzureBackupRule{
					ObjectType:       to.Ptr("AzureBackupRule"),
					Name:             to.Ptr("BackupDaily"),
					BackupParameters: &armdataprotection.AzureBackupParams{ObjectType: to.Ptr("AzureBackupParams"), BackupType: to.Ptr("Incremental")},
					DataStore:        storeInfo,
					Trigger: &armdataprotection.ScheduleBasedTriggerContext{
						ObjectType: to.Ptr("ScheduleBasedTriggerContext"),
						Schedule:   &armdataprotection.BackupSchedule{RepeatingTimeIntervals: []*string{to.Ptr("R/2021-07-01T19:00:00+00:00/P1D")}},
						TaggingCriteria: []*armdataprotection.TaggingCriteria{{
							IsDefault: to.Ptr(true), TaggingPriority: to.Ptr[int64](99), TagInfo: &armdataprotection.RetentionTag{TagName: to.Ptr("Default")},
						}},
					},
				},
				&armdataprotection.AzureRetentionRule{
					ObjectType: to.Ptr("AzureRetentionRule"), Name: to.Ptr("Default"), IsDefault: to.Ptr(true),
					Lifecycles: []*armdataprotection.SourceLifeCycle{{
						SourceDataStore: storeInfo,
						DeleteAfter:     &armdataprotection.AbsoluteDeleteOption{ObjectType: to.Ptr("AbsoluteDeleteOption"), Duration: to.Ptr("P30D")},
					}},
				},
			},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bp, ok := policy.Properties.(*armdataprotection.BackupPolicy)
	if !ok {
		t.Fatalf("policy properties are %T", policy.Properties)
	}
	rule, ok := bp.PolicyRules[0].(*armdataprotection.AzureBackupRule)
	if !ok || *rule.Trigger.(*armdataprotection.ScheduleBasedTriggerContext).TaggingCriteria[0].TagInfo.ID != "Default_" {
		t.Fatalf("policy rules: %+v", bp.PolicyRules)
	}

	instance := armdataprotection.BackupInstance{
		ObjectType:   to.Ptr("BackupInstance"),
		FriendlyName: to.Ptr("sdkdisk"),
		DataSourceInfo: &armdataprotection.Datasource{
			ObjectType: to.Ptr("Datasource"), ResourceID: to.Ptr(disk), ResourceName: to.Ptr("sdkdisk"),
			ResourceType: to.Ptr("Microsoft.Compute/disks"), DatasourceType: to.Ptr("Microsoft.Compute/disks"), ResourceLocation: to.Ptr("westus"),
		},
		PolicyInfo: &armdataprotection.PolicyInfo{
			PolicyID: policy.ID,
			PolicyParameters: &armdataprotection.PolicyParameters{DataStoreParametersList: []armdataprotection.DataStoreParametersClassification{
				&armdataprotection.AzureOperationalStoreParameters{ObjectType: to.Ptr("AzureOperationalStoreParameters"), DataStoreType: &store,
					ResourceGroupID: to.Ptr("/subscriptions/" + sub + "/resourceGroups/snaps")},
			}},
		},
	}
	instances := factory.NewBackupInstancesClient()
	validate := func() error {
		p, err := instances.BeginValidateForBackup(ctx, "vaults", "sdkvault", armdataprotection.ValidateForBackupRequest{BackupInstance: &instance}, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, fastPoll)
		return err
	}
	if err := validate(); !hasCode(err, "UserErrorMissingRequiredPermissions") {
		t.Fatalf("validate without roles: %v", err)
	}
	ra, _ := s.sdkRoleAssignments(sub, admin)
	for role, scope := range map[string]string{diskBackupReaderRole: disk, diskSnapshotContrib: "/subscriptions/" + sub + "/resourceGroups/snaps"} {
		if err := ra(role, scope, principal); err != nil {
			t.Fatal(err)
		}
	}
	if err := validate(); err != nil {
		t.Fatalf("validate with roles: %v", err)
	}
	bip, err := instances.BeginCreateOrUpdate(ctx, "vaults", "sdkvault", "sdkdisk-"+uuid.NewString()[:8],
		armdataprotection.BackupInstanceResource{Properties: &instance}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bi, err := bip.PollUntilDone(ctx, fastPoll)
	if err != nil {
		t.Fatal(err)
	}
	if *bi.Properties.CurrentProtectionState != armdataprotection.CurrentProtectionStateProtectionConfigured {
		t.Fatalf("instance: %+v", bi.Properties)
	}
	pager := instances.NewListPager("vaults", "sdkvault", nil)
	page, err := pager.NextPage(ctx)
	if err != nil || len(page.Value) != 1 {
		t.Fatalf("list: %v %v", len(page.Value), err)
	}
	if err := validate(); !hasCode(err, "UserErrorDppDatasourceAlreadyProtected") {
		t.Fatalf("validate a protected disk: %v", err)
	}
	testBackupAndRestoreSDK(t, s, factory, sub, disk, *bi.Name, principal)

	sp, err := instances.BeginStopProtection(ctx, "vaults", "sdkvault", *bi.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatal(err)
	}
	got, err := instances.Get(ctx, "vaults", "sdkvault", *bi.Name, nil)
	if err != nil || *got.Properties.CurrentProtectionState != armdataprotection.CurrentProtectionStateProtectionStopped {
		t.Fatalf("after stop: %+v %v", got.Properties, err)
	}
	dp, err := instances.BeginDelete(ctx, "vaults", "sdkvault", *bi.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatal(err)
	}
	if _, err := instances.Get(ctx, "vaults", "sdkvault", *bi.Name, nil); !hasStatus(err, 404, "ResourceNotFound") {
		t.Fatalf("get after delete: %v", err)
	}
	vd, err := vaults.BeginDelete(ctx, "vaults", "sdkvault", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vd.PollUntilDone(ctx, fastPoll); err != nil {
		t.Fatal(err)
	}
}

// testBackupAndRestoreSDK: ad hoc backups of data written over NBD, their
// jobs and recovery points, validateRestore with and without the restore
// role, restores of every point to new disks equal to the source at that
// moment, a restore onto an existing disk refused, and a revoked role
// failing the next backup, all through armdataprotection.
func testBackupAndRestoreSDK(t *testing.T, s *server, factory *armdataprotection.ClientFactory, sub, diskID, name, principal string) {
	ctx := context.Background()
	admin := s.token()
	instances := factory.NewBackupInstancesClient()
	s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/restored?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)

	// Two moments of the disk, each backed up on demand.
	uri, attachment := s.attach(admin, diskID)
	want := make([][]byte, 0, 2)
	image := make([]byte, 1<<30)
	backUp := func(pattern byte, off int64) string {
		t.Helper()
		run(t, "qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P %d %d 64k", pattern, off), "-c", "flush", uri)
		for i := off; i < off+64<<10; i++ {
			image[i] = pattern
		}
		want = append(want, append([]byte(nil), image...))
		p, err := instances.BeginAdhocBackup(ctx, "vaults", "sdkvault", name, armdataprotection.TriggerBackupRequest{
			BackupRuleOptions: &armdataprotection.AdHocBackupRuleOptions{RuleName: to.Ptr("BackupDaily"),
				TriggerOption: &armdataprotection.AdhocBackupTriggerOption{RetentionTagOverride: to.Ptr("Default")}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.PollUntilDone(ctx, fastPoll)
		if err != nil {
			t.Fatalf("ad hoc backup: %v", err)
		}
		if res.JobID == nil || !strings.Contains(*res.JobID, "/backupJobs/") {
			t.Fatalf("ad hoc backup result: %+v", res.OperationJobExtendedInfo)
		}
		return (*res.JobID)[strings.LastIndex(*res.JobID, "/")+1:]
	}
	firstJob := backUp(0x11, 0)
	backUp(0x22, 512<<20)
	s.mustDo("POST", diskID+"/detach"+computeAPI, admin, `{"attachmentId":"`+attachment+`"}`, 200)

	jobs := factory.NewJobsClient()
	job, err := jobs.Get(ctx, "vaults", "sdkvault", firstJob, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := job.Properties
	// 2024-04-01, the SDK's version, describes a finished job as Success.
	if *j.Status != "Success" || *j.Operation != "Backup" || !*j.IsUserTriggered || *j.DataSourceID != diskID ||
		*j.VaultName != "sdkvault" || j.EndTime == nil || j.Duration == nil || *j.OperationCategory != "Backup" || *j.PolicyName != "daily" {
		t.Fatalf("backup job: %+v", j)
	}
	var listed []*armdataprotection.AzureBackupJobResource
	for pager := jobs.NewListPager("vaults", "sdkvault", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, page.Value...)
	}
	if len(listed) != 2 || *listed[1].Name != firstJob {
		t.Fatalf("jobs, newest first: %d, last %v", len(listed), *listed[len(listed)-1].Name)
	}

	var points []*armdataprotection.AzureBackupRecoveryPointResource
	for pager := factory.NewRecoveryPointsClient().NewListPager("vaults", "sdkvault", name, nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		points = append(points, page.Value...)
	}
	if len(points) != 2 {
		t.Fatalf("%d recovery points, want 2", len(points))
	}
	for _, p := range points {
		rp, ok := p.Properties.(*armdataprotection.AzureBackupDiscreteRecoveryPoint)
		if !ok || *rp.RecoveryPointType != "Incremental" || *rp.RetentionTagName != "Default" ||
			len(rp.RecoveryPointDataStoresDetails) != 1 || *rp.RecoveryPointDataStoresDetails[0].State != "COMMITTED" {
			t.Fatalf("recovery point: %T %+v", p.Properties, p.Properties)
		}
	}
	snaps, _, _ := s.do("GET", "/subscriptions/"+sub+"/resourceGroups/snaps/providers/Microsoft.Compute/snapshots"+computeAPI, admin, "")
	if snaps != 200 {
		t.Fatalf("list snapshots: %d", snaps)
	}

	restoreTo := func(point, target string) armdataprotection.AzureBackupRestoreRequestClassification {
		return &armdataprotection.AzureBackupRecoveryPointBasedRestoreRequest{
			ObjectType: to.Ptr("AzureBackupRecoveryPointBasedRestoreRequest"), RecoveryPointID: to.Ptr(point),
			SourceDataStoreType: to.Ptr(armdataprotection.SourceDataStoreTypeOperationalStore),
			RestoreTargetInfo: &armdataprotection.RestoreTargetInfo{ObjectType: to.Ptr("RestoreTargetInfo"),
				RecoveryOption: to.Ptr(armdataprotection.RecoveryOptionFailIfExists), RestoreLocation: to.Ptr("westus"),
				DatasourceInfo: &armdataprotection.Datasource{ObjectType: to.Ptr("Datasource"), ResourceID: to.Ptr(target),
					DatasourceType: to.Ptr("Microsoft.Compute/disks"), ResourceType: to.Ptr("Microsoft.Compute/disks"), ResourceLocation: to.Ptr("westus")}}}
	}
	validateRestore := func(point, target string) error {
		p, err := instances.BeginValidateForRestore(ctx, "vaults", "sdkvault", name,
			armdataprotection.ValidateRestoreRequestObject{RestoreRequestObject: restoreTo(point, target)}, nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, fastPoll)
		return err
	}
	restore := func(point, target string) error {
		p, err := instances.BeginTriggerRestore(ctx, "vaults", "sdkvault", name, restoreTo(point, target), nil)
		if err != nil {
			return err
		}
		_, err = p.PollUntilDone(ctx, fastPoll)
		return err
	}
	target := func(i int) string {
		return "/subscriptions/" + sub + "/resourceGroups/restored/providers/Microsoft.Compute/disks/restored" + itoa(i)
	}
	if err := validateRestore(*points[0].Name, target(0)); !hasCode(err, "UserErrorMissingRequiredPermissions") {
		t.Fatalf("validateRestore without Disk Restore Operator: %v", err)
	}
	ra, _ := s.sdkRoleAssignments(sub, admin)
	if err := ra(diskRestoreOperator, "/subscriptions/"+sub+"/resourceGroups/restored", principal); err != nil {
		t.Fatal(err)
	}
	if err := validateRestore(*points[0].Name, target(0)); err != nil {
		t.Fatalf("validateRestore: %v", err)
	}
	dir := t.TempDir()
	for i, p := range points {
		if err := restore(*p.Name, target(i)); err != nil {
			t.Fatalf("restore %s: %v", *p.Name, err)
		}
		out := filepath.Join(dir, "restored"+itoa(i)+".raw")
		if o, err := s.run("disk", "export", target(i), out); err != nil {
			t.Fatalf("export: %v\n%s", err, o)
		}
		if b, _ := os.ReadFile(out); !bytes.Equal(b, want[i]) {
			t.Fatalf("the disk restored from point %d differs from the source at its moment", i)
		}
	}
	if err := restore(*points[0].Name, target(1)); !hasCode(err, "UserErrorDiskAlreadyExists") {
		t.Fatalf("restore onto an existing disk: %v", err)
	}
	// The same point onto the disk it made already is a new request too.
	if err := restore(*points[0].Name, target(0)); !hasCode(err, "UserErrorDiskAlreadyExists") {
		t.Fatalf("restore again onto the disk it made: %v", err)
	}
	var restores int
	for pager := jobs.NewListPager("vaults", "sdkvault", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Value {
			if *j.Properties.Operation == "Restore" && *j.Properties.Status == "Success" {
				restores++
				if j.Properties.ExtendedInfo == nil || j.Properties.ExtendedInfo.RecoveryDestination == nil ||
					j.Properties.ExtendedInfo.SourceRecoverPoint == nil {
					t.Fatalf("restore job: %+v", j.Properties.ExtendedInfo)
				}
			}
		}
	}
	if restores != 2 {
		t.Fatalf("%d completed restore jobs, want 2", restores)
	}

	// Revoke the snapshot role: the next backup fails, and says why.
	code, _, body := s.do("GET", "/subscriptions/"+sub+"/resourceGroups/snaps/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01", admin, "")
	if code != 200 {
		t.Fatal(body)
	}
	var list struct{ Value []struct{ ID string } }
	json.Unmarshal([]byte(body), &list)
	for _, a := range list.Value {
		if strings.Contains(strings.ToLower(a.ID), "/resourcegroups/snaps/") {
			s.mustDo("DELETE", a.ID+"?api-version=2022-04-01", admin, "", 200)
		}
	}
	p, err := instances.BeginAdhocBackup(ctx, "vaults", "sdkvault", name, armdataprotection.TriggerBackupRequest{
		BackupRuleOptions: &armdataprotection.AdHocBackupRuleOptions{RuleName: to.Ptr("BackupDaily"),
			TriggerOption: &armdataprotection.AdhocBackupTriggerOption{RetentionTagOverride: to.Ptr("Default")}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, fastPoll); !hasCode(err, "UserErrorMissingRequiredPermissions") {
		t.Fatalf("backup after revoking the snapshot role: %v", err)
	}
}
