package compute

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/provider/resources"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
	"github.com/google/uuid"
)

// SnapshotType is the ARM type of a snapshot.
const SnapshotType = "Microsoft.Compute/snapshots"

// maxIncrementalSnapshots is Azure's limit of incremental snapshots a disk.
const maxIncrementalSnapshots = 500

const (
	kindSnapshot       = "compute.createSnapshot"
	kindDeleteSnapshot = "compute.deleteSnapshot"
)

// Snapshot is the wire form of a snapshot.
type Snapshot struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Location   string             `json:"location"`
	Tags       map[string]string  `json:"tags,omitempty"`
	SKU        SKU                `json:"sku"`
	Properties SnapshotProperties `json:"properties"`
}

// SnapshotProperties are what a snapshot shows.
type SnapshotProperties struct {
	OSType                      string       `json:"osType,omitempty"`
	HyperVGeneration            string       `json:"hyperVGeneration,omitempty"`
	CreationData                CreationData `json:"creationData"`
	DiskSizeGB                  int64        `json:"diskSizeGB"`
	DiskSizeBytes               int64        `json:"diskSizeBytes"`
	UniqueID                    string       `json:"uniqueId"`
	TimeCreated                 time.Time    `json:"timeCreated"`
	ProvisioningState           string       `json:"provisioningState"`
	DiskState                   string       `json:"diskState"`
	Incremental                 bool         `json:"incremental"`
	IncrementalSnapshotFamilyID string       `json:"incrementalSnapshotFamilyId,omitempty"`
	CompletionPercent           float64      `json:"completionPercent"`
	Encryption                  Encryption   `json:"encryption"`
	NetworkAccessPolicy         string       `json:"networkAccessPolicy"`
	PublicNetworkAccess         string       `json:"publicNetworkAccess"`
	DataAccessAuthMode          string       `json:"dataAccessAuthMode"`
}

// snapshotRecord is a snapshot's stored body.
type snapshotRecord struct {
	Snapshot
	Access *access `json:"cofferAccess,omitempty"`
	// Index is the chunk-store index that holds the snapshot's bytes.
	Index string `json:"cofferIndex"`
}

func (r *snapshotRecord) settle(now time.Time) bool {
	if r.Access == nil || now.Before(r.Access.Expires) {
		return false
	}
	r.Access = nil
	r.Properties.DiskState = StateUnattached
	return true
}

// SnapshotID is the canonical id of a snapshot.
func SnapshotID(sub, group, name string) string {
	return resources.GroupID(sub, group) + "/providers/Microsoft.Compute/snapshots/" + name
}

func snapshotNotFound(group, name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound",
		"The Resource 'Microsoft.Compute/snapshots/%s' under resource group '%s' was not found.", name, group)
}

func loadSnapshot(ctx context.Context, tx meta.Tx, id string) (snapshotRecord, meta.Resource, error) {
	res, err := tx.GetResource(ctx, id)
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			p := strings.Split(id, "/")
			return snapshotRecord{}, res, snapshotNotFound(p[4], p[len(p)-1])
		}
		return snapshotRecord{}, res, err
	}
	var rec snapshotRecord
	return rec, res, json.Unmarshal(res.Body, &rec)
}

func (s *Service) saveSnapshot(ctx context.Context, tx meta.Tx, rec snapshotRecord) error {
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := strings.Split(rec.ID, "/")
	_, err = tx.PutResource(ctx, meta.Resource{ID: rec.ID, Type: SnapshotType, Name: rec.Name, Subscription: p[2],
		ResourceGroup: p[4], Parent: resources.GroupID(p[2], p[4]), Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()})
	return err
}

// frozenSet holds the point-in-time views taken by snapshot PUTs until
// their operations have stored them. A view does not survive a restart;
// an operation that finds none fails and removes its snapshot.
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

func (s *Service) release(v frozenView) {
	v.snap.Release()
	s.Volumes.Release(v.uniqueID)
}

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

type snapshotOp struct {
	SnapshotID   string `json:"snapshotId"`
	DiskID       string `json:"diskId"`
	DiskUniqueID string `json:"diskUniqueId"`
	Incremental  bool   `json:"incremental"`
	Index        string `json:"index"`
}

