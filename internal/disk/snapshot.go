package disk

import (
	"context"
	"strings"
	"sync"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
	"github.com/google/uuid"
)

// familyLabel indexes incremental snapshots by their family, so the
// per-disk count is one indexed query.
const familyLabel = "snapshotFamily"

// frozenSet holds the point-in-time views taken by BeginSnapshot until
// StoreSnapshot has stored them. A view does not survive a restart; a
// StoreSnapshot that finds none removes its snapshot.
type frozenSet struct {
	mu sync.Mutex
	m  map[string]frozenView
}

type frozenView struct {
	snap     *volume.Snapshot
	uniqueID string
}

func (f *frozenSet) put(id string, v frozenView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]frozenView{}
	}
	f.m[strings.ToLower(id)] = v
}

func (f *frozenSet) take(id string) (frozenView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[strings.ToLower(id)]
	delete(f.m, strings.ToLower(id))
	return v, ok
}

func (e *Engine) release(v frozenView) {
	v.snap.Release()
	e.Volumes.Release(v.uniqueID)
}

// SnapshotRequest asks for a snapshot of a disk.
type SnapshotRequest struct {
	// ID is the new snapshot's id; it must be in the disk's subscription.
	ID string
	// DiskID is the disk to copy.
	DiskID string
	// Location must be the disk's region; "" takes the disk's.
	Location string
	Tags     map[string]string
	// Incremental snapshots store only what changed since the previous one
	// of the disk's family; a disk has at most MaxIncrementalSnapshots.
	Incremental bool
	// Principal is who asks: copying a disk's bytes is reading it, so it
	// needs Microsoft.Compute/disks/beginGetAccess/action on the disk.
	Principal auth.Principal
}

