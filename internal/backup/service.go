package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/google/uuid"
)

// BackupData removes what a backup instance stored when the instance is
// deleted; the disk engine implements it.
type BackupData interface {
	// DeleteSnapshotsTagged deletes the snapshots in the resource group
	// groupID whose tag has value. It is idempotent, and an empty groupID
	// deletes nothing.
	DeleteSnapshotsTagged(ctx context.Context, groupID, tag, value string) error
}

// Service runs the protection use cases over the metadata store.
type Service struct {
	Store       meta.Store
	Clock       clock.Clock
	Disks       Disks
	Permissions Permissions
	Data        BackupData // nil: deleting an instance deletes no backup data
	// Snapshots takes, stores and deletes the snapshots backups are made
	// of, and restores them to new disks.
	Snapshots Snapshots
	// Ops runs backups and restores; Register sets it.
	Ops *ops.Runner
	// Log records each backup and restore; nil logs to slog's default.
	Log *slog.Logger

	wakeOnce sync.Once
	wake     chan struct{}
}

// ProtectionRequest is what validate and configure protection check: the
// normalized instance and the vault it goes in. It is stored as the input
// of their durable operations, so its JSON form must stay readable.
type ProtectionRequest struct {
	VaultID    string         `json:"vaultId"`
	InstanceID string         `json:"instanceId,omitempty"` // "" for validateForBackup
	Instance   BackupInstance `json:"instance"`
	ActivityID string         `json:"activityId"` // echoed in user errors
}

// Validate runs the checks of validateForBackup. A check that fails is a
// UserError (kind invalid or forbidden); a failure to check is any other
// error, worth a retry.
func (s *Service) Validate(ctx context.Context, in ProtectionRequest) error {
	return s.check(ctx, in)
}

// Configure finishes configuring protection of the instance in.InstanceID:
// it runs the checks of Validate and records the outcome on the instance,
// ProtectionConfigured or ConfiguringProtectionFailed with the user error
// as protectionErrorDetails, and then returns that user error. A failure
// to check changes nothing and is returned for a retry.
func (s *Service) Configure(ctx context.Context, in ProtectionRequest) error {
	checkErr := s.check(ctx, in)
	if checkErr != nil && errs.KindOf(checkErr) == errs.Internal {
		return checkErr
	}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.LoadInstance(ctx, tx, in.InstanceID)
		if err != nil {
			return err
		}
		if checkErr != nil {
			details := FacingOf(checkErr)
			bi.Properties.ProtectionStatus = &ProtectionStatus{Status: StateConfiguringFailed, ErrorDetails: details}
			bi.Properties.CurrentProtectionState = StateConfiguringFailed
			bi.Properties.ProtectionErrorDetails = details
			bi.Properties.ProvisioningState = "Failed"
		} else {
			bi.Properties.ProtectionStatus = &ProtectionStatus{Status: StateConfigured}
			bi.Properties.CurrentProtectionState = StateConfigured
			bi.Properties.ProtectionErrorDetails = nil
			bi.Properties.ProvisioningState = "Succeeded"
			if err := s.schedule(ctx, tx, bi); err != nil {
				return err
			}
		}
		return s.saveInstance(ctx, tx, bi)
	})
	if err != nil {
		return err
	}
	if checkErr == nil {
		s.Wake()
	}
	return checkErr
}

// EnsureUnprotected returns UserErrorDppDatasourceAlreadyProtected if an
// instance other than except (an instance id, or "") protects the disk b
// names, in any vault. b must have been through NormalizeInstance.
func (s *Service) EnsureUnprotected(ctx context.Context, tx meta.Tx, b *BackupInstance, except, activityID string) error {
	found, err := tx.BackupInstancesOf(ctx, datasourceKey(b))
	if err != nil {
		return err
	}
	for _, bi := range found {
		if !strings.EqualFold(bi.ID, except) {
			return alreadyProtected(bi, activityID)
		}
	}
	return nil
}

// InstanceRequest asks for a backup instance to be created or updated.
type InstanceRequest struct {
	VaultID    string
	Name       string
	Tags       map[string]string // nil keeps the instance's tags
	Properties BackupInstance    // through NormalizeInstance
	ActivityID string
	// Caller approves moving an instance to a policy that keeps backups
	// for less time, where the vault's resource guard protects that.
	Caller Caller
}