// diskOf parses a disk id into its parts.
func diskOf(id string) (sub, group, name string, ok bool) {
	p := strings.Split(strings.Trim(id, "/"), "/")
	if len(p) != 8 || !strings.EqualFold(p[0], "subscriptions") || !strings.EqualFold(p[2], "resourceGroups") ||
		!strings.EqualFold(p[4], "providers") || !strings.EqualFold(p[5], "Microsoft.Compute") || !strings.EqualFold(p[6], "disks") {
		return "", "", "", false
	}
	return p[1], p[3], p[7], true
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
	if err := resources.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if err := resources.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	id := SnapshotID(sub, group, name)
	if existing, _, err := loadSnapshot(ctx, s.Store, id); err == nil {
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
	dsub, dgroup, dname, ok := diskOf(*p.CreationData.SourceResourceID)
	if !ok {
		return nil, invalid("creationData.sourceResourceId", "'%s' is not the id of a managed disk.", *p.CreationData.SourceResourceID)
	}
	if !strings.EqualFold(dsub, sub) {
		return nil, invalid("creationData.sourceResourceId", "A snapshot must be in its disk's subscription '%s'.", dsub)
	}
	incremental := p.Incremental != nil && *p.Incremental
	disk, err := load(ctx, s.Store, dsub, dgroup, dname)
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return nil, errs.E(errs.NotFound, "NotFound", "The source disk '%s' was not found.", *p.CreationData.SourceResourceID).WithTarget("creationData.sourceResourceId")
		}
		return nil, err
	}
	// Copying a disk's bytes is reading it: the caller needs the rights
	// Disk Backup Reader and Disk Snapshot Contributor give on the disk.
	if s.Permissions != nil {
		if err := s.Permissions.Authorize(ctx, r.Principal, "Microsoft.Compute/disks/beginGetAccess/action", disk.ID); err != nil {
			return nil, err
		}
	}
	switch {
	case disk.Properties.ProvisioningState != provisioningSucceeded:
		return nil, notAllowed("Disk '%s' is %s; snapshot it when it has finished.", disk.Name, disk.Properties.ProvisioningState)
	case disk.Properties.DiskState == StateReadyToUpload || disk.Properties.DiskState == StateActiveUpload:
		return nil, notAllowed("Disk '%s' is waiting for its upload (%s) and has no bytes to snapshot yet.", disk.Name, disk.Properties.DiskState)
	case normalizeLocation(*in.Location) != disk.Location:
		return nil, invalid("location", "A snapshot must be in its disk's region '%s', not '%s'.", disk.Location, *in.Location)
	}
	if incremental && disk.Family != "" {
		n, err := s.countFamily(ctx, sub, disk.Family)
		if err != nil {
			return nil, err
		}
		if n >= maxIncrementalSnapshots {
			return nil, notAllowed("Disk '%s' has %d incremental snapshots, the most a disk may have; delete old ones first.", disk.Name, n)
		}
	}

	// The snapshot is the disk as it is now: freeze it before answering.
	vol, err := s.Volumes.Open(disk.Properties.UniqueID)
	if err != nil {
		return nil, err
	}
	snap, err := vol.Snapshot()
	if err != nil {
		s.Volumes.Release(disk.Properties.UniqueID)
		if errs.Is(err, errs.Conflict) {
			return nil, notAllowed("Another snapshot of disk '%s' is still being stored; try again when it has finished.", disk.Name)
		}
		return nil, err
	}
	view := frozenView{snap: snap, uniqueID: disk.Properties.UniqueID}
	s.frozen.put(id, view)

	unique := uuid.NewString()
	rec := snapshotRecord{Snapshot: Snapshot{
		ID: id, Name: name, Type: SnapshotType, Location: disk.Location, SKU: SKU{Name: "Standard_LRS", Tier: "Standard"},
		Properties: SnapshotProperties{
			OSType: disk.Properties.OSType, HyperVGeneration: disk.Properties.HyperVGeneration,
			CreationData: CreationData{CreateOption: "Copy", SourceResourceID: disk.ID, SourceUniqueID: disk.Properties.UniqueID},
			UniqueID:     unique, TimeCreated: s.Clock.Now().UTC(), ProvisioningState: provisioningUpdating,
			DiskState: StateUnattached, Incremental: incremental, Encryption: Encryption{Type: "EncryptionAtRestWithPlatformKey"},
			NetworkAccessPolicy: "AllowAll", PublicNetworkAccess: "Enabled", DataAccessAuthMode: "None",
		},
	}, Index: "snapshots/" + unique}
	rec.Properties.DiskSizeBytes = snap.Size()
	rec.Properties.DiskSizeGB = (snap.Size() + gib - 1) / gib
	if in.Tags != nil {
		rec.Tags = *in.Tags
	}
	var op meta.Operation
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		d, err := load(ctx, tx, dsub, dgroup, dname)
		if err != nil {
			return err
		}
		if d.Properties.UniqueID != disk.Properties.UniqueID {
			return notAllowed("Disk '%s' was replaced while the snapshot was being taken.", disk.Name)
		}
		if d.Family == "" {
			d.Family = uuid.NewString()
			if _, err := s.save(ctx, tx, dsub, dgroup, d); err != nil {
				return err
			}
		}
		if incremental {
			rec.Properties.IncrementalSnapshotFamilyID = d.Family
		}
		if err := s.saveSnapshot(ctx, tx, rec); err != nil {
			return err
		}
		op, err = s.Ops.Enqueue(ctx, tx, kindSnapshot, id, snapshotOp{SnapshotID: id, DiskID: d.ID,
			DiskUniqueID: d.Properties.UniqueID, Incremental: incremental, Index: rec.Index})
		return err
	})
	if err != nil {
		if v, ok := s.frozen.take(id); ok {
			s.release(v)
		}
		return nil, err
	}
	s.Ops.Wake()
	return accepted(r, http.StatusAccepted, rec.Snapshot, rec.Location, op), nil
}