// BeginSnapshot freezes the disk as it is now and records the snapshot,
// Updating, in one transaction with whatever enqueue records there (the
// operation that will call StoreSnapshot). The point in time is the
// return of BeginSnapshot: later writes to the disk are not in the
// snapshot, and they are not stalled while it is stored.
func (e *Engine) BeginSnapshot(ctx context.Context, req SnapshotRequest,
	enqueue func(ctx context.Context, tx meta.Tx, rec SnapshotRecord) error) (SnapshotRecord, error) {
	sub, group, name, ok := ParseSnapshotID(req.ID)
	if !ok {
		return SnapshotRecord{}, Invalid("snapshotName", "'%s' is not a snapshot id.", req.ID)
	}
	dsub, dgroup, dname, ok := ParseDiskID(req.DiskID)
	if !ok {
		return SnapshotRecord{}, Invalid("creationData.sourceResourceId", "'%s' is not the id of a managed disk.", req.DiskID)
	}
	if !strings.EqualFold(dsub, sub) {
		return SnapshotRecord{}, Invalid("creationData.sourceResourceId", "A snapshot must be in its disk's subscription '%s'.", dsub)
	}
	disk, err := Load(ctx, e.Store, dsub, dgroup, dname)
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return SnapshotRecord{}, errs.E(errs.NotFound, "NotFound", "The source disk '%s' was not found.", req.DiskID).WithTarget("creationData.sourceResourceId")
		}
		return SnapshotRecord{}, err
	}
	if err := e.authorize(ctx, req.Principal, "Microsoft.Compute/disks/beginGetAccess/action", disk.ID); err != nil {
		return SnapshotRecord{}, err
	}
	switch {
	case disk.Properties.ProvisioningState != ProvisioningSucceeded:
		return SnapshotRecord{}, NotAllowed("Disk '%s' is %s; snapshot it when it has finished.", disk.Name, disk.Properties.ProvisioningState)
	case disk.Properties.DiskState == StateReadyToUpload || disk.Properties.DiskState == StateActiveUpload:
		return SnapshotRecord{}, NotAllowed("Disk '%s' is waiting for its upload (%s) and has no bytes to snapshot yet.", disk.Name, disk.Properties.DiskState)
	case req.Location != "" && NormalizeLocation(req.Location) != disk.Location:
		return SnapshotRecord{}, Invalid("location", "A snapshot must be in its disk's region '%s', not '%s'.", disk.Location, req.Location)
	}

	vol, err := e.Volumes.Open(disk.Properties.UniqueID)
	if err != nil {
		return SnapshotRecord{}, err
	}
	snap, err := vol.Snapshot()
	if err != nil {
		e.Volumes.Release(disk.Properties.UniqueID)
		if errs.Is(err, errs.Conflict) {
			return SnapshotRecord{}, NotAllowed("Another snapshot of disk '%s' is still being stored; try again when it has finished.", disk.Name)
		}
		return SnapshotRecord{}, err
	}
	view := frozenView{snap: snap, uniqueID: disk.Properties.UniqueID}
	e.frozen.put(req.ID, view)

	unique := uuid.NewString()
	rec := SnapshotRecord{Snapshot: Snapshot{
		ID: req.ID, Name: name, Type: SnapshotType, Location: disk.Location, SKU: SKU{Name: "Standard_LRS", Tier: "Standard"},
		Properties: SnapshotProperties{
			OSType: disk.Properties.OSType, HyperVGeneration: disk.Properties.HyperVGeneration,
			CreationData: CreationData{CreateOption: "Copy", SourceResourceID: disk.ID, SourceUniqueID: disk.Properties.UniqueID},
			UniqueID:     unique, TimeCreated: e.Clock.Now().UTC(), ProvisioningState: ProvisioningUpdating,
			DiskState: StateUnattached, Incremental: req.Incremental, Encryption: Encryption{Type: "EncryptionAtRestWithPlatformKey"},
			NetworkAccessPolicy: "AllowAll", PublicNetworkAccess: "Enabled", DataAccessAuthMode: "None",
		},
	}, Index: "snapshots/" + unique}
	rec.Properties.DiskSizeBytes = snap.Size()
	rec.Properties.DiskSizeGB = (snap.Size() + GiB - 1) / GiB
	rec.Tags = req.Tags
	err = e.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := groups.RequireActive(ctx, tx, sub, group); err != nil {
			return err
		}
		d, err := Load(ctx, tx, dsub, dgroup, dname)
		if err != nil {
			return err
		}
		if d.Properties.UniqueID != disk.Properties.UniqueID {
			return NotAllowed("Disk '%s' was replaced while the snapshot was being taken.", disk.Name)
		}
		if d.Family == "" {
			d.Family = uuid.NewString()
			if _, err := e.Save(ctx, tx, d); err != nil {
				return err
			}
		}
		if req.Incremental {
			n, err := tx.CountLabeled(ctx, familyLabel, d.Family)
			if err != nil {
				return err
			}
			if n >= MaxIncrementalSnapshots {
				return NotAllowed("Disk '%s' has %d incremental snapshots, the most a disk may have; delete old ones first.", disk.Name, n)
			}
			rec.Properties.IncrementalSnapshotFamilyID = d.Family
		}
		if err := e.SaveSnapshot(ctx, tx, rec); err != nil {
			return err
		}
		if req.Incremental {
			if err := tx.SetLabel(ctx, rec.ID, familyLabel, d.Family); err != nil {
				return err
			}
		}
		if enqueue != nil {
			return enqueue(ctx, tx, rec)
		}
		return nil
	})
	if err != nil {
		if v, ok := e.frozen.take(req.ID); ok {
			e.release(v)
		}
		return SnapshotRecord{}, err
	}
	return rec, nil
}