// PutInstance creates or updates a backup instance in tx, in state
// ConfiguringProtection; the caller enqueues the Configure that ends it in
// the same transaction. The vault must exist. It refuses a policy the vault
// does not hold, a disk another instance protects, and a change of an
// instance's disk; created reports a new instance.
func (s *Service) PutInstance(ctx context.Context, tx meta.Tx, in InstanceRequest) (out InstanceResource, created bool, err error) {
	id := in.VaultID + "/backupInstances/" + in.Name
	props := in.Properties
	p, err := loadPolicy(ctx, tx, in.VaultID, props.PolicyInfo.PolicyID, func() error {
		return invalid("UserErrorBackupPolicyNotFound", "properties.policyInfo.policyId", "The backup policy '%s' does not exist in the vault.",
			lastSegment(props.PolicyInfo.PolicyID))
	})
	if err != nil {
		return InstanceResource{}, false, err
	}
	if err := s.EnsureUnprotected(ctx, tx, &props, id, in.ActivityID); err != nil {
		return InstanceResource{}, false, err
	}
	prev, err := s.LoadInstance(ctx, tx, id)
	switch {
	case err == nil && prev.SoftDeleted():
		return InstanceResource{}, false, errs.E(errs.Conflict, "UserErrorBackupInstanceSoftDeleted",
			"The backup instance '%s' is soft-deleted; undelete it (deletedBackupInstances/%s/undelete) or wait until it is purged at %s.",
			prev.Name, prev.Name, prev.Properties.DeletionInfo.ScheduledPurgeTime.Format(time.RFC3339))
	case err == nil:
		if datasourceKey(&prev.Properties) != datasourceKey(&props) {
			return InstanceResource{}, false, invalid("UserErrorDatasourceChangeNotAllowed", "properties.dataSourceInfo.resourceID",
				"The backup instance '%s' protects '%s'; it cannot be changed to protect another disk.", prev.Name, prev.Properties.DataSourceInfo.ResourceID)
		}
		// The snapshot resource group is fixed once protection is
		// configured: the instance's recovery points live there.
		if old := prev.Properties.SnapshotGroup(); old != "" && !strings.EqualFold(strings.TrimSuffix(old, "/"), strings.TrimSuffix(props.SnapshotGroup(), "/")) {
			return InstanceResource{}, false, invalid("UserErrorSnapshotResourceGroupChangeNotAllowed",
				"properties.policyInfo.policyParameters.dataStoreParametersList[0].resourceGroupId",
				"The backup instance '%s' keeps its snapshots in '%s'; the snapshot resource group cannot change after protection is configured.", prev.Name, old)
		}
		// An update re-configures protection; it does not resume it.
		switch st := prev.Properties.CurrentProtectionState; st {
		case StateStopped, StateSuspended:
			return InstanceResource{}, false, errs.E(errs.Invalid, "UserErrorInvalidProtectionStateForOperation",
				"The backup instance '%s' is '%s'; resume it with resumeProtection or resumeBackups before updating it.", prev.Name, st)
		}
		if prev.Properties.PolicyInfo != nil && !strings.EqualFold(prev.Properties.PolicyInfo.PolicyID, p.ID) {
			old, err := loadPolicy(ctx, tx, in.VaultID, prev.Properties.PolicyInfo.PolicyID, func() error { return errs.E(errs.NotFound, "", "") })
			if err == nil && p.keepsLessThan(old) {
				if err := s.authorizeCritical(ctx, tx, in.VaultID, OpModifyProtection, in.Caller); err != nil {
					return InstanceResource{}, false, err
				}
			} else if err != nil && !errs.Is(err, errs.NotFound) {
				return InstanceResource{}, false, err
			}
		}
		out = prev
	case errs.Is(err, errs.NotFound):
		out = InstanceResource{ID: id, Name: in.Name, Type: InstanceType}
		created = true
	default:
		return InstanceResource{}, false, err
	}
	props.PolicyInfo.PolicyID = p.ID
	props.ResourceGuardOperationRequests = nil // an approval, not a setting
	props.ProtectionStatus = &ProtectionStatus{Status: StateConfiguring}
	props.CurrentProtectionState = StateConfiguring
	props.ProtectionErrorDetails = nil
	props.ProvisioningState = "Provisioning"
	out.Properties = props
	if in.Tags != nil {
		out.Tags = in.Tags
	}
	return out, created, s.saveInstance(ctx, tx, out)
}

