package compute

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

const (
	kindSnapshot       = "compute.createSnapshot"
	kindDeleteSnapshot = "compute.deleteSnapshot"
)

// SnapshotID is the canonical id of a snapshot.
func SnapshotID(sub, group, name string) string { return disk.SnapshotID(sub, group, name) }

// snapshotRoutes registers the snapshot operations.
func (s *Service) snapshotRoutes(r *arm.Router) {
	registerResource(r, "snapshots", "snapshotName", resourceHandlers{put: s.putSnapshot, get: s.getSnapshot, patch: s.patchSnapshot,
		delete: s.deleteSnapshot, beginGetAccess: s.snapshotBeginGetAccess, endGetAccess: s.snapshotEndGetAccess,
		listByGroup: s.listSnapshots, listBySubscription: s.listSnapshots})
	s.Ops.Register(kindSnapshot, s.runSnapshot)
	s.Ops.Register(kindDeleteSnapshot, s.runDeleteSnapshot)
}

type snapshotInput struct {
	Location   *string            `json:"location"`
	Tags       *map[string]string `json:"tags"`
	Properties *struct {
		CreationData *struct {
			CreateOption     *string `json:"createOption"`
			SourceResourceID *string `json:"sourceResourceId"`
		} `json:"creationData"`
		Incremental *bool `json:"incremental"`
	} `json:"properties"`
}

// snapshotOp is the input of a snapshot's store operation.
type snapshotOp struct {
	SnapshotID   string `json:"snapshotId"`
	DiskID       string `json:"diskId"`
	DiskUniqueID string `json:"diskUniqueId"`
	Incremental  bool   `json:"incremental"`
	Index        string `json:"index"`
}