// StoreSnapshot stores the view BeginSnapshot froze as a chunk-store
// index: for an incremental snapshot, only the blocks changed since the
// family's previous snapshot are read. The snapshot is Succeeded only once
// its chunks and index are durable. If the view is gone (the server
// restarted) or the upload fails for good, the snapshot is removed, never
// left half there, and the error is OperationPreempted or the upload's. A
// transient failure keeps the view and the snapshot so the caller can try
// again. Idempotent once the snapshot has Succeeded.
func (e *Engine) StoreSnapshot(ctx context.Context, id string) error {
	rec, err := LoadSnapshot(ctx, e.Store, id)
	if err != nil {
		if v, ok := e.frozen.take(id); ok {
			e.release(v)
		}
		if errs.Is(err, errs.NotFound) {
			return errs.E(errs.Conflict, "OperationPreempted", "The snapshot was deleted before it was stored.")
		}
		return err
	}
	if rec.Properties.ProvisioningState == ProvisioningSucceeded {
		return nil
	}
	view, ok := e.frozen.take(id)
	if !ok {
		if err := e.DropSnapshot(ctx, rec); err != nil {
			return err
		}
		return errs.E(errs.Conflict, "OperationPreempted",
			"The server restarted while snapshot '%s' was being stored, so its point in time is lost; it was removed. Take the snapshot again.", rec.Name)
	}
	keep := false
	defer func() {
		if keep {
			e.frozen.put(id, view)
		} else {
			e.release(view)
		}
	}()

	diskID, diskUniqueID := rec.Properties.CreationData.SourceResourceID, rec.Properties.CreationData.SourceUniqueID
	// The view is an Allocator: a full upload skips its holes.
	req := snapshot.UploadRequest{Name: rec.Index, Source: view.snap, InFlight: e.InFlight, Clock: e.Clock}
	if rec.Properties.Incremental {
		d, err := LoadByID(ctx, e.Store, diskID)
		if err != nil && !errs.Is(err, errs.NotFound) {
			keep = true
			return err
		}
		if err == nil && d.Properties.UniqueID == diskUniqueID && d.ChangeBase != "" {
			if prev, err := e.Chunks.GetIndex(ctx, d.ChangeBase); err == nil {
				req.Previous, req.PreviousName = &prev, d.ChangeBase
				req.Changed, req.ChangedBlockSize = view.snap.Changed(), view.snap.BlockSize()
			}
		}
	}
	if _, _, err := snapshot.Upload(ctx, e.Chunks, req); err != nil {
		if errs.Is(err, errs.Transient) || ctx.Err() != nil {
			keep = true
			return err
		}
		if derr := e.DropSnapshot(ctx, rec); derr != nil {
			return derr
		}
		return err
	}
	committed := false
	err = e.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := LoadSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		rec.Properties.ProvisioningState = ProvisioningSucceeded
		rec.Properties.CompletionPercent = 100
		if err := e.SaveSnapshot(ctx, tx, rec); err != nil {
			return err
		}
		if !rec.Properties.Incremental {
			return nil
		}
		d, err := LoadByID(ctx, tx, diskID)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		if err != nil || d.Properties.UniqueID != diskUniqueID {
			return err
		}
		d.ChangeBase = rec.Index
		committed = true
		_, err = e.Save(ctx, tx, d)
		return err
	})
	if err != nil {
		keep = true
		return err
	}
	if committed {
		// After the base is recorded: a crash in between leaves the change
		// set larger than needed, never smaller.
		return view.snap.Commit()
	}
	return nil
}

// TakeSnapshot is BeginSnapshot and StoreSnapshot in one call, for callers
// that are themselves durable work (a backup job): it returns once the
// snapshot is durable, or with the error that stopped it.
func (e *Engine) TakeSnapshot(ctx context.Context, req SnapshotRequest) (SnapshotRecord, error) {
	if _, err := e.BeginSnapshot(ctx, req, nil); err != nil {
		return SnapshotRecord{}, err
	}
	if err := e.StoreSnapshot(ctx, req.ID); err != nil {
		return SnapshotRecord{}, err
	}
	return LoadSnapshot(ctx, e.Store, req.ID)
}

// DropSnapshot removes a snapshot: index, then row (with its labels).
func (e *Engine) DropSnapshot(ctx context.Context, rec SnapshotRecord) error {
	if err := snapshot.DeleteSnapshot(ctx, e.Chunks, rec.Index); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	_, err := e.Store.DeleteResource(ctx, rec.ID)
	return err
}

// DeleteSnapshot removes the snapshot id if it is still there; its chunks
// go at the next garbage collection, if no other snapshot uses them.
func (e *Engine) DeleteSnapshot(ctx context.Context, id string) error {
	rec, err := LoadSnapshot(ctx, e.Store, id)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return e.DropSnapshot(ctx, rec)
}

// IncrementalSnapshots counts the incremental snapshots of the disk's
// family.
func (e *Engine) IncrementalSnapshots(ctx context.Context, tx meta.Tx, rec Record) (int, error) {
	if rec.Family == "" {
		return 0, nil
	}
	return tx.CountLabeled(ctx, familyLabel, rec.Family)
}

