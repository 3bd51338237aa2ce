package backup

import (
	"context"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// Security setting states.
const (
	SoftDeleteOff      = "Off"
	SoftDeleteOn       = "On"
	SoftDeleteAlwaysOn = "AlwaysOn"

	ImmutabilityDisabled = "Disabled"
	ImmutabilityUnlocked = "Unlocked"
	ImmutabilityLocked   = "Locked"
)

// MergeSecurity applies a request's securitySettings to a vault's: field by
// field, so a request that names only immutability keeps soft delete as it
// is. It refuses what Azure makes one-way: AlwaysOn soft delete cannot be
// turned down, Locked immutability cannot be unlocked or disabled.
func MergeSecurity(current, change *SecuritySettings) (*SecuritySettings, error) {
	if change == nil {
		return current, nil
	}
	out := SecuritySettings{}
	if current != nil {
		out = *current
	}
	if sd := change.SoftDeleteSettings; sd != nil {
		merged := SoftDeleteSettings{}
		if out.SoftDeleteSettings != nil {
			merged = *out.SoftDeleteSettings
		}
		if out.SoftDeleteSettings != nil && out.SoftDeleteSettings.State == SoftDeleteAlwaysOn && sd.State != "" && sd.State != SoftDeleteAlwaysOn {
			return nil, errs.E(errs.Invalid, "UserErrorSoftDeleteAlwaysOnCannotBeChanged",
				"Soft delete is AlwaysOn for this vault and cannot be set to '%s': AlwaysOn is irreversible.", sd.State).
				WithTarget("properties.securitySettings.softDeleteSettings.state")
		}
		if sd.State != "" {
			merged.State = sd.State
		}
		if sd.RetentionDurationInDays != nil {
			merged.RetentionDurationInDays = sd.RetentionDurationInDays
		}
		out.SoftDeleteSettings = &merged
	}
	if im := change.ImmutabilitySettings; im != nil {
		if out.ImmutabilitySettings != nil && out.ImmutabilitySettings.State == ImmutabilityLocked && im.State != ImmutabilityLocked {
			return nil, errs.E(errs.Invalid, "UserErrorImmutabilityLockedCannotBeChanged",
				"Immutability is Locked for this vault and cannot be set to '%s': a locked vault stays locked.", im.State).
				WithTarget("properties.securitySettings.immutabilitySettings.state")
		}
		merged := *im
		out.ImmutabilitySettings = &merged
	}
	if change.EncryptionSettings != nil {
		out.EncryptionSettings = change.EncryptionSettings
	}
	return &out, nil
}

// Guards reports whether the vault's settings guard its backups: soft
// delete on, or immutability on (locked or not).
func (v Vault) Guards() bool {
	sec := v.Properties.SecuritySettings
	if sec == nil {
		return false
	}
	if sd := sec.SoftDeleteSettings; sd != nil && (sd.State == SoftDeleteOn || sd.State == SoftDeleteAlwaysOn) {
		return true
	}
	im := sec.ImmutabilitySettings
	return im != nil && (im.State == ImmutabilityUnlocked || im.State == ImmutabilityLocked)
}

// Immutable reports whether the vault's immutability is on.
func (v Vault) Immutable() bool {
	sec := v.Properties.SecuritySettings
	return sec != nil && sec.ImmutabilitySettings != nil &&
		(sec.ImmutabilitySettings.State == ImmutabilityUnlocked || sec.ImmutabilitySettings.State == ImmutabilityLocked)
}

// pointSnapshotLabel indexes recovery points by the snapshot that holds
// their data.
const pointSnapshotLabel = "pointSnapshot"

// HoldOf returns the error that refuses deleting or stripping the snapshot
// snapshotID outside the engine, nil when nothing guards it: a snapshot that
// holds a recovery point of a vault with soft delete or immutability on
// goes only when its recovery point goes. Azure leaves this gap open
// (anyone with rights on the snapshot resource group can delete the
// snapshots); coffer closes it.
func (s *Service) HoldOf(ctx context.Context, tx meta.Tx, snapshotID string) error {
	points, err := tx.FindLabeled(ctx, pointSnapshotLabel, snapshotID)
	if err != nil {
		return err
	}
	for _, id := range points {
		instance := id[:strings.LastIndex(id, "/recoveryPoints/")]
		v, err := LoadVault(ctx, tx, vaultOf(instance))
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if v.Guards() {
			return errs.E(errs.Conflict, "SnapshotHeldByBackupVault",
				"The snapshot holds recovery point '%s' of backup instance '%s' in vault '%s', whose soft delete or immutability is on; it goes when the recovery point expires or is deleted through the vault.",
				lastSegment(id), lastSegment(instance), v.ID)
		}
	}
	return nil
}

// HoldsUnder returns HoldOf's refusal for the first guarded snapshot in the
// resource group groupID, or the refusal of a resource guard there that a
// vault elsewhere uses; nil if none: a group delete must not take them.
func (s *Service) HoldsUnder(ctx context.Context, groupID string) error {
	if err := s.guardsInUseUnder(ctx, groupID); err != nil {
		return err
	}
	q := meta.Query{Type: "Microsoft.Compute/snapshots", Under: groupID, Limit: 500}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			if err := s.HoldOf(ctx, s.Store, res.ID); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.After = page.Next
	}
}
