package backup

import (
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
)

// Resource types and the datasource type this service protects.
const (
	VaultType    = "Microsoft.DataProtection/backupVaults"
	PolicyType   = "Microsoft.DataProtection/backupVaults/backupPolicies"
	InstanceType = "Microsoft.DataProtection/backupVaults/backupInstances"
	DiskType     = "Microsoft.Compute/disks"
)

// BackupTag marks the snapshots a backup instance made, as Azure Backup tags
// the snapshots it creates; its value is the backup instance id.
const BackupTag = "CofferBackupInstanceId"

// InstanceResource is a stored backup instance, in the document ARM serves.
type InstanceResource struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties BackupInstance    `json:"properties"`
}

// BackupInstance is one protected disk.
type BackupInstance struct {
	FriendlyName           string            `json:"friendlyName"`
	DataSourceInfo         *Datasource       `json:"dataSourceInfo"`
	PolicyInfo             *PolicyInfo       `json:"policyInfo"`
	ProtectionStatus       *ProtectionStatus `json:"protectionStatus,omitempty"`
	CurrentProtectionState string            `json:"currentProtectionState,omitempty"`
	ProtectionErrorDetails *UserFacingError  `json:"protectionErrorDetails,omitempty"`
	ProvisioningState      string            `json:"provisioningState,omitempty"`
	// DeletionInfo is set while the instance is soft-deleted: gone from the
	// vault's instances, its recovery points kept until the purge.
	DeletionInfo *DeletionInfo `json:"deletionInfo,omitempty"`
	// IdentityDetails says which vault identity protects the disk; only
	// the system-assigned one exists here.
	IdentityDetails *IdentityDetails `json:"identityDetails,omitempty"`
	ObjectType      string           `json:"objectType"`
	// ResourceGuardOperationRequests approve a guarded change in the
	// request that carries them; never stored.
	ResourceGuardOperationRequests []string `json:"resourceGuardOperationRequests,omitempty"`
}

// Datasource names the protected disk.
type Datasource struct {
	DatasourceType   string `json:"datasourceType"`
	ObjectType       string `json:"objectType"`
	ResourceID       string `json:"resourceID"`
	ResourceLocation string `json:"resourceLocation"`
	ResourceName     string `json:"resourceName"`
	ResourceType     string `json:"resourceType"`
	ResourceURI      string `json:"resourceUri"`
}

// PolicyInfo names the policy and the snapshot resource group.
type PolicyInfo struct {
	PolicyID         string            `json:"policyId"`
	PolicyVersion    string            `json:"policyVersion,omitempty"`
	PolicyParameters *PolicyParameters `json:"policyParameters,omitempty"`
}

// PolicyParameters carry the data store parameters.
type PolicyParameters struct {
	DataStoreParametersList []DataStoreParameters `json:"dataStoreParametersList"`
}

// DataStoreParameters are AzureOperationalStoreParameters.
type DataStoreParameters struct {
	DataStoreType   string `json:"dataStoreType"`
	ObjectType      string `json:"objectType"`
	ResourceGroupID string `json:"resourceGroupId"`
}

// ProtectionStatus is the instance's protection summary.
type ProtectionStatus struct {
	Status       string           `json:"status"`
	ErrorDetails *UserFacingError `json:"errorDetails,omitempty"`
}

// SnapshotGroup returns the snapshot resource group the instance names, ""
// if none.
func (b *BackupInstance) SnapshotGroup() string {
	if b.PolicyInfo == nil || b.PolicyInfo.PolicyParameters == nil || len(b.PolicyInfo.PolicyParameters.DataStoreParametersList) == 0 {
		return ""
	}
	return b.PolicyInfo.PolicyParameters.DataStoreParametersList[0].ResourceGroupID
}

// datasourceKey is the protected disk's id as instances are compared: ARM
// ids compare without regard to case, and NormalizeInstance has already
// dropped the slashes around it (trimmed again here for documents stored
// before it did).
func datasourceKey(b *BackupInstance) string {
	if b.DataSourceInfo == nil {
		return ""
	}
	return strings.ToLower("/" + strings.Trim(b.DataSourceInfo.ResourceID, "/"))
}