// IndexSnapshots labels every incremental snapshot with its family, for
// stores written before the label existed. Idempotent; the server runs it
// at start-up.
func (e *Engine) IndexSnapshots(ctx context.Context) error {
	q := meta.Query{Type: SnapshotType, Limit: 1000}
	for {
		page, err := e.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			rec, err := LoadSnapshot(ctx, e.Store, res.ID)
			if errs.Is(err, errs.NotFound) {
				continue // deleted since the listing
			}
			if err != nil {
				return err
			}
			if fam := rec.Properties.IncrementalSnapshotFamilyID; fam != "" {
				if err := e.Store.SetLabel(ctx, rec.ID, familyLabel, fam); err != nil {
					return err
				}
			}
		}
		if page.Next == "" {
			return nil
		}
		q.After = page.Next
	}
}

// DeleteSnapshotsTagged deletes the snapshots in the resource group
// groupID whose tag has value (compared case-insensitively), index first.
// Idempotent.
func (e *Engine) DeleteSnapshotsTagged(ctx context.Context, groupID, tag, value string) error {
	if groupID == "" {
		return nil
	}
	q := meta.Query{Type: SnapshotType, Under: groupID, Limit: 500}
	for {
		page, err := e.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			rec, err := LoadSnapshot(ctx, e.Store, res.ID)
			if err != nil {
				return err
			}
			if !strings.EqualFold(rec.Tags[tag], value) {
				continue
			}
			if err := e.DropSnapshot(ctx, rec); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.After = page.Next
	}
}

// CopySource returns the snapshot a new disk in location is to be made
// from, after the checks Azure makes: it exists and has finished, it is in
// the disk's region, and the principal may read it.
func (e *Engine) CopySource(ctx context.Context, tx meta.Tx, p auth.Principal, snapshotID, location string) (SnapshotRecord, error) {
	if _, _, _, ok := ParseSnapshotID(snapshotID); !ok {
		return SnapshotRecord{}, Invalid("creationData.sourceResourceId", "'%s' is not a snapshot id: coffer creates disks by Copy from snapshots.", snapshotID)
	}
	snap, err := LoadSnapshot(ctx, tx, snapshotID)
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return SnapshotRecord{}, errs.E(errs.NotFound, "NotFound", "The source snapshot '%s' was not found.", snapshotID).WithTarget("creationData.sourceResourceId")
		}
		return SnapshotRecord{}, err
	}
	if snap.Properties.ProvisioningState != ProvisioningSucceeded {
		return SnapshotRecord{}, NotAllowed("Snapshot '%s' is %s; a disk can be made from it when it has finished.", snap.Name, snap.Properties.ProvisioningState)
	}
	if NormalizeLocation(location) != snap.Location {
		return SnapshotRecord{}, Invalid("location", "A disk made from snapshot '%s' must be in its region '%s'.", snap.Name, snap.Location)
	}
	if err := e.authorize(ctx, p, "Microsoft.Compute/snapshots/read", snap.ID); err != nil {
		return SnapshotRecord{}, err
	}
	return snap, nil
}

// IndexNames maps the chunk-store indexes the engine keeps to the ARM ids
// of what they hold: each snapshot's index to the snapshot, and each
// hydration index to the disk still reading from it. It is how a report
// about an index (verify's) names what a user knows.
func IndexNames(ctx context.Context, tx meta.Tx) (map[string]string, error) {
	out := map[string]string{}
	for _, typ := range []string{SnapshotType, DiskType} {
		q := meta.Query{Type: typ, Limit: 1000}
		for {
			page, err := tx.ListResources(ctx, q)
			if err != nil {
				return out, err
			}
			for _, res := range page.Items {
				if typ == SnapshotType {
					rec, err := LoadSnapshot(ctx, tx, res.ID)
					if err != nil {
						return out, err
					}
					out[rec.Index] = rec.ID
					continue
				}
				rec, err := DecodeRecord(res.Body)
				if err != nil {
					return out, err
				}
				if rec.Hydrating != "" {
					out[rec.Hydrating] = rec.ID
				}
			}
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
	}
	return out, nil
}