// LoadInstance reads the backup instance id in tx; an errs.NotFound
// (ResourceNotFound) error if absent.
func (s *Service) LoadInstance(ctx context.Context, tx meta.Tx, id string) (InstanceResource, error) {
	var bi InstanceResource
	name := lastSegment(id)
	_, err := load(ctx, tx, id, &bi, func() error {
		return errs.E(errs.NotFound, "ResourceNotFound", "The backup instance '%s' was not found in the vault.", name)
	})
	return bi, err
}

// StartAction checks in tx that the action may start on the instance id
// now, by c where the vault's resource guard protects it; the caller
// enqueues the ChangeState that does it.
func (s *Service) StartAction(ctx context.Context, tx meta.Tx, id string, a Action, c Caller) (InstanceResource, error) {
	bi, err := s.LoadInstance(ctx, tx, id)
	if err != nil {
		return InstanceResource{}, err
	}
	if err := a.AllowedFrom(bi.Properties.CurrentProtectionState); err != nil {
		return InstanceResource{}, err
	}
	if op := a.critical(); op != "" {
		if err := s.authorizeCritical(ctx, tx, vaultOf(bi.ID), op, c); err != nil {
			return InstanceResource{}, err
		}
	}
	return bi, nil
}

// ChangeState moves the instance by the action named action. It is
// idempotent: an instance already in the action's target state is left as
// it is.
func (s *Service) ChangeState(ctx context.Context, instanceID, action string) error {
	a, ok := ActionNamed(action)
	if !ok {
		return fmt.Errorf("unknown protection action %q", action)
	}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.LoadInstance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if bi.Properties.CurrentProtectionState == a.To {
			return nil // done by an earlier attempt
		}
		if err := a.AllowedFrom(bi.Properties.CurrentProtectionState); err != nil {
			return err
		}
		bi.Properties.CurrentProtectionState = a.To
		bi.Properties.ProtectionStatus = &ProtectionStatus{Status: a.Status}
		if a.To == StateConfigured {
			// Resumed: the next slot from now, not the ones missed while
			// suspended or stopped.
			if err := s.schedule(ctx, tx, bi); err != nil {
				return err
			}
		}
		return s.saveInstance(ctx, tx, bi)
	})
	if err == nil && a.To == StateConfigured {
		s.Wake()
	}
	return err
}

// StartDelete marks the instance id Deleting in tx, if c may delete it
// under the vault's resource guard; the caller enqueues the DeleteInstance
// that finishes.
func (s *Service) StartDelete(ctx context.Context, tx meta.Tx, id string, c Caller) (InstanceResource, error) {
	bi, err := s.Instance(ctx, tx, id)
	if err != nil {
		return InstanceResource{}, err
	}
	if err := s.authorizeCritical(ctx, tx, vaultOf(bi.ID), OpDeleteInstance, c); err != nil {
		return InstanceResource{}, err
	}
	// An immutable vault without soft delete would destroy recovery points
	// before their time: refused while any is unexpired.
	if v, err := LoadVault(ctx, tx, vaultOf(bi.ID)); err == nil && v.Immutable() {
		if _, soft := v.softDeleteDays(); !soft {
			n, err := tx.CountTimes(ctx, meta.TimeQuery{Kind: timeExpiry, Owner: bi.ID, From: s.Clock.Now()})
			if err != nil {
				return InstanceResource{}, err
			}
			if n > 0 {
				return InstanceResource{}, errs.E(errs.Conflict, "UserErrorImmutableVaultOperationNotAllowed",
					"The vault's immutability is on and the backup instance '%s' has %d recovery points that have not expired; it can be deleted once they have, or stop protection and retain its data.", bi.Name, n)
			}
		}
	}
	bi.Properties.ProvisioningState = "Deleting"
	return bi, s.saveInstance(ctx, tx, bi)
}