// updateSnapshot is a PUT on an existing snapshot: only tags may change.
func (s *Service) updateSnapshot(ctx context.Context, r *arm.Request, rec snapshotRecord, in snapshotInput) (*arm.Response, error) {
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
	if err := resources.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	return s.patchSnapshotTags(ctx, SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName")), in.Tags)
}

func (s *Service) patchSnapshotTags(ctx context.Context, id string, tags *map[string]string) (*arm.Response, error) {
	var out snapshotRecord
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, _, err := loadSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		if tags != nil {
			rec.Tags = *tags
		}
		out = rec
		return s.saveSnapshot(ctx, tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out.Snapshot), nil
}

func (s *Service) countFamily(ctx context.Context, sub, family string) (int, error) {
	n := 0
	q := meta.Query{Type: SnapshotType, Subscription: sub, Limit: 1000}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return 0, err
		}
		for _, res := range page.Items {
			var rec snapshotRecord
			if err := json.Unmarshal(res.Body, &rec); err != nil {
				return 0, err
			}
			if rec.Properties.IncrementalSnapshotFamilyID == family {
				n++
			}
		}
		if page.Next == "" {
			return n, nil
		}
		q.After = page.Next
	}
}

// runSnapshot stores the frozen view as a chunk-store index: only the
// blocks changed since the family's previous snapshot are read. The
// snapshot is Succeeded only once its chunks and index are durable; if the
// view is gone (the server restarted) the snapshot is removed, never left
// half there.
func (s *Service) runSnapshot(ctx context.Context, op meta.Operation) (any, error) {
	var in snapshotOp
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	rec, _, err := loadSnapshot(ctx, s.Store, in.SnapshotID)
	if err != nil {
		if v, ok := s.frozen.take(in.SnapshotID); ok {
			s.release(v)
		}
		if errs.Is(err, errs.NotFound) {
			return nil, errs.E(errs.Conflict, "OperationPreempted", "The snapshot was deleted before it was stored.")
		}
		return nil, err
	}
	if rec.Properties.ProvisioningState == provisioningSucceeded {
		return nil, nil
	}
	view, ok := s.frozen.take(in.SnapshotID)
	if !ok {
		if err := s.dropSnapshot(ctx, rec); err != nil {
			return nil, err
		}
		return nil, errs.E(errs.Conflict, "OperationPreempted",
			"The server restarted while snapshot '%s' was being stored, so its point in time is lost; it was removed. Take the snapshot again.", rec.Name)
	}
	defer s.release(view)

	// The view is an Allocator: a full upload skips its holes.
	req := snapshot.UploadRequest{Name: in.Index, Source: view.snap, InFlight: s.InFlight, Clock: s.Clock}
	disk, err := s.Store.GetResource(ctx, in.DiskID)
	if err != nil && !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	if err == nil && in.Incremental {
		d, err := decodeRecord(disk.Body)
		if err != nil {
			return nil, err
		}
		if d.ChangeBase != "" {
			if prev, err := s.Chunks.GetIndex(ctx, d.ChangeBase); err == nil {
				req.Previous, req.PreviousName = &prev, d.ChangeBase
				req.Changed, req.ChangedBlockSize = view.snap.Changed(), view.snap.BlockSize()
			}
		}
	}
	if _, _, err := snapshot.Upload(ctx, s.Chunks, req); err != nil {
		if derr := s.dropSnapshot(ctx, rec); derr != nil {
			return nil, derr
		}
		return nil, err
	}
	committed := false
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, _, err := loadSnapshot(ctx, tx, in.SnapshotID)
		if err != nil {
			return err
		}
		rec.Properties.ProvisioningState = provisioningSucceeded
		rec.Properties.CompletionPercent = 100
		if err := s.saveSnapshot(ctx, tx, rec); err != nil {
			return err
		}
		if !in.Incremental {
			return nil
		}
		res, err := tx.GetResource(ctx, in.DiskID)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		d, err := decodeRecord(res.Body)
		if err != nil || d.Properties.UniqueID != in.DiskUniqueID {
			return err
		}
		d.ChangeBase = in.Index
		committed = true
		_, err = s.save(ctx, tx, res.Subscription, res.ResourceGroup, d)
		return err
	})
	if err != nil {
		return nil, err
	}
	if committed {
		// After the base is recorded: a crash in between leaves the change
		// set larger than needed, never smaller.
		if err := view.snap.Commit(); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// dropSnapshot removes a snapshot that will not complete: index, then row.
func (s *Service) dropSnapshot(ctx context.Context, rec snapshotRecord) error {
	if err := snapshot.DeleteSnapshot(ctx, s.Chunks, rec.Index); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	_, err := s.Store.DeleteResource(ctx, rec.ID)
	return err
}

func (s *Service) getSnapshot(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rec, _, err := loadSnapshot(ctx, s.Store, SnapshotID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("snapshotName")))
	if err != nil {
		return nil, err
	}
	if rec.settle(s.Clock.Now()) {
		_ = s.saveSnapshot(ctx, s.Store, rec)
	}
	return arm.OK(rec.Snapshot), nil
}

