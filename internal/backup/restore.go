package backup

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/google/uuid"
)

// RestoreRequest is AzureBackupRestoreRequest as a disk restore uses it:
// a recovery point restored to a new disk.
type RestoreRequest struct {
	ObjectType          string             `json:"objectType"`
	RecoveryPointID     string             `json:"recoveryPointId"`
	RecoveryPointTime   string             `json:"recoveryPointTime,omitempty"`
	SourceDataStoreType string             `json:"sourceDataStoreType"`
	SourceResourceID    string             `json:"sourceResourceId,omitempty"`
	RestoreTargetInfo   *RestoreTargetInfo `json:"restoreTargetInfo"`
	IdentityDetails     *IdentityDetails   `json:"identityDetails,omitempty"`
}

// RestoreTargetInfo names the disk a restore creates.
type RestoreTargetInfo struct {
	ObjectType      string      `json:"objectType"`
	RecoveryOption  string      `json:"recoveryOption"`
	RestoreLocation string      `json:"restoreLocation,omitempty"`
	DatasourceInfo  *Datasource `json:"datasourceInfo"`
}

// IdentityDetails says which identity a restore acts as.
type IdentityDetails struct {
	UseSystemAssignedIdentity  *bool  `json:"useSystemAssignedIdentity,omitempty"`
	UserAssignedIdentityArmURL string `json:"userAssignedIdentityArmUrl,omitempty"`
}

// NormalizeRestore checks the shape of a restore request and puts its
// enumerations in Azure's casing; every problem is a 400 naming the field.
// prefix is the path of the request object in the body ("" or
// "restoreRequestObject.").
func NormalizeRestore(r *RestoreRequest, prefix string) error {
	switch {
	case strings.EqualFold(r.ObjectType, "AzureBackupRecoveryPointBasedRestoreRequest"):
		r.ObjectType = "AzureBackupRecoveryPointBasedRestoreRequest"
	case strings.EqualFold(r.ObjectType, "AzureBackupRecoveryTimeBasedRestoreRequest"),
		strings.EqualFold(r.ObjectType, "AzureBackupRestoreWithRehydrationRequest"):
		return invalid("UserErrorRestoreTypeNotSupported", prefix+"objectType",
			"A disk is restored from a recovery point: use objectType 'AzureBackupRecoveryPointBasedRestoreRequest', not '%s'.", r.ObjectType)
	default:
		return invalid("InvalidRequestContent", prefix+"objectType",
			"%sobjectType must be 'AzureBackupRecoveryPointBasedRestoreRequest', not '%s'.", prefix, r.ObjectType)
	}
	if strings.TrimSpace(r.RecoveryPointID) == "" {
		return invalid("InvalidRequestContent", prefix+"recoveryPointId", "%srecoveryPointId is required.", prefix)
	}
	if !strings.EqualFold(r.SourceDataStoreType, "OperationalStore") {
		return invalid("UserErrorInvalidDataStoreType", prefix+"sourceDataStoreType",
			"Disk backups are kept in the 'OperationalStore'; sourceDataStoreType '%s' holds none.", r.SourceDataStoreType)
	}
	r.SourceDataStoreType = "OperationalStore"
	t := r.RestoreTargetInfo
	if t == nil || t.DatasourceInfo == nil || t.DatasourceInfo.ResourceID == "" {
		return invalid("InvalidRequestContent", prefix+"restoreTargetInfo.datasourceInfo.resourceID",
			"%srestoreTargetInfo.datasourceInfo.resourceID, the id of the new disk, is required.", prefix)
	}
	// The docs send the object type in both casings.
	if !strings.EqualFold(t.ObjectType, "RestoreTargetInfo") {
		return invalid("UserErrorRestoreTypeNotSupported", prefix+"restoreTargetInfo.objectType",
			"A disk is restored as a new disk: restoreTargetInfo.objectType must be 'RestoreTargetInfo', not '%s'.", t.ObjectType)
	}
	t.ObjectType = "RestoreTargetInfo"
	if t.RecoveryOption == "" {
		t.RecoveryOption = "FailIfExists"
	}
	if !strings.EqualFold(t.RecoveryOption, "FailIfExists") {
		return invalid("InvalidRequestContent", prefix+"restoreTargetInfo.recoveryOption",
			"restoreTargetInfo.recoveryOption must be 'FailIfExists', not '%s'.", t.RecoveryOption)
	}
	t.RecoveryOption = "FailIfExists"
	if _, _, _, ok := disk.ParseDiskID(t.DatasourceInfo.ResourceID); !ok {
		return invalid("UserErrorInvalidRestoreTarget", prefix+"restoreTargetInfo.datasourceInfo.resourceID",
			"'%s' is not the id of a managed disk.", t.DatasourceInfo.ResourceID)
	}
	t.DatasourceInfo.ResourceID = strings.Trim(t.DatasourceInfo.ResourceID, "/")
	t.DatasourceInfo.ResourceID = "/" + t.DatasourceInfo.ResourceID
	if id := r.IdentityDetails; id != nil {
		if id.UseSystemAssignedIdentity != nil && !*id.UseSystemAssignedIdentity || id.UserAssignedIdentityArmURL != "" {
			return invalid("UserErrorUserAssignedIdentityNotSupported", prefix+"identityDetails",
				"coffer vaults restore with their system-assigned identity; a user-assigned identity is not supported.")
		}
	}
	return nil
}