// DeleteInstance deletes the instance. In a vault whose soft delete is on
// it is soft-deleted: it leaves the vault's instances, stops being backed
// up, and keeps its recovery points and snapshots until its purge time
// (retentionDurationInDays on), when PurgeDue deletes them; Undelete brings
// it back before then. Otherwise it and its backup data go now. It is
// idempotent: an instance already gone, or already soft-deleted, is
// success.
func (s *Service) DeleteInstance(ctx context.Context, instanceID, activity string) error {
	bi, err := s.LoadInstance(ctx, s.Store, instanceID)
	if errs.Is(err, errs.NotFound) || err == nil && bi.SoftDeleted() {
		return nil // an earlier attempt finished
	}
	if err != nil {
		return err
	}
	v, err := LoadVault(ctx, s.Store, vaultOf(bi.ID))
	if err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	if days, on := v.softDeleteDays(); err == nil && on {
		return s.Store.InTx(ctx, func(tx meta.Tx) error {
			bi, err := s.LoadInstance(ctx, tx, instanceID)
			if err != nil || bi.SoftDeleted() {
				return err
			}
			now := s.Clock.Now().UTC()
			purge := now.Add(time.Duration(days) * 24 * time.Hour)
			bi.Properties.DeletionInfo = &DeletionInfo{DeletionTime: now, BillingEndDate: now, ScheduledPurgeTime: purge, DeleteActivityID: activity}
			bi.Properties.CurrentProtectionState = StateSoftDeleted
			bi.Properties.ProtectionStatus = &ProtectionStatus{Status: StateSoftDeleted}
			bi.Properties.ProvisioningState = "SoftDeleted"
			if err := tx.SetTime(ctx, bi.ID, timeNextSlot, "", time.Time{}); err != nil {
				return err
			}
			if err := tx.SetTime(ctx, bi.ID, timePurge, "", purge); err != nil {
				return err
			}
			return s.saveInstance(ctx, tx, bi)
		})
	}
	return s.purge(ctx, bi)
}

// purge deletes an instance and its backup data: each recovery point's
// snapshot (the points are the source of truth; a user may have retagged a
// snapshot), then any snapshot still tagged with the instance, then the
// rows. A crash in between leaves the instance, and the next attempt
// carries on.
func (s *Service) purge(ctx context.Context, bi InstanceResource) error {
	var after *meta.Timed
	for {
		points, err := s.Store.ListTimes(ctx, meta.TimeQuery{Kind: timePoint, Owner: bi.ID, After: after, Limit: 200})
		if err != nil {
			return err
		}
		for _, t := range points {
			p, err := loadPoint(ctx, s.Store, t.ID)
			if err != nil && !errs.Is(err, errs.NotFound) {
				return err
			}
			if err == nil && s.Snapshots != nil {
				if err := s.Snapshots.DeleteSnapshot(ctx, p.SnapshotID); err != nil {
					return err
				}
			}
		}
		if len(points) < 200 {
			break
		}
		last := points[len(points)-1]
		after = &last
	}
	if s.Data != nil {
		if err := s.Data.DeleteSnapshotsTagged(ctx, bi.Properties.SnapshotGroup(), BackupTag, bi.ID); err != nil {
			return err
		}
	}
	_, err := s.Store.DeleteTree(ctx, bi.ID)
	return err
}

// Undelete brings back a soft-deleted instance, with its recovery points,
// as ProtectionStopped: resumeProtection starts its backups again.
func (s *Service) Undelete(ctx context.Context, instanceID string) error {
	return s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.LoadInstance(ctx, tx, instanceID)
		if err != nil || !bi.SoftDeleted() {
			return err // gone, or an earlier attempt finished
		}
		bi.Properties.DeletionInfo = nil
		bi.Properties.CurrentProtectionState = StateStopped
		bi.Properties.ProtectionStatus = &ProtectionStatus{Status: StateStopped}
		bi.Properties.ProvisioningState = "Succeeded"
		if err := tx.SetTime(ctx, bi.ID, timePurge, "", time.Time{}); err != nil {
			return err
		}
		return s.saveInstance(ctx, tx, bi)
	})
}

// Instance reads the backup instance id as clients address it: a
// soft-deleted instance is not there (it is among the deleted ones).
func (s *Service) Instance(ctx context.Context, tx meta.Tx, id string) (InstanceResource, error) {
	bi, err := s.LoadInstance(ctx, tx, id)
	if err == nil && bi.SoftDeleted() {
		return InstanceResource{}, errs.E(errs.NotFound, "ResourceNotFound", "The backup instance '%s' was not found in the vault.", bi.Name)
	}
	return bi, err
}

// Deleted reads the soft-deleted instance named name of the vault.
func (s *Service) Deleted(ctx context.Context, vaultID, name string) (InstanceResource, error) {
	bi, err := s.LoadInstance(ctx, s.Store, vaultID+"/backupInstances/"+name)
	if err == nil && !bi.SoftDeleted() {
		return InstanceResource{}, errs.E(errs.NotFound, "ResourceNotFound", "The deleted backup instance '%s' was not found in the vault.", name)
	}
	return bi, err
}