func (s *Service) listSnapshots(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	page, err := s.Store.ListResources(ctx, meta.Query{Type: SnapshotType, Subscription: r.Param("subscriptionId"),
		ResourceGroup: r.Param("resourceGroupName"), After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Snapshot, 0, len(page.Items))
	for _, res := range page.Items {
		var rec snapshotRecord
		if err := json.Unmarshal(res.Body, &rec); err != nil {
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
	var rec snapshotRecord
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		if rec, _, err = loadSnapshot(ctx, tx, id); err != nil {
			return err
		}
		rec.settle(s.Clock.Now())
		if rec.Access != nil {
			return notAllowed("Snapshot '%s' has an active SAS; call endGetAccess first.", rec.Name)
		}
		if rec.Properties.ProvisioningState == provisioningUpdating {
			return notAllowed("Snapshot '%s' is still being stored; delete it when it has finished.", rec.Name)
		}
		rec.Properties.ProvisioningState = provisioningDeleting
		if err := s.saveSnapshot(ctx, tx, rec); err != nil {
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
	rec, _, err := loadSnapshot(ctx, s.Store, in.SnapshotID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, s.dropSnapshot(ctx, rec)
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
	var rec snapshotRecord
	var op meta.Operation
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		if rec, _, err = loadSnapshot(ctx, tx, id); err != nil {
			return err
		}
		rec.settle(s.Clock.Now())
		if rec.Properties.ProvisioningState != provisioningSucceeded {
			return notAllowed("Snapshot '%s' is %s; try again when it has finished.", rec.Name, rec.Properties.ProvisioningState)
		}
		if rec.Access != nil {
			return notAllowed("Snapshot '%s' already has an active SAS; call endGetAccess first.", rec.Name)
		}
		rec.Access = &access{ID: accessID, Expires: expires}
		rec.Properties.DiskState = StateActiveSAS
		if err := s.saveSnapshot(ctx, tx, rec); err != nil {
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
		rec, _, err := loadSnapshot(ctx, tx, id)
		if err != nil {
			return err
		}
		rec.Access = nil
		rec.Properties.DiskState = StateUnattached
		return s.saveSnapshot(ctx, tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusOK}, nil
}

// lookupSnapshot is Lookup for a snapshot SAS: a read-only disk over the
// snapshot's index, which can also list what changed since another
// snapshot of its family.
func (s *Service) lookupSnapshot(ctx context.Context, g blobapi.Grant) (blobapi.Disk, func(), error) {
	revoked := errs.E(errs.Forbidden, "AccessRevoked", "The access has been revoked or the snapshot no longer exists.")
	rec, _, err := loadSnapshot(ctx, s.Store, g.ResourceID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil, revoked
	}
	if err != nil {
		return nil, nil, err
	}
	if a := rec.Access; a == nil || a.ID != g.AccessID || g.Write || !s.Clock.Now().Before(a.Expires) {
		return nil, nil, revoked
	}
	idx, err := s.Chunks.GetIndex(ctx, rec.Index)
	if err != nil {
		return nil, nil, err
	}
	return snapshotDisk{Reader: snapshot.NewReader(s.Chunks, idx, snapshot.ReaderOptions{}), s: s, rec: rec}, func() {}, nil
}

// snapshotDisk serves a snapshot through the page-blob data plane.
type snapshotDisk struct {
	*snapshot.Reader
	s   *Service
	rec snapshotRecord
}

var (
	_ blobapi.Disk   = snapshotDisk{}
	_ blobapi.Differ = snapshotDisk{}
)

func readOnly() error {
	return errs.E(errs.Forbidden, "AuthorizationPermissionMismatch", "A snapshot is read-only.")
}

func (d snapshotDisk) WriteAt([]byte, int64) (int, error) { return 0, readOnly() }
func (d snapshotDisk) Zero(int64, int64) error            { return readOnly() }
func (d snapshotDisk) Flush() error                       { return nil }

func (d snapshotDisk) Allocated() ([]blobapi.Range, error) {
	return blobRanges(d.Reader.Allocated()), nil
}

func blobRanges(rs []volume.Range) []blobapi.Range {
	out := make([]blobapi.Range, len(rs))
	for i, r := range rs {
		out[i] = blobapi.Range{Off: r.Off, Len: r.Len}
	}
	return out
}

// ChangedSince lists the ranges that differ from an earlier snapshot of the
// same family, named by its SAS URL (x-ms-previous-snapshot-url) or its ARM
// id (prevsnapshot).
func (d snapshotDisk) ChangedSince(prev string) ([]blobapi.Range, error) {
	ctx := context.Background()
	id := prev
	if u, err := url.Parse(prev); err == nil && u.Query().Get("rid") != "" {
		id = u.Query().Get("rid")
	}
	other, _, err := loadSnapshot(ctx, d.s.Store, id)
	if err != nil {
		return nil, errs.E(errs.Conflict, "PreviousSnapshotNotFound", "The previous snapshot '%s' was not found.", prev)
	}
	fam := d.rec.Properties.IncrementalSnapshotFamilyID
	if fam == "" || other.Properties.IncrementalSnapshotFamilyID != fam {
		return nil, errs.E(errs.Conflict, "PreviousSnapshotNotFound",
			"The previous snapshot '%s' is not an incremental snapshot of the same disk.", other.Name)
	}
	prevIdx, err := d.s.Chunks.GetIndex(ctx, other.Index)
	if err != nil {
		return nil, err
	}
	rs, err := snapshot.Diff(prevIdx, d.Reader.Index())
	if err != nil {
		return nil, err
	}
	return blobRanges(rs), nil
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
func (s *Service) newDiskFromSnapshot(ctx context.Context, tx meta.Tx, r *arm.Request, sub, group, name string, in diskInput) (record, error) {
	src := in.Properties.CreationData.SourceResourceID
	if src == nil || *src == "" {
		return record{}, invalid("creationData.sourceResourceId", "Required parameter 'creationData.sourceResourceId' is missing (null): a disk created with createOption Copy needs a snapshot id.")
	}
	p := strings.Split(strings.Trim(*src, "/"), "/")
	if len(p) != 8 || !strings.EqualFold(p[6], "snapshots") {
		return record{}, invalid("creationData.sourceResourceId", "'%s' is not a snapshot id: coffer creates disks by Copy from snapshots.", *src)
	}
	snap, _, err := loadSnapshot(ctx, tx, SnapshotID(p[1], p[3], p[7]))
	if err != nil {
		if errs.Is(err, errs.NotFound) {
			return record{}, errs.E(errs.NotFound, "NotFound", "The source snapshot '%s' was not found.", *src).WithTarget("creationData.sourceResourceId")
		}
		return record{}, err
	}
	if snap.Properties.ProvisioningState != provisioningSucceeded {
		return record{}, notAllowed("Snapshot '%s' is %s; a disk can be made from it when it has finished.", snap.Name, snap.Properties.ProvisioningState)
	}
	if normalizeLocation(*in.Location) != snap.Location {
		return record{}, invalid("location", "A disk made from snapshot '%s' must be in its region '%s'.", snap.Name, snap.Location)
	}
	if s.Permissions != nil {
		if err := s.Permissions.Authorize(ctx, r.Principal, "Microsoft.Compute/snapshots/read", snap.ID); err != nil {
			return record{}, err
		}
	}
	size := snap.Properties.DiskSizeBytes
	if gb := in.Properties.DiskSizeGB; gb != nil {
		if err := checkSizeGB(*gb); err != nil {
			return record{}, err
		}
		if *gb*gib < size {
			return record{}, invalid("diskSizeGB", "diskSizeGB %d is smaller than the snapshot's %d bytes.", *gb, size)
		}
		size = *gb * gib
	}
	empty := "Empty"
	gb := (size + gib - 1) / gib
	plain := in
	props := *in.Properties
	creation := *props.CreationData
	creation.CreateOption = &empty
	props.CreationData = &creation
	props.DiskSizeGB = &gb
	plain.Properties = &props
	rec, err := s.newDisk(sub, group, name, plain)
	if err != nil {
		return record{}, err
	}
	rec.setSize(size)
	rec.Properties.CreationData = CreationData{CreateOption: "Copy", SourceResourceID: snap.ID, SourceUniqueID: snap.Properties.UniqueID}
	if rec.Properties.OSType == "" {
		rec.Properties.OSType = snap.Properties.OSType
	}
	rec.RestoreFrom = snap.Index
	return rec, nil
}

// BackupTag marks the snapshots a backup instance made, as Azure Backup tags
// the snapshots it creates; its value is the backup instance id.
const BackupTag = "CofferBackupInstanceId"

// DeleteInstanceData deletes the snapshots in the snapshot resource group
// that the backup instance made (tagged BackupTag), index first. It is the
// dataprotection BackupData of a backup instance's "stop protection and
// delete data", and is idempotent.
func (s *Service) DeleteInstanceData(ctx context.Context, instanceID, snapshotGroupID string) error {
	if snapshotGroupID == "" {
		return nil
	}
	q := meta.Query{Type: SnapshotType, Under: snapshotGroupID, Limit: 500}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			var rec snapshotRecord
			if err := json.Unmarshal(res.Body, &rec); err != nil {
				return err
			}
			if !strings.EqualFold(rec.Tags[BackupTag], instanceID) {
				continue
			}
			if err := s.dropSnapshot(ctx, rec); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		q.After = page.Next
	}
}