// restorePlan is what a checked restore will do.
type restorePlan struct {
	instance  InstanceResource
	point     pointRecord
	target    string
	principal string
}

// checkRestore runs the checks of validateRestore: the recovery point and
// its snapshot exist, the target disk does not, it is in the snapshot's
// region, the vault identity may create it, and a target in another
// subscription is allowed by the vault.
//
// job is the restore job a rerun of the restore operation checks for: the
// disk that job began is its own, not an existing disk; "" for a new
// request and for validateRestore.
func (s *Service) checkRestore(ctx context.Context, tx meta.Tx, instanceID string, r RestoreRequest, activity, job string) (restorePlan, error) {
	bi, err := s.LoadInstance(ctx, tx, instanceID)
	if err != nil {
		return restorePlan{}, err
	}
	p, err := loadPoint(ctx, tx, pointID(bi.ID, r.RecoveryPointID))
	if err != nil {
		return restorePlan{}, err
	}
	v, err := LoadVault(ctx, tx, vaultOf(bi.ID))
	if err != nil {
		return restorePlan{}, err
	}
	if v.Identity == nil || v.Identity.PrincipalID == "" {
		return restorePlan{}, simpleUserError("UserErrorBackupVaultManagedIdentityMissing", "The Backup vault "+v.ID+" has no system-assigned managed identity.",
			"Enable the vault's system-assigned identity and grant it Disk Restore Operator on the target resource group.", activity)
	}
	snap, err := disk.LoadSnapshot(ctx, tx, p.SnapshotID)
	if errs.Is(err, errs.NotFound) || err == nil && snap.Properties.ProvisioningState != disk.ProvisioningSucceeded {
		return restorePlan{}, simpleUserError("UserErrorSnapshotNotFound",
			"The snapshot "+p.SnapshotID+" of recovery point "+p.Name+" is gone: it was deleted or moved.",
			"Restore another recovery point.", activity)
	}
	if err != nil {
		return restorePlan{}, err
	}
	target := r.RestoreTargetInfo.DatasourceInfo.ResourceID
	tsub, tgroup, tname, _ := disk.ParseDiskID(target)
	loc := r.RestoreTargetInfo.RestoreLocation
	if loc == "" {
		loc = r.RestoreTargetInfo.DatasourceInfo.ResourceLocation
	}
	if loc != "" && normalizeLocation(loc) != normalizeLocation(snap.Location) {
		return restorePlan{}, simpleUserError("UserErrorCrossRegionRestoreNotSupported",
			"The recovery point is in '"+snap.Location+"'; a disk can be restored only in its region, not in '"+loc+"'.",
			"Restore to a resource group in the same region.", activity)
	}
	ssub := strings.Split(bi.ID, "/")[2]
	if !strings.EqualFold(tsub, ssub) && crossSubscriptionRestoreDisabled(v) {
		return restorePlan{}, simpleUserError("UserErrorCrossSubscriptionRestoreNotAllowed",
			"The vault "+v.Name+" does not allow restores to another subscription (crossSubscriptionRestoreSettings).",
			"Restore to the vault's subscription, or enable cross-subscription restore on the vault.", activity)
	}
	groupID := "/subscriptions/" + tsub + "/resourceGroups/" + tgroup
	for _, need := range []permission{
		{"Microsoft.Compute/disks/write", groupID},
		{"Microsoft.Compute/snapshots/read", p.SnapshotID},
	} {
		ok, err := s.Permissions.Allowed(ctx, v.Identity.PrincipalID, need.action, need.scope)
		if err != nil {
			return restorePlan{}, err
		}
		if !ok {
			return restorePlan{}, missingPermission(v.Identity.PrincipalID, need, activity)
		}
	}
	if existing, err := disk.Load(ctx, tx, tsub, tgroup, tname); err == nil {
		if job == "" || existing.CreatedBy != job {
			return restorePlan{}, simpleUserError("UserErrorDiskAlreadyExists",
				"A disk "+existing.ID+" already exists; a restore creates a new disk (recoveryOption FailIfExists).",
				"Name a disk that does not exist.", activity)
		}
	} else if !errs.Is(err, errs.NotFound) {
		return restorePlan{}, err
	} else if e, ok := err.(*errs.Error); ok && e.Code == "ResourceGroupNotFound" {
		return restorePlan{}, simpleUserError("UserErrorTargetResourceGroupNotFound",
			"The target resource group "+groupID+" does not exist.", "Create the resource group, or name an existing one.", activity)
	}
	return restorePlan{instance: bi, point: p, target: target, principal: v.Identity.PrincipalID}, nil
}