// PurgeDue purges the soft-deleted instances whose time has come.
func (s *Service) PurgeDue(ctx context.Context) (int, error) {
	due, err := s.Store.ListTimes(ctx, meta.TimeQuery{Kind: timePurge, To: s.Clock.Now(), Limit: 200})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		bi, err := s.LoadInstance(ctx, s.Store, d.ID)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if !bi.SoftDeleted() {
			continue
		}
		if err := s.purge(ctx, bi); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// InstancesUsing returns the names of the backup instances whose policy is
// policyID, in id order.
func (s *Service) InstancesUsing(ctx context.Context, tx meta.Tx, policyID string) ([]string, error) {
	vault := policyID[:strings.LastIndex(strings.ToLower(policyID), "/backuppolicies/")]
	all, err := tx.BackupInstancesIn(ctx, vault)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, bi := range all {
		if strings.EqualFold(bi.Policy, policyID) {
			names = append(names, lastSegment(bi.ID))
		}
	}
	return names, nil
}

// CountInstances counts the backup instances of the vault.
func (s *Service) CountInstances(ctx context.Context, tx meta.Tx, vaultID string) (int, error) {
	all, err := tx.BackupInstancesIn(ctx, vaultID)
	return len(all), err
}

// Reindex writes the index row of every stored backup instance and returns
// how many there are. The server runs it at start-up: instances stored
// before the index existed have no row, and a row is rewritten from the
// instance as it is, so running it again changes nothing.
func (s *Service) Reindex(ctx context.Context) (int, error) {
	n := 0
	q := meta.Query{Type: InstanceType, Limit: 500}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return n, err
		}
		err = s.Store.InTx(ctx, func(tx meta.Tx) error {
			for _, res := range page.Items {
				// Read again inside the transaction, so a row written since
				// the listing is indexed as it is now.
				bi, err := s.LoadInstance(ctx, tx, res.ID)
				if errs.Is(err, errs.NotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if err := tx.IndexBackupInstance(ctx, indexOf(bi)); err != nil {
					return err
				}
				// A protected instance without a next slot (written before
				// schedules existed) gets one; one that has a slot keeps it,
				// so a slot missed while the server was down still fires.
				if bi.Properties.CurrentProtectionState == StateConfigured {
					if _, ok, err := tx.GetTime(ctx, bi.ID, timeNextSlot); err != nil {
						return err
					} else if !ok {
						if err := s.schedule(ctx, tx, bi); err != nil && !errs.Is(err, errs.NotFound) {
							return err
						}
					}
				}
				n++
			}
			return nil
		})
		if err != nil || page.Next == "" {
			return n, err
		}
		q.After = page.Next
	}
}

// saveInstance stores bi and its index row.
func (s *Service) saveInstance(ctx context.Context, tx meta.Tx, bi InstanceResource) error {
	body, err := json.Marshal(bi)
	if err != nil {
		return err
	}
	parts := strings.Split(bi.ID, "/")
	if _, err := tx.PutResource(ctx, meta.Resource{ID: bi.ID, Type: InstanceType, Name: bi.Name, Subscription: parts[2],
		ResourceGroup: parts[4], Parent: vaultOf(bi.ID), Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()}); err != nil {
		return err
	}
	return tx.IndexBackupInstance(ctx, indexOf(bi))
}

func indexOf(bi InstanceResource) meta.BackupInstanceIndex {
	idx := meta.BackupInstanceIndex{ID: bi.ID, Vault: vaultOf(bi.ID), Datasource: datasourceKey(&bi.Properties),
		State: bi.Properties.CurrentProtectionState}
	if bi.Properties.PolicyInfo != nil {
		idx.Policy = bi.Properties.PolicyInfo.PolicyID
	}
	return idx
}

// vaultOf is the vault id an instance id is under.
func vaultOf(instanceID string) string {
	return instanceID[:strings.LastIndex(strings.ToLower(instanceID), "/backupinstances/")]
}

func lastSegment(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// loadPolicy reads the policy policyID names in the vault; notFound makes
// the error when there is none.
func loadPolicy(ctx context.Context, tx meta.Tx, vaultID, policyID string, notFound func() error) (Policy, error) {
	var p Policy
	_, err := load(ctx, tx, vaultID+"/backupPolicies/"+lastSegment(policyID), &p, notFound)
	return p, err
}
