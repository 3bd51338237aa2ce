package disk

import (
	"context"
	"errors"
	"strings"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// Provision creates or grows the volume of the disk diskID (whose unique
// id must still be uniqueID) to its recorded size, then marks the disk
// Succeeded. A disk made from a snapshot is usable at once: its volume
// reads what is not yet local from its own copy of the snapshot's index,
// and a background task hydrates it. Idempotent: re-run after a crash it
// finds the volume and carries on; if the disk is gone or going, whatever
// volume an earlier attempt made is removed instead.
func (e *Engine) Provision(ctx context.Context, diskID, uniqueID string) error {
	err := e.provision(ctx, diskID, uniqueID)
	if err == nil || errs.Is(err, errs.Transient) || ctx.Err() != nil {
		return err
	}
	// Failed for good: the disk says so, rather than staying Updating.
	failed := provisioningFailed(err)
	if ferr := e.markFailed(ctx, diskID, uniqueID); ferr != nil {
		return ferr
	}
	return failed
}

// provisioningFailed is the error a disk whose provisioning failed for good
// reports: the volume's own code when it has one (InvalidVolumeSize, say),
// DiskProvisioningFailed otherwise.
func provisioningFailed(err error) error {
	var e *errs.Error
	if errors.As(err, &e) && e.Code != "" && e.Kind != errs.Internal {
		return err
	}
	return errs.E(errs.Internal, "DiskProvisioningFailed", "The disk's storage could not be created or resized; see the server log.").Wrap(err)
}

// markFailed records that the disk's provisioning failed, unless the name
// now holds another disk or the disk is being deleted.
func (e *Engine) markFailed(ctx context.Context, diskID, uniqueID string) error {
	return e.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := LoadByID(ctx, tx, diskID)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		if err != nil || rec.Properties.UniqueID != uniqueID || rec.Properties.ProvisioningState != ProvisioningUpdating {
			return err
		}
		rec.Properties.ProvisioningState = ProvisioningFailed
		_, err = e.Save(ctx, tx, rec)
		return err
	})
}

func (e *Engine) provision(ctx context.Context, diskID, uniqueID string) error {
	res, err := e.Store.GetResource(ctx, diskID)
	if errs.Is(err, errs.NotFound) {
		return e.RemoveVolume(ctx, uniqueID)
	}
	if err != nil {
		return err
	}
	rec, err := DecodeRecord(res.Body)
	if err != nil {
		return err
	}
	if rec.Properties.UniqueID != uniqueID || rec.Properties.ProvisioningState == ProvisioningDeleting {
		return e.RemoveVolume(ctx, uniqueID)
	}
	ensured := rec.Properties.DiskSizeBytes
	hydrating := ""
	if rec.RestoreFrom != "" {
		if hydrating, err = e.prepareHydration(ctx, rec.Properties.UniqueID, rec.RestoreFrom, ensured); err != nil {
			return err
		}
	}
	if err := e.Volumes.Ensure(rec.Properties.UniqueID, ensured); err != nil {
		return err
	}
	// A delete (of the disk or its group) that ran while the volume was
	// being made found nothing to remove; the volume is ours to remove.
	orphan := false
	err = e.Store.InTx(ctx, func(tx meta.Tx) error {
		res, err := tx.GetResource(ctx, diskID)
		if errs.Is(err, errs.NotFound) {
			orphan = true
			return nil
		}
		if err != nil {
			return err
		}
		rec, err := DecodeRecord(res.Body)
		if err != nil {
			return err
		}
		if rec.Properties.UniqueID != uniqueID || rec.Properties.ProvisioningState == ProvisioningDeleting {
			orphan = true
			return nil
		}
		// A later update may have asked for more; its own operation grows
		// the volume and finishes it.
		if rec.Properties.ProvisioningState != ProvisioningUpdating || rec.Properties.DiskSizeBytes > ensured {
			return nil
		}
		rec.Properties.ProvisioningState = ProvisioningSucceeded
		if rec.RestoreFrom != "" {
			rec.RestoreFrom, rec.Hydrating = "", hydrating
		}
		_, err = e.Save(ctx, tx, rec)
		return err
	})
	if err == nil && hydrating != "" && !orphan {
		e.startHydration(diskID, uniqueID, hydrating)
	}
	if err == nil && orphan {
		err = e.RemoveVolume(ctx, uniqueID)
	}
	return err
}

// RemoveVolume removes a disk's volume and, if it was made from a
// snapshot, its hydration index (a GC root that would otherwise stay).
func (e *Engine) RemoveVolume(ctx context.Context, uniqueID string) error {
	e.stopHydration(uniqueID)
	if err := e.Volumes.Remove(uniqueID); err != nil {
		return err
	}
	return e.dropHydrationIndex(ctx, uniqueID)
}

// Remove deletes the disk diskID: its volume, then its row, unless the
// name now holds a new disk (another unique id). Idempotent.
func (e *Engine) Remove(ctx context.Context, diskID, uniqueID string) error {
	if err := e.RemoveVolume(ctx, uniqueID); err != nil {
		return err
	}
	return e.Store.InTx(ctx, func(tx meta.Tx) error {
		res, err := tx.GetResource(ctx, diskID)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		rec, err := DecodeRecord(res.Body)
		if err != nil {
			return err
		}
		if rec.Properties.UniqueID != uniqueID {
			return nil
		}
		_, err = tx.DeleteResource(ctx, diskID)
		return err
	})
}