func (s *Service) putSnapshot(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName")
	if err := checkDiskName(name); err != nil {
		return nil, err
	}
	var in snapshotInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	id := SnapshotID(sub, group, name)
	if existing, err := disk.LoadSnapshot(ctx, s.Store, id); err == nil {
		return s.updateSnapshot(ctx, r, existing, in)
	} else if !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	p := in.Properties
	if p == nil || p.CreationData == nil || p.CreationData.CreateOption == nil {
		return nil, invalid("creationData.createOption", "Required parameter 'creationData.createOption' is missing (null).")
	}
	if !strings.EqualFold(*p.CreationData.CreateOption, "Copy") {
		return nil, invalid("creationData.createOption",
			"The value '%s' of creationData.createOption is not supported for snapshots: use 'Copy' with sourceResourceId a disk.", *p.CreationData.CreateOption)
	}
	if p.CreationData.SourceResourceID == nil || *p.CreationData.SourceResourceID == "" {
		return nil, invalid("creationData.sourceResourceId", "Required parameter 'creationData.sourceResourceId' is missing (null).")
	}
	req := disk.SnapshotRequest{ID: id, DiskID: *p.CreationData.SourceResourceID, Location: *in.Location,
		Incremental: p.Incremental != nil && *p.Incremental, Principal: r.Principal}
	if in.Tags != nil {
		req.Tags = *in.Tags
	}
	var op meta.Operation
	rec, err := s.Disks.BeginSnapshot(ctx, req, func(ctx context.Context, tx meta.Tx, rec disk.SnapshotRecord) error {
		var err error
		op, err = s.Ops.Enqueue(ctx, tx, kindSnapshot, id, snapshotOp{SnapshotID: id, DiskID: rec.Properties.CreationData.SourceResourceID,
			DiskUniqueID: rec.Properties.CreationData.SourceUniqueID, Incremental: req.Incremental, Index: rec.Index})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	return accepted(r, http.StatusAccepted, rec.Snapshot, rec.Location, op), nil
}

// updateSnapshot is a PUT on an existing snapshot: only tags may change.
func (s *Service) updateSnapshot(ctx context.Context, r *arm.Request, rec disk.SnapshotRecord, in snapshotInput) (*arm.Response, error) {
	if p := in.Properties; p != nil && p.CreationData != nil && p.CreationData.SourceResourceID != nil &&
		!strings.EqualFold(*p.CreationData.SourceResourceID, rec.Properties.CreationData.SourceResourceID) {
		return nil, errs.E(errs.Conflict, "PropertyChangeNotAllowed",
			"Changing property 'creationData.sourceResourceId' is not allowed: snapshot '%s' is of '%s'.", rec.Name, rec.Properties.CreationData.SourceResourceID)
	}
	return s.patchSnapshotTags(ctx, rec.ID, in.Tags)
}

func (s *Service) patchSnapshot(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in snapshotInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	return s.patchSnapshotTags(ctx, SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName")), in.Tags)
}

func (s *Service) patchSnapshotTags(ctx context.Context, id string, tags *map[string]string) (*arm.Response, error) {
	var out disk.SnapshotRecord
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := disk.LoadSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		if tags != nil {
			// The tags that say which backup made a snapshot stay while a
			// guarded recovery point holds it.
			for _, k := range []string{backup.BackupTag, backup.RecoveryPointTag} {
				if v, ok := rec.Tags[k]; ok && (*tags)[k] != v && s.Guard != nil {
					if err := s.Guard.HoldOf(ctx, tx, id); err != nil {
						return err
					}
				}
			}
			rec.Tags = *tags
		}
		out = rec
		return s.Disks.SaveSnapshot(ctx, tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out.Snapshot), nil
}

// runSnapshot stores the frozen view as a chunk-store index.
func (s *Service) runSnapshot(ctx context.Context, op meta.Operation) (any, error) {
	var in snapshotOp
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Disks.StoreSnapshot(ctx, in.SnapshotID)
}

func (s *Service) getSnapshot(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rec, err := disk.LoadSnapshot(ctx, s.Store, SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName")))
	if err != nil {
		return nil, err
	}
	if rec.Settle(s.Clock.Now()) {
		_ = s.Disks.SaveSnapshot(ctx, s.Store, rec)
	}
	return arm.OK(rec.Snapshot), nil
}

func (s *Service) listSnapshots(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	page, err := s.Store.ListResources(ctx, meta.Query{Type: disk.SnapshotType, Subscription: r.Param("subscriptionId"),
		ResourceGroup: r.Param("resourceGroupName"), After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]disk.Snapshot, 0, len(page.Items))
	for _, res := range page.Items {
		rec, err := disk.LoadSnapshot(ctx, s.Store, res.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, rec.Snapshot)
	}
	return arm.List(r, out, page.Next), nil
}

type deleteSnapshotOp struct {
	SnapshotID string `json:"snapshotId"`
}

func (s *Service) deleteSnapshot(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	id := SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName"))
	var rec disk.SnapshotRecord
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		if rec, err = disk.LoadSnapshot(ctx, tx, id); err != nil {
			return err
		}
		rec.Settle(s.Clock.Now())
		if rec.Access != nil {
			return notAllowed("Snapshot '%s' has an active SAS; call endGetAccess first.", rec.Name)
		}
		if s.Guard != nil {
			if err := s.Guard.HoldOf(ctx, tx, id); err != nil {
				return err
			}
		}
		if rec.Properties.ProvisioningState == disk.ProvisioningUpdating {
			return notAllowed("Snapshot '%s' is still being stored; delete it when it has finished.", rec.Name)
		}
		rec.Properties.ProvisioningState = disk.ProvisioningDeleting
		if err := s.Disks.SaveSnapshot(ctx, tx, rec); err != nil {
			return err
		}
		op, err = s.Ops.Enqueue(ctx, tx, kindDeleteSnapshot, id, deleteSnapshotOp{SnapshotID: id})
		return err
	})
	return s.deleteStarted(r, err, rec.Location, op)
}

// runDeleteSnapshot removes the index, then the row. Its chunks go at the
// next garbage collection, if no other snapshot uses them.
func (s *Service) runDeleteSnapshot(ctx context.Context, op meta.Operation) (any, error) {
	var in deleteSnapshotOp
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Disks.DeleteSnapshot(ctx, in.SnapshotID)
}

func (s *Service) snapshotBeginGetAccess(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	id := SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName"))
	write, expires, err := s.parseGrant(r)
	if err != nil {
		return nil, err
	}
	if write {
		return nil, notAllowed("Snapshots are read-only: only 'Read' access can be granted.")
	}
	accessID, err := blobapi.NewAccessID()
	if err != nil {
		return nil, err
	}
	g := grantOp{DiskID: id, AccessID: accessID, Expires: expires, Base: r.BaseURL}
	var rec disk.SnapshotRecord
	var op meta.Operation
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		if rec, err = disk.LoadSnapshot(ctx, tx, id); err != nil {
			return err
		}
		rec.Settle(s.Clock.Now())
		if rec.Properties.ProvisioningState != disk.ProvisioningSucceeded {
			return notAllowed("Snapshot '%s' is %s; try again when it has finished.", rec.Name, rec.Properties.ProvisioningState)
		}
		if rec.Access != nil {
			return notAllowed("Snapshot '%s' already has an active SAS; call endGetAccess first.", rec.Name)
		}
		rec.Access = &disk.Access{ID: accessID, Expires: expires}
		rec.Properties.DiskState = disk.StateActiveSAS
		if err := s.Disks.SaveSnapshot(ctx, tx, rec); err != nil {
			return err
		}
		op, err = s.Ops.Enqueue(ctx, tx, kindGrant, id, g)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	return accepted(r, http.StatusAccepted, nil, rec.Location, op), nil
}

func (s *Service) snapshotEndGetAccess(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	id := SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName"))
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := disk.LoadSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		rec.Access = nil
		rec.Properties.DiskState = disk.StateUnattached
		return s.Disks.SaveSnapshot(ctx, tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusOK}, nil
}

// isCopy reports whether a disk PUT creates the disk from a snapshot.
func isCopy(in diskInput) bool {
	p := in.Properties
	if p == nil || p.CreationData == nil || p.CreationData.CreateOption == nil {
		return false
	}
	o := *p.CreationData.CreateOption
	return strings.EqualFold(o, "Copy") || strings.EqualFold(o, "Restore")
}

// newDiskFromSnapshot builds a disk whose first bytes are a snapshot's: its
// provisioning restores the snapshot's index into the new volume.
func (s *Service) newDiskFromSnapshot(ctx context.Context, tx meta.Tx, r *arm.Request, sub, group, name string, in diskInput) (disk.Record, error) {
	src := in.Properties.CreationData.SourceResourceID
	if src == nil || *src == "" {
		return disk.Record{}, invalid("creationData.sourceResourceId", "Required parameter 'creationData.sourceResourceId' is missing (null): a disk created with createOption Copy needs a snapshot id.")
	}
	snap, err := s.Disks.CopySource(ctx, tx, r.Principal, *src, *in.Location)
	if err != nil {
		return disk.Record{}, err
	}
	size := snap.Properties.DiskSizeBytes
	if gb := in.Properties.DiskSizeGB; gb != nil {
		if err := disk.CheckSizeGB(*gb); err != nil {
			return disk.Record{}, err
		}
		if *gb*disk.GiB < size {
			return disk.Record{}, invalid("diskSizeGB", "diskSizeGB %d is smaller than the snapshot's %d bytes.", *gb, size)
		}
		size = *gb * disk.GiB
	}
	empty := "Empty"
	gb := (size + disk.GiB - 1) / disk.GiB
	plain := in
	props := *in.Properties
	creation := *props.CreationData
	creation.CreateOption = &empty
	props.CreationData = &creation
	props.DiskSizeGB = &gb
	plain.Properties = &props
	rec, err := s.newDisk(sub, group, name, plain)
	if err != nil {
		return disk.Record{}, err
	}
	rec.SetSize(size)
	rec.Properties.CreationData = disk.CreationData{CreateOption: "Copy", SourceResourceID: snap.ID, SourceUniqueID: snap.Properties.UniqueID}
	if rec.Properties.OSType == "" {
		rec.Properties.OSType = snap.Properties.OSType
	}
	rec.RestoreFrom = snap.Index
	return rec, nil
}