// crossSubscriptionRestoreDisabled reads the vault's
// featureSettings.crossSubscriptionRestoreSettings.state; restores to other
// subscriptions are allowed unless it says Disabled or PermanentlyDisabled.
func crossSubscriptionRestoreDisabled(v Vault) bool {
	var fs struct {
		CrossSubscriptionRestoreSettings *struct {
			State string `json:"state"`
		} `json:"crossSubscriptionRestoreSettings"`
	}
	if len(v.Properties.FeatureSettings) == 0 || json.Unmarshal(v.Properties.FeatureSettings, &fs) != nil || fs.CrossSubscriptionRestoreSettings == nil {
		return false
	}
	st := fs.CrossSubscriptionRestoreSettings.State
	return strings.EqualFold(st, "Disabled") || strings.EqualFold(st, "PermanentlyDisabled")
}

// ValidateRestore runs the checks a restore makes, changing nothing.
func (s *Service) ValidateRestore(ctx context.Context, instanceID string, r RestoreRequest, activity string) error {
	_, err := s.checkRestore(ctx, s.Store, instanceID, r, activity, "")
	return err
}

// restoreInput is the input of a restore operation.
type restoreInput struct {
	InstanceID string         `json:"instanceId"`
	JobID      string         `json:"jobId"`
	Request    RestoreRequest `json:"request"`
}

// StartRestore starts a restore: a Restore job and the operation that runs
// it, in one transaction. The instance and the recovery point must exist,
// and an instance has at most MaxRestoresPerDay; the other checks of
// ValidateRestore run in the operation, and one that fails fails the job
// with its code, as the service reports them.
func (s *Service) StartRestore(ctx context.Context, instanceID string, r RestoreRequest, activity string) (JobResource, meta.Operation, error) {
	var job JobResource
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.Instance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		p, err := loadPoint(ctx, tx, pointID(bi.ID, r.RecoveryPointID))
		if err != nil {
			return err
		}
		job = s.newJob(bi, uuid.NewString(), "Restore", activity, true)
		t := p.Properties.RecoveryPointTime
		job.Properties.ExtendedInfo.SourceRecoverPoint = &JobRecoveryPoint{RecoveryPointID: p.Name, RecoveryPointTime: &t}
		job.Properties.ExtendedInfo.RecoveryDestination = r.RestoreTargetInfo.DatasourceInfo.ResourceID
		op, err = s.enqueueUserJob(ctx, tx, job, restoreLimit, kindRestore, restoreInput{InstanceID: bi.ID, JobID: job.ID, Request: r})
		return err
	})
	if err != nil {
		return JobResource{}, meta.Operation{}, err
	}
	s.Ops.Wake()
	return job, op, nil
}

// restore makes the new disk from the recovery point's snapshot as the
// vault's identity, with the source's size and SKU at backup time; the disk
// is usable when the job completes and hydrates in the background. Rerun
// after a crash it finishes the disk it began.
func (s *Service) restore(ctx context.Context, in restoreInput) (any, error) {
	return s.runJob(ctx, in.JobID, func(job JobResource) error {
		plan, err := s.checkRestore(ctx, s.Store, in.InstanceID, in.Request, job.Properties.ActivityID, job.ID)
		if err != nil {
			return err
		}
		if _, err := s.Snapshots.CreateFromSnapshot(ctx, disk.FromSnapshotRequest{ID: plan.target, SnapshotID: plan.point.SnapshotID,
			CreatedBy: job.ID, SKU: plan.point.DiskSKU, SizeBytes: plan.point.DiskSizeBytes,
			Principal: auth.Principal{ObjectID: plan.principal}}); err != nil {
			return err
		}
		return s.Store.InTx(ctx, func(tx meta.Tx) error { return s.endJob(ctx, tx, job.ID, nil, nil) })
	})
}