// DeleteGroupContents removes what the disks and snapshots of a resource
// group hold outside the metadata store: disks lose their volumes,
// snapshots their indexes (their chunks go at the next collection). The
// group's delete then removes the rows. Idempotent.
func (e *Engine) DeleteGroupContents(ctx context.Context, groupID string) error {
	for _, typ := range []string{DiskType, SnapshotType} {
		after := ""
		for {
			page, err := e.Store.ListResources(ctx, meta.Query{Type: typ, Under: groupID, After: after, Limit: 500})
			if err != nil {
				return err
			}
			for _, res := range page.Items {
				if typ == DiskType {
					rec, err := DecodeRecord(res.Body)
					if err != nil {
						return err
					}
					if err := e.RemoveVolume(ctx, rec.Properties.UniqueID); err != nil {
						return err
					}
					continue
				}
				rec, err := LoadSnapshot(ctx, e.Store, res.ID)
				if err != nil {
					return err
				}
				if err := snapshot.DeleteSnapshot(ctx, e.Chunks, rec.Index); err != nil && !errs.Is(err, errs.NotFound) {
					return err
				}
			}
			if page.Next == "" {
				break
			}
			after = page.Next
		}
	}
	return nil
}

// FromSnapshotRequest asks for a new disk made from a snapshot.
type FromSnapshotRequest struct {
	// ID is the new disk's id; its name must be free.
	ID string
	// SnapshotID is the snapshot to copy; the disk is made in its region.
	SnapshotID string
	// SKU is the disk's storage type ("" for Standard_LRS); SizeBytes its
	// size, at least the snapshot's (0 for the snapshot's).
	SKU       string
	SizeBytes int64
	Tags      map[string]string
	// Principal is who asks: it needs Microsoft.Compute/snapshots/read on
	// the snapshot and Microsoft.Compute/disks/write on the new disk.
	Principal auth.Principal
}

// CreateFromSnapshot records a new disk whose first bytes are a snapshot's
// and provisions it: on return the disk is Succeeded and usable, and it
// hydrates in the background. A disk of that name made from the same
// snapshot (an earlier attempt of the same request) is finished rather
// than refused, so a retried caller converges; any other disk of that name
// is a Conflict.
func (e *Engine) CreateFromSnapshot(ctx context.Context, req FromSnapshotRequest) (Record, error) {
	sub, group, name, ok := ParseDiskID(req.ID)
	if !ok {
		return Record{}, Invalid("datasourceInfo.resourceID", "'%s' is not the id of a managed disk.", req.ID)
	}
	if err := e.authorize(ctx, req.Principal, "Microsoft.Compute/disks/write", req.ID); err != nil {
		return Record{}, err
	}
	sku := req.SKU
	if sku == "" {
		sku = "Standard_LRS"
	}
	sku, err := CanonicalSKU(sku)
	if err != nil {
		return Record{}, err
	}
	var rec Record
	err = e.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := groups.RequireActive(ctx, tx, sub, group); err != nil {
			return err
		}
		snap, err := LoadSnapshot(ctx, tx, req.SnapshotID)
		if err != nil {
			return err
		}
		existing, err := Load(ctx, tx, sub, group, name)
		switch {
		case err == nil:
			if !strings.EqualFold(existing.Properties.CreationData.SourceResourceID, snap.ID) ||
				existing.Properties.ProvisioningState == ProvisioningDeleting {
				return errs.E(errs.Conflict, "DiskAlreadyExists", "A disk named '%s' already exists in resource group '%s'.", name, group)
			}
			rec = existing
			return nil
		case !errs.Is(err, errs.NotFound):
			return err
		}
		if _, err := e.CopySource(ctx, tx, req.Principal, snap.ID, snap.Location); err != nil {
			return err
		}
		size := snap.Properties.DiskSizeBytes
		if req.SizeBytes > 0 {
			if req.SizeBytes < size {
				return Invalid("diskSizeGB", "The disk cannot be smaller than the snapshot's %d bytes.", size)
			}
			size = req.SizeBytes
		}
		rec = NewRecord(DiskID(sub, group, name), snap.Location, sku, e.Clock.Now())
		rec.Tags = req.Tags
		rec.SetSize(size)
		rec.Properties.OSType, rec.Properties.HyperVGeneration = snap.Properties.OSType, snap.Properties.HyperVGeneration
		rec.Properties.CreationData = CreationData{CreateOption: "Copy", SourceResourceID: snap.ID, SourceUniqueID: snap.Properties.UniqueID}
		rec.RestState, rec.Properties.DiskState = StateUnattached, StateUnattached
		rec.RestoreFrom = snap.Index
		_, err = e.Save(ctx, tx, rec)
		return err
	})
	if err != nil {
		return Record{}, err
	}
	if rec.Properties.ProvisioningState != ProvisioningSucceeded {
		if err := e.Provision(ctx, rec.ID, rec.Properties.UniqueID); err != nil {
			return Record{}, err
		}
	}
	return LoadByID(ctx, e.Store, rec.ID)
}