// NormalizeInstance checks the backup instance of a configure or validate
// request for the vault and puts it in canonical form: fixed casing of the
// enumerations, the datasource type filled, and the disk id without
// surrounding slashes, so that one disk is always one key. Every violation
// is an errs.Invalid error naming the field.
func NormalizeInstance(b *BackupInstance, vault string) error {
	if t, ok := oneOfFold(b.ObjectType, "BackupInstance"); ok {
		b.ObjectType = t
	} else {
		return invalid("InvalidRequestContent", "properties.objectType", "properties.objectType must be 'BackupInstance', not '%s'.", b.ObjectType)
	}
	if id := b.IdentityDetails; id != nil && (id.UseSystemAssignedIdentity != nil && !*id.UseSystemAssignedIdentity || id.UserAssignedIdentityArmURL != "") {
		return invalid("UserErrorUserAssignedIdentityNotSupported", "properties.identityDetails",
			"coffer vaults protect disks with their system-assigned identity; useSystemAssignedIdentity false and user-assigned identities are not supported.")
	}
	ds := b.DataSourceInfo
	if ds == nil {
		return invalid("InvalidRequestContent", "properties.dataSourceInfo", "properties.dataSourceInfo is required.")
	}
	if ds.ResourceID == "" {
		return invalid("InvalidRequestContent", "properties.dataSourceInfo.resourceID", "properties.dataSourceInfo.resourceID (the disk's ARM id) is required.")
	}
	p, ok := parseID(ds.ResourceID)
	if !ok || !p.Is(DiskType) {
		return invalid("UserErrorInvalidDatasource", "properties.dataSourceInfo.resourceID",
			"'%s' is not the id of a managed disk (/subscriptions/…/resourceGroups/…/providers/Microsoft.Compute/disks/…).", ds.ResourceID)
	}
	ds.ResourceID = p.String()
	for field, v := range map[string]string{"datasourceType": ds.DatasourceType, "resourceType": ds.ResourceType} {
		if v != "" && !strings.EqualFold(v, DiskType) {
			return invalid("UserErrorUnsupportedDatasourceType", "properties.dataSourceInfo."+field,
				"properties.dataSourceInfo.%s '%s' is not supported; this service protects 'Microsoft.Compute/disks'.", field, v)
		}
	}
	ds.DatasourceType, ds.ResourceType, ds.ObjectType = DiskType, DiskType, "Datasource"
	if ds.ResourceName == "" {
		ds.ResourceName = p.Name()
	}
	if b.PolicyInfo == nil || b.PolicyInfo.PolicyID == "" {
		return invalid("InvalidRequestContent", "properties.policyInfo.policyId", "properties.policyInfo.policyId is required.")
	}
	if !strings.HasPrefix(strings.ToLower(b.PolicyInfo.PolicyID), strings.ToLower(vault+"/backupPolicies/")) {
		return invalid("UserErrorPolicyNotInVault", "properties.policyInfo.policyId",
			"The policy '%s' is not a policy of the vault '%s'.", b.PolicyInfo.PolicyID, vault)
	}
	pp := b.PolicyInfo.PolicyParameters
	if pp == nil || len(pp.DataStoreParametersList) != 1 {
		return invalid("UserErrorSnapshotResourceGroupMissing", "properties.policyInfo.policyParameters.dataStoreParametersList",
			"Give exactly one AzureOperationalStoreParameters entry with the snapshot resource group in properties.policyInfo.policyParameters.dataStoreParametersList.")
	}
	dp := &pp.DataStoreParametersList[0]
	if t, ok := oneOfFold(dp.ObjectType, "AzureOperationalStoreParameters"); ok {
		dp.ObjectType = t
	} else {
		return invalid("InvalidRequestContent", "properties.policyInfo.policyParameters.dataStoreParametersList[0].objectType",
			"dataStoreParametersList[0].objectType must be 'AzureOperationalStoreParameters', not '%s'.", dp.ObjectType)
	}
	if t, ok := oneOfFold(dp.DataStoreType, "OperationalStore"); ok {
		dp.DataStoreType = t
	} else {
		return invalid("InvalidRequestContent", "properties.policyInfo.policyParameters.dataStoreParametersList[0].dataStoreType",
			"dataStoreParametersList[0].dataStoreType must be 'OperationalStore', not '%s'.", dp.DataStoreType)
	}
	if g, ok := parseID(dp.ResourceGroupID); !ok || !g.Is("Microsoft.Resources/resourceGroups") {
		return invalid("UserErrorInvalidSnapshotResourceGroup", "properties.policyInfo.policyParameters.dataStoreParametersList[0].resourceGroupId",
			"'%s' is not a resource group id (/subscriptions/…/resourceGroups/…).", dp.ResourceGroupID)
	}
	if b.FriendlyName == "" {
		b.FriendlyName = ds.ResourceName
	}
	return nil
}

func invalid(code, target, format string, args ...any) *errs.Error {
	return errs.E(errs.Invalid, code, format, args...).WithTarget(target)
}

// parseID reads an id from a request body. A trailing '/' is forgiven:
// one disk may be spelled either way, and both must name it.
func parseID(id string) (arm.ResourceID, bool) {
	rid, err := arm.ParseResourceID("/" + strings.Trim(id, "/"))
	return rid, err == nil
}

func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

// DeletionInfo says when a soft-deleted instance was deleted and when it
// is purged.
type DeletionInfo struct {
	DeletionTime       time.Time `json:"deletionTime"`
	BillingEndDate     time.Time `json:"billingEndDate"`
	ScheduledPurgeTime time.Time `json:"scheduledPurgeTime"`
	DeleteActivityID   string    `json:"deleteActivityID"`
}

// SoftDeleted reports whether the instance is soft-deleted.
func (bi InstanceResource) SoftDeleted() bool { return bi.Properties.DeletionInfo != nil }
