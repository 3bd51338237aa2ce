package backup

import (
	"context"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
)

// Disks is what protection asks of the disk engine.
type Disks interface {
	// DiskLocation returns the location of the disk diskID (any casing)
	// as the disk records it, or an errs.NotFound error if there is no such
	// disk. Any other error is a failure to look.
	DiskLocation(ctx context.Context, diskID string) (location string, err error)
}

// Permissions answers whether a principal may perform an action at a scope;
// the authorization provider implements it.
type Permissions interface {
	// Allowed reports whether principal holds action over scope through
	// its role assignments. An error means the answer is unknown.
	Allowed(ctx context.Context, principal, action, scope string) (bool, error)
}

// permission is one check of the vault identity's rights.
type permission struct{ action, scope string }

// check runs what validateForBackup and configure protection verify, in
// the order the service reports them. A failed check is a user error (a
// UserError); a failure to check is any other error.
func (s *Service) check(ctx context.Context, in ProtectionRequest) error {
	v, err := LoadVault(ctx, s.Store, in.VaultID)
	if err != nil {
		return err
	}
	b := in.Instance
	diskID := b.DataSourceInfo.ResourceID
	diskLocation, err := s.Disks.DiskLocation(ctx, diskID)
	if errs.Is(err, errs.NotFound) {
		return simpleUserError("UserErrorDatasourceNotFound", "The disk "+diskID+" does not exist.",
			"Check the disk's ARM id in dataSourceInfo.resourceID.", in.ActivityID)
	}
	if err != nil {
		return err
	}
	if normalizeLocation(diskLocation) != normalizeLocation(v.Location) {
		return simpleUserError("UserErrorDatasourceAndBackupVaultLocationMismatch",
			"The disk is in '"+diskLocation+"' but the Backup vault is in '"+v.Location+"'; they must be in the same region.",
			"Use a Backup vault in the disk's region.", in.ActivityID)
	}
	snap := b.SnapshotGroup()
	sp, _ := parseID(snap)
	dp, _ := parseID(diskID)
	if !strings.EqualFold(sp.Subscription(), dp.Subscription()) {
		return simpleUserError("UserErrorSnapshotResourceGroupInDifferentSubscription",
			"The snapshot resource group "+snap+" is not in the disk's subscription "+dp.Subscription()+".",
			"Choose a snapshot resource group in the disk's subscription.", in.ActivityID)
	}
	if _, err := groups.Get(ctx, s.Store, sp.Subscription(), sp.ResourceGroup()); err != nil {
		if errs.Is(err, errs.NotFound) {
			return simpleUserError("UserErrorSnapshotResourceGroupNotFound",
				"The snapshot resource group "+snap+" does not exist.", "Create the resource group, or name an existing one.", in.ActivityID)
		}
		return err
	}
	if v.Identity == nil || v.Identity.PrincipalID == "" {
		return simpleUserError("UserErrorBackupVaultManagedIdentityMissing",
			"The Backup vault "+v.ID+" has no system-assigned managed identity.",
			"Enable the vault's system-assigned identity (identity.type SystemAssigned) and grant it the disk backup roles.", in.ActivityID)
	}
	p, err := loadPolicy(ctx, s.Store, in.VaultID, b.PolicyInfo.PolicyID, func() error {
		return simpleUserError("UserErrorBackupPolicyNotFound", "The backup policy "+b.PolicyInfo.PolicyID+" does not exist.",
			"Create the policy in the vault or name an existing one.", in.ActivityID)
	})
	if err != nil {
		return err
	}
	if len(p.Properties.DatasourceTypes) == 0 || !strings.EqualFold(p.Properties.DatasourceTypes[0], DiskType) {
		return simpleUserError("UserErrorPolicyDatasourceTypeMismatch", "The backup policy "+p.ID+" is not a disk backup policy.",
			"Use a policy whose datasourceTypes is Microsoft.Compute/disks.", in.ActivityID)
	}
	// The identity's rights: Disk Backup Reader on the disk, Disk Snapshot
	// Contributor on the snapshot resource group.
	const auth = "/providers/Microsoft.Authorization"
	needs := []permission{
		{"Microsoft.Authorization/roleAssignments/read", diskID + auth},
		{"Microsoft.Compute/disks/read", diskID},
		{"Microsoft.Compute/disks/beginGetAccess/action", diskID},
		{"Microsoft.Authorization/roleAssignments/read", snap + auth},
		{"Microsoft.Resources/subscriptions/resourceGroups/read", snap},
		{"Microsoft.Compute/snapshots/write", snap},
		{"Microsoft.Compute/snapshots/read", snap},
		{"Microsoft.Compute/snapshots/delete", snap},
		{"Microsoft.Compute/snapshots/beginGetAccess/action", snap},
		{"Microsoft.Compute/snapshots/endGetAccess/action", snap},
	}
	principal := v.Identity.PrincipalID
	for _, need := range needs {
		ok, err := s.Permissions.Allowed(ctx, principal, need.action, need.scope)
		if err != nil {
			return err
		}
		if !ok {
			return missingPermission(principal, need, in.ActivityID)
		}
	}
	return nil
}
