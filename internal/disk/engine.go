package disk

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/google/uuid"
)

// Authorizer decides whether a principal may perform an action at a scope,
// returning the 403 to give when it may not. The engine asks it for the
// rights an operation needs beyond the one its caller was routed by:
// reading the disk a snapshot copies, reading the snapshot a disk is made
// from.
type Authorizer interface {
	Authorize(ctx context.Context, p auth.Principal, action, scope string) error
}

// Engine is the disk engine: the disks and snapshots of this node, their
// volumes, and the work on their bytes. Its methods are the use cases the
// Compute provider translates ARM calls into, and the ones the backup
// engine calls directly. Safe for concurrent use once its fields are set.
type Engine struct {
	Store   meta.Store
	Clock   clock.Clock
	Volumes *Volumes
	// Chunks keeps snapshots; InFlight protects what uploads and restores
	// are using from the garbage collector of the same store.
	Chunks   *chunk.Store
	InFlight *snapshot.InFlight
	// Permissions checks rights beyond the route's own action; nil grants
	// everything (tests of the engine alone).
	Permissions Authorizer
	// Background is the context of background work (hydration); it ends
	// at shutdown.
	Background context.Context
	// Log receives what background work cannot return to a caller (a
	// hydration that stopped); nil is slog.Default().
	Log *slog.Logger

	frozen    frozenSet
	exports   liveExports
	hydrators hydrators
}

func (e *Engine) log() *slog.Logger {
	if e.Log == nil {
		return slog.Default()
	}
	return e.Log
}

func (e *Engine) authorize(ctx context.Context, p auth.Principal, action, scope string) error {
	if e.Permissions == nil {
		return nil
	}
	return e.Permissions.Authorize(ctx, p, action, scope)
}

// DiskID is the canonical id of a disk.
func DiskID(sub, group, name string) string {
	return groups.ID(sub, group) + "/providers/Microsoft.Compute/disks/" + name
}

// SnapshotID is the canonical id of a snapshot.
func SnapshotID(sub, group, name string) string {
	return groups.ID(sub, group) + "/providers/Microsoft.Compute/snapshots/" + name
}

// ParseDiskID splits a disk id into its parts.
func ParseDiskID(id string) (sub, group, name string, ok bool) {
	return parseComputeID(id, "disks")
}

// ParseSnapshotID splits a snapshot id into its parts.
func ParseSnapshotID(id string) (sub, group, name string, ok bool) {
	return parseComputeID(id, "snapshots")
}

func parseComputeID(id, typ string) (sub, group, name string, ok bool) {
	rid, err := arm.ParseResourceID(id)
	if err != nil || !rid.Is("Microsoft.Compute/"+typ) {
		return "", "", "", false
	}
	return rid.Subscription(), rid.ResourceGroup(), rid.Name(), true
}

// DiskNotFound is ARM's 404 for a missing disk.
func DiskNotFound(group, name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound",
		"The Resource 'Microsoft.Compute/disks/%s' under resource group '%s' was not found.", name, group)
}

// SnapshotNotFound is ARM's 404 for a missing snapshot.
func SnapshotNotFound(group, name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound",
		"The Resource 'Microsoft.Compute/snapshots/%s' under resource group '%s' was not found.", name, group)
}

// Load reads a disk in tx. A missing disk in a missing group is
// ResourceGroupNotFound, as ARM answers.
func Load(ctx context.Context, tx meta.Tx, sub, group, name string) (Record, error) {
	res, err := tx.GetResource(ctx, DiskID(sub, group, name))
	if errs.Is(err, errs.NotFound) {
		if _, gerr := groups.Get(ctx, tx, sub, group); gerr != nil {
			return Record{}, gerr
		}
		return Record{}, DiskNotFound(group, name)
	}
	if err != nil {
		return Record{}, err
	}
	return DecodeRecord(res.Body)
}

// LoadByID reads the disk with this id in tx.
func LoadByID(ctx context.Context, tx meta.Tx, id string) (Record, error) {
	sub, group, name, ok := ParseDiskID(id)
	if !ok {
		return Record{}, Invalid("diskId", "'%s' is not the id of a managed disk.", id)
	}
	return Load(ctx, tx, sub, group, name)
}

// Save stores a disk's record in tx.
func (e *Engine) Save(ctx context.Context, tx meta.Tx, rec Record) (bool, error) {
	sub, group, _, ok := ParseDiskID(rec.ID)
	if !ok {
		return false, Invalid("diskId", "'%s' is not the id of a managed disk.", rec.ID)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	return tx.PutResource(ctx, meta.Resource{
		ID: rec.ID, Type: DiskType, Name: rec.Name, Subscription: sub, ResourceGroup: group,
		Parent: groups.ID(sub, group), Body: body, ETag: uuid.NewString(), UpdatedAt: e.Clock.Now(),
	})
}

// LoadSnapshot reads the snapshot with this id in tx.
func LoadSnapshot(ctx context.Context, tx meta.Tx, id string) (SnapshotRecord, error) {
	_, group, name, ok := ParseSnapshotID(id)
	if !ok {
		return SnapshotRecord{}, errs.E(errs.NotFound, "ResourceNotFound", "'%s' is not the id of a snapshot.", id)
	}
	res, err := tx.GetResource(ctx, id)
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return SnapshotRecord{}, SnapshotNotFound(group, name)
		}
		return SnapshotRecord{}, err
	}
	var rec SnapshotRecord
	return rec, json.Unmarshal(res.Body, &rec)
}

// SaveSnapshot stores a snapshot's record in tx.
func (e *Engine) SaveSnapshot(ctx context.Context, tx meta.Tx, rec SnapshotRecord) error {
	sub, group, _, ok := ParseSnapshotID(rec.ID)
	if !ok {
		return Invalid("snapshotId", "'%s' is not the id of a snapshot.", rec.ID)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = tx.PutResource(ctx, meta.Resource{ID: rec.ID, Type: SnapshotType, Name: rec.Name, Subscription: sub,
		ResourceGroup: group, Parent: groups.ID(sub, group), Body: body, ETag: uuid.NewString(), UpdatedAt: e.Clock.Now()})
	return err
}

// DiskLocation returns the region of the disk with this id, or an
// errs.NotFound error when there is none.
func (e *Engine) DiskLocation(ctx context.Context, diskID string) (string, error) {
	rec, err := LoadByID(ctx, e.Store, diskID)
	if err != nil {
		return "", err
	}
	return rec.Location, nil
}
