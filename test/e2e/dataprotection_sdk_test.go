package e2e

import (
	"context"
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
