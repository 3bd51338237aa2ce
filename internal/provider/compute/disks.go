package compute

import (
	"context"
	"encoding/json"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/coffer-backup/coffer/internal/provider/resources"
	"github.com/google/uuid"
)

// Versions are the Microsoft.Compute api-versions served for disks: what
// armcompute v8 sends (2026-03-02), the reference version (2025-01-02) and
// a few older ones scripts still pin.
var Versions = arm.APIVersions{Provider: "Microsoft.Compute", Versions: []string{
	"2023-04-02", "2024-03-02", "2025-01-02", "2026-03-02",
}}

// Operation kinds.
const (
	kindProvision = "compute.provisionDisk" // create or grow the volume, then Succeeded
	kindDelete    = "compute.deleteDisk"
	kindGrant     = "compute.grantAccess"
)

// retryAfter is the Retry-After of every accepted call, in seconds. The
// work is local and quick; one second keeps SDK pollers brisk.
const retryAfter = 1

// Service serves managed disks.
type Service struct {
	Store   meta.Store
	Ops     *ops.Runner
	Clock   clock.Clock
	Volumes *Volumes
	// Signer issues the SAS URLs of beginGetAccess; blobapi checks them
	// with the same key.
	Signer blobapi.Signer
	// Chunks keeps snapshots; InFlight protects what uploads and restores
	// are using from the garbage collector of the same store.
	Chunks   *chunk.Store
	InFlight *snapshot.InFlight
	// Permissions checks rights beyond the route's own action (reading
	// the source disk of a snapshot).
	Permissions arm.Authorizer

	// NBDAddress is host:port of the NBD listener, for attach's URIs; nil
	// when NBD is not served.
	NBDAddress func() string

	// Background is the context of background work (hydration); it ends
	// at shutdown.
	Background context.Context

	frozen    frozenSet
	exports   liveExports
	hydrators hydrators
}

var _ resources.Cascade = (*Service)(nil)

// resourceHandlers serve the operations disks and snapshots share.
type resourceHandlers struct {
	put, get, patch, delete, beginGetAccess, endGetAccess, listByGroup, listBySubscription arm.HandlerFunc
}

// registerResource adds the eight operations of a Compute resource type
// (disks, snapshots) at their ARM paths, each with its RBAC action.
func registerResource(r *arm.Router, typ, param string, h resourceHandlers) {
	group := "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/" + typ
	item := group + "/{" + param + "}"
	action := "Microsoft.Compute/" + typ + "/"
	for _, rt := range []struct {
		method, pattern, action string
		handler                 arm.HandlerFunc
	}{
		{http.MethodPut, item, "write", h.put},
		{http.MethodGet, item, "read", h.get},
		{http.MethodPatch, item, "write", h.patch},
		{http.MethodDelete, item, "delete", h.delete},
		{http.MethodPost, item + "/beginGetAccess", "beginGetAccess/action", h.beginGetAccess},
		{http.MethodPost, item + "/endGetAccess", "endGetAccess/action", h.endGetAccess},
		{http.MethodGet, group, "read", h.listByGroup},
		{http.MethodGet, "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/" + typ, "read", h.listBySubscription},
	} {
		r.Handle(arm.Route{Method: rt.method, Pattern: rt.pattern, Versions: Versions, Action: action + rt.action, Handler: rt.handler})
	}
}

// Routes registers the disk operations and the operation handlers.
func (s *Service) Routes(r *arm.Router) {
	registerResource(r, "disks", "diskName", resourceHandlers{put: s.put, get: s.get, patch: s.patch, delete: s.delete,
		beginGetAccess: s.beginGetAccess, endGetAccess: s.endGetAccess, listByGroup: s.listByGroup, listBySubscription: s.listBySubscription})
	r.Handle(arm.Route{Method: http.MethodGet, Pattern: "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/locations/{location}/operations/{operationId}",
		Versions: Versions, Action: "Microsoft.Compute/locations/operations/read", Handler: s.operation})
	s.snapshotRoutes(r)
	s.attachRoutes(r)
	s.Ops.Register(kindProvision, s.runProvision)
	s.Ops.Register(kindDelete, s.runDelete)
	s.Ops.Register(kindGrant, s.runGrant)
}

// DiskID is the canonical id of a disk.
func DiskID(sub, group, name string) string {
	return resources.GroupID(sub, group) + "/providers/Microsoft.Compute/disks/" + name
}

func diskNotFound(group, name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound",
		"The Resource 'Microsoft.Compute/disks/%s' under resource group '%s' was not found.", name, group)
}

func notAllowed(format string, args ...any) error {
	return errs.E(errs.Conflict, "OperationNotAllowed", format, args...)
}

// load reads a disk in tx. A missing disk in a missing group is
// ResourceGroupNotFound, as ARM answers.
func load(ctx context.Context, tx meta.Tx, sub, group, name string) (record, error) {
	res, err := tx.GetResource(ctx, DiskID(sub, group, name))
	if errs.Is(err, errs.NotFound) {
		if _, gerr := resources.Get(ctx, tx, sub, group); gerr != nil {
			return record{}, gerr
		}
		return record{}, diskNotFound(group, name)
	}
	if err != nil {
		return record{}, err
	}
	return decodeRecord(res.Body)
}

func (s *Service) save(ctx context.Context, tx meta.Tx, sub, group string, rec record) (bool, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return false, err
	}
	return tx.PutResource(ctx, meta.Resource{
		ID: rec.ID, Type: DiskType, Name: rec.Name, Subscription: sub, ResourceGroup: group,
		Parent: resources.GroupID(sub, group), Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now(),
	})
}

// accepted is the LRO answer for op: the status monitor in
// Azure-AsyncOperation and the same URL with monitor=true, which serves
// the result, in Location.
func accepted(r *arm.Request, status int, body any, location string, op meta.Operation) *arm.Response {
	async := r.BaseURL + "/subscriptions/" + r.Param("subscriptionId") + "/providers/Microsoft.Compute/locations/" +
		url.PathEscape(location) + "/operations/" + op.ID + "?api-version=" + url.QueryEscape(r.APIVersion)
	return arm.Accepted(status, body, async, async+"&monitor=true", retryAfter)
}

type provisionInput struct {
	DiskID   string `json:"diskId"`
	UniqueID string `json:"uniqueId"`
}

func (s *Service) put(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	if err := resources.CheckSubscription(sub); err != nil {
		return nil, err
	}
	if err := checkDiskName(name); err != nil {
		return nil, err
	}
	var in diskInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := resources.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if err := resources.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	var out record
	var op meta.Operation
	created := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := resources.RequireActive(ctx, tx, sub, group); err != nil {
			return err
		}
		res, err := tx.GetResource(ctx, DiskID(sub, group, name))
		switch {
		case err == nil:
			rec, err := decodeRecord(res.Body)
			if err != nil {
				return err
			}
			if normalizeLocation(*in.Location) != rec.Location {
				return invalid("location", "The location of disk '%s' is '%s' and cannot change.", rec.Name, rec.Location)
			}
			if in.Properties != nil && in.Properties.CreationData != nil && in.Properties.CreationData.CreateOption != nil &&
				!strings.EqualFold(*in.Properties.CreationData.CreateOption, rec.Properties.CreationData.CreateOption) {
				return errs.E(errs.Conflict, "PropertyChangeNotAllowed",
					"Changing property 'creationData.createOption' is not allowed: disk '%s' was created with '%s'.",
					rec.Name, rec.Properties.CreationData.CreateOption).WithTarget("creationData.createOption")
			}
			if in.Tags == nil {
				// PUT replaces: no tags in the body means none.
				empty := map[string]string{}
				in.Tags = &empty
			}
			out, err = s.update(rec, in)
			if err != nil {
				return err
			}
		case errs.Is(err, errs.NotFound):
			if isCopy(in) {
				out, err = s.newDiskFromSnapshot(ctx, tx, r, sub, group, name, in)
			} else {
				out, err = s.newDisk(sub, group, name, in)
			}
			if err != nil {
				return err
			}
			created = true
		default:
			return err
		}
		if _, err := s.save(ctx, tx, sub, group, out); err != nil {
			return err
		}
		op, err = s.Ops.Enqueue(ctx, tx, kindProvision, out.ID, provisionInput{DiskID: out.ID, UniqueID: out.Properties.UniqueID})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	// armcompute accepts 200 and 202 here (not 201): 202 for a new disk,
	// 200 for an update, both with the monitor headers.
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	return accepted(r, status, out.Disk, out.Location, op), nil
}

// newDisk validates a create and builds the disk's first record.
func (s *Service) newDisk(sub, group, name string, in diskInput) (record, error) {
	p := in.Properties
	if p == nil || p.CreationData == nil || p.CreationData.CreateOption == nil || *p.CreationData.CreateOption == "" {
		return record{}, invalid("creationData.createOption", "Required parameter 'creationData.createOption' is missing (null).")
	}
	skuName := "Standard_LRS"
	if in.SKU != nil && in.SKU.Name != nil {
		var err error
		if skuName, err = canonicalSKU(*in.SKU.Name); err != nil {
			return record{}, err
		}
	}
	rec := record{Disk: Disk{
		ID: DiskID(sub, group, name), Name: name, Type: DiskType, Location: normalizeLocation(*in.Location),
		Properties: DiskProperties{
			UniqueID: uuid.NewString(), TimeCreated: s.Clock.Now().UTC(), ProvisioningState: provisioningUpdating,
			MaxShares: 1, Encryption: Encryption{Type: "EncryptionAtRestWithPlatformKey"},
			NetworkAccessPolicy: "AllowAll", PublicNetworkAccess: "Enabled", DataAccessAuthMode: "None",
		},
	}}
	if in.Tags != nil {
		rec.Tags = *in.Tags
	}
	rec.setSKU(skuName)
	if p.OSType != nil {
		rec.Properties.OSType = *p.OSType
	}
	if p.HyperVGeneration != nil {
		rec.Properties.HyperVGeneration = *p.HyperVGeneration
	}
	if p.MaxShares != nil {
		if *p.MaxShares < 1 {
			return record{}, invalid("maxShares", "The value %d of maxShares must be at least 1.", *p.MaxShares)
		}
		rec.Properties.MaxShares = *p.MaxShares
	}
	option := *p.CreationData.CreateOption
	switch {
	case strings.EqualFold(option, createEmpty):
		if p.DiskSizeGB == nil {
			return record{}, invalid("diskSizeGB", "Required parameter 'diskSizeGB' is missing (null): a disk created with createOption Empty needs a size.")
		}
		if err := checkSizeGB(*p.DiskSizeGB); err != nil {
			return record{}, err
		}
		rec.Properties.CreationData = CreationData{CreateOption: createEmpty}
		rec.setSize(*p.DiskSizeGB * gib)
		rec.RestState = StateUnattached
	case strings.EqualFold(option, createUpload):
		if p.CreationData.UploadSizeBytes == nil {
			return record{}, invalid("creationData.uploadSizeBytes", "Required parameter 'creationData.uploadSizeBytes' is missing (null): a disk created with createOption Upload needs the size of the upload.")
		}
		n := *p.CreationData.UploadSizeBytes
		if err := checkUploadSize(n); err != nil {
			return record{}, err
		}
		rec.Properties.CreationData = CreationData{CreateOption: createUpload, UploadSizeBytes: n}
		rec.setSize(n)
		rec.RestState = StateReadyToUpload
	default:
		for _, known := range []string{"Attach", "FromImage", "Import", "Copy", "Restore", "CopyStart", "ImportSecure", "UploadPreparedSecure", "CopyFromSanSnapshot"} {
			if strings.EqualFold(option, known) {
				return record{}, invalid("creationData.createOption",
					"The value '%s' of creationData.createOption is not supported: coffer creates disks with 'Empty' or 'Upload'.", known)
			}
		}
		return record{}, invalid("creationData.createOption",
			"The value '%s' of creationData.createOption is not a disk create option; use 'Empty' or 'Upload'.", option)
	}
	rec.Properties.DiskState = rec.RestState
	return rec, nil
}

// update applies a PUT on an existing disk or a PATCH: tags, sku and a
// larger size. The disk goes Updating until the provision operation has
// grown its volume.
func (s *Service) update(rec record, in diskInput) (record, error) {
	rec.settle(s.Clock.Now())
	if rec.Properties.ProvisioningState == provisioningDeleting {
		return rec, notAllowed("Disk '%s' is being deleted.", rec.Name)
	}
	if in.Tags != nil {
		rec.Tags = *in.Tags
	}
	if in.SKU != nil && in.SKU.Name != nil {
		name, err := canonicalSKU(*in.SKU.Name)
		if err != nil {
			return rec, err
		}
		rec.setSKU(name)
	}
	if p := in.Properties; p != nil {
		if p.DiskSizeGB != nil && *p.DiskSizeGB != rec.Properties.DiskSizeGB {
			gb := *p.DiskSizeGB
			if gb < rec.Properties.DiskSizeGB {
				return rec, invalid("diskSizeGB", "Disk '%s' is %d GiB and cannot shrink to diskSizeGB %d: disks only grow.",
					rec.Name, rec.Properties.DiskSizeGB, gb)
			}
			if err := checkSizeGB(gb); err != nil {
				return rec, err
			}
			if rec.Properties.DiskState != rec.restState() || rec.Properties.DiskState == StateReadyToUpload {
				return rec, notAllowed("Disk '%s' cannot be resized while its state is %s.", rec.Name, rec.Properties.DiskState)
			}
			rec.setSize(gb * gib)
		}
		if p.OSType != nil {
			rec.Properties.OSType = *p.OSType
		}
		if p.MaxShares != nil {
			if *p.MaxShares < 1 {
				return rec, invalid("maxShares", "The value %d of maxShares must be at least 1.", *p.MaxShares)
			}
			rec.Properties.MaxShares = *p.MaxShares
		}
	}
	rec.Properties.ProvisioningState = provisioningUpdating
	return rec, nil
}

func (s *Service) get(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rec, err := load(ctx, s.Store, r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName"))
	if err != nil {
		return nil, err
	}
	rec.settle(s.Clock.Now())
	return arm.OK(rec.Disk), nil
}

func (s *Service) patch(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	var in diskInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := resources.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	var out record
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		if in.Location != nil && normalizeLocation(*in.Location) != rec.Location {
			return invalid("location", "The location of disk '%s' is '%s' and cannot change.", rec.Name, rec.Location)
		}
		if out, err = s.update(rec, in); err != nil {
			return err
		}
		if _, err := s.save(ctx, tx, sub, group, out); err != nil {
			return err
		}
		op, err = s.Ops.Enqueue(ctx, tx, kindProvision, out.ID, provisionInput{DiskID: out.ID, UniqueID: out.Properties.UniqueID})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	return accepted(r, http.StatusAccepted, out.Disk, out.Location, op), nil
}

func (s *Service) list(ctx context.Context, r *arm.Request, q meta.Query) (*arm.Response, error) {
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	q.Type, q.After, q.Limit = DiskType, after, limit
	page, err := s.Store.ListResources(ctx, q)
	if err != nil {
		return nil, err
	}
	now := s.Clock.Now()
	disks := make([]Disk, 0, len(page.Items))
	for _, res := range page.Items {
		rec, err := decodeRecord(res.Body)
		if err != nil {
			return nil, err
		}
		rec.settle(now)
		disks = append(disks, rec.Disk)
	}
	return arm.List(r, disks, page.Next), nil
}

func (s *Service) listByGroup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group := r.Param("subscriptionId"), r.Param("resourceGroupName")
	if err := resources.CheckSubscription(sub); err != nil {
		return nil, err
	}
	if _, err := resources.Get(ctx, s.Store, sub, group); err != nil {
		return nil, err
	}
	return s.list(ctx, r, meta.Query{Subscription: sub, ResourceGroup: group})
}

func (s *Service) listBySubscription(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub := r.Param("subscriptionId")
	if err := resources.CheckSubscription(sub); err != nil {
		return nil, err
	}
	return s.list(ctx, r, meta.Query{Subscription: sub})
}

type deleteInput struct {
	DiskID   string `json:"diskId"`
	UniqueID string `json:"uniqueId"`
}

func (s *Service) delete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	var rec record
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		if rec, err = load(ctx, tx, sub, group, name); err != nil {
			return err
		}
		rec.settle(s.Clock.Now())
		switch rec.Properties.DiskState {
		case StateAttached:
			return notAllowed("Disk '%s' is attached to '%s' and cannot be deleted; detach it first.", rec.Name, rec.ManagedBy)
		case StateActiveSAS, StateActiveUpload:
			return notAllowed("Disk '%s' has an active SAS (state %s) and cannot be deleted; call endGetAccess first.", rec.Name, rec.Properties.DiskState)
		}
		rec.Properties.ProvisioningState = provisioningDeleting
		if _, err := s.save(ctx, tx, sub, group, rec); err != nil {
			return err
		}
		op, err = s.Ops.Enqueue(ctx, tx, kindDelete, rec.ID, deleteInput{DiskID: rec.ID, UniqueID: rec.Properties.UniqueID})
		return err
	})
	return s.deleteStarted(r, err, rec.Location, op)
}

// deleteStarted answers a delete: 204 when there was nothing to delete
// (as in ARM), the LRO answer when its operation was recorded.
func (s *Service) deleteStarted(r *arm.Request, err error, location string, op meta.Operation) (*arm.Response, error) {
	if errs.Is(err, errs.NotFound) {
		return arm.NoContent(), nil
	}
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	return accepted(r, http.StatusAccepted, nil, location, op), nil
}

// runProvision creates or grows the disk's volume to the recorded size,
// then marks the disk Succeeded. Re-run after a crash it finds the volume
// and carries on.
func (s *Service) runProvision(ctx context.Context, op meta.Operation) (any, error) {
	var in provisionInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	// Whenever the disk is gone or going, whatever volume an earlier
	// attempt made is removed here: the delete may have run before it
	// existed.
	res, err := s.Store.GetResource(ctx, in.DiskID)
	if errs.Is(err, errs.NotFound) {
		return nil, s.removeVolume(ctx, in.UniqueID)
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(res.Body)
	if err != nil {
		return nil, err
	}
	if rec.Properties.UniqueID != in.UniqueID || rec.Properties.ProvisioningState == provisioningDeleting {
		return nil, s.removeVolume(ctx, in.UniqueID)
	}
	ensured := rec.Properties.DiskSizeBytes
	// A disk made from a snapshot is usable at once: its volume reads what
	// is not yet local from its own copy of the snapshot's index, and a
	// background task hydrates it.
	hydrating := ""
	if rec.RestoreFrom != "" {
		if hydrating, err = s.prepareHydration(ctx, rec.Properties.UniqueID, rec.RestoreFrom, ensured); err != nil {
			return nil, err
		}
	}
	if err := s.Volumes.Ensure(rec.Properties.UniqueID, ensured); err != nil {
		return nil, err
	}
	// A delete (of the disk or its group) that ran while the volume was
	// being made found nothing to remove; the volume is ours to remove.
	orphan := false
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		res, err := tx.GetResource(ctx, in.DiskID)
		if errs.Is(err, errs.NotFound) {
			orphan = true
			return nil
		}
		if err != nil {
			return err
		}
		rec, err := decodeRecord(res.Body)
		if err != nil {
			return err
		}
		if rec.Properties.UniqueID != in.UniqueID || rec.Properties.ProvisioningState == provisioningDeleting {
			orphan = true
			return nil
		}
		// A later update may have asked for more; its own operation grows
		// the volume and finishes it.
		if rec.Properties.ProvisioningState != provisioningUpdating || rec.Properties.DiskSizeBytes > ensured {
			return nil
		}
		rec.Properties.ProvisioningState = provisioningSucceeded
		if rec.RestoreFrom != "" {
			rec.RestoreFrom, rec.Hydrating = "", hydrating
		}
		_, err = s.save(ctx, tx, res.Subscription, res.ResourceGroup, rec)
		return err
	})
	if err == nil && hydrating != "" && !orphan {
		s.startHydration(in.DiskID, in.UniqueID, hydrating)
	}
	if err == nil && orphan {
		err = s.removeVolume(ctx, in.UniqueID)
	}
	return nil, err
}

// removeVolume removes a disk's volume and, if it was made from a
// snapshot, its hydration index (a GC root that would otherwise stay).
func (s *Service) removeVolume(ctx context.Context, uniqueID string) error {
	s.stopHydration(uniqueID)
	if err := s.Volumes.Remove(uniqueID); err != nil {
		return err
	}
	return s.dropHydrationIndex(ctx, uniqueID)
}

// runDelete removes the volume, then the row, unless the name now holds a
// new disk (another unique id).
func (s *Service) runDelete(ctx context.Context, op meta.Operation) (any, error) {
	var in deleteInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	if err := s.removeVolume(ctx, in.UniqueID); err != nil {
		return nil, err
	}
	return nil, s.Store.InTx(ctx, func(tx meta.Tx) error {
		res, err := tx.GetResource(ctx, in.DiskID)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		rec, err := decodeRecord(res.Body)
		if err != nil {
			return err
		}
		if rec.Properties.UniqueID != in.UniqueID {
			return nil
		}
		_, err = tx.DeleteResource(ctx, in.DiskID)
		return err
	})
}

// DeleteGroupContents removes the volumes of every disk in the group; the
// resource group's delete then removes the rows.
func (s *Service) DeleteGroupContents(ctx context.Context, groupID string) error {
	// Disks lose their volumes; snapshots their indexes (their chunks go at
	// the next collection). The group's delete then removes the rows.
	for _, typ := range []string{DiskType, SnapshotType} {
		after := ""
		for {
			page, err := s.Store.ListResources(ctx, meta.Query{Type: typ, Under: groupID, After: after, Limit: 500})
			if err != nil {
				return err
			}
			for _, res := range page.Items {
				if typ == DiskType {
					rec, err := decodeRecord(res.Body)
					if err != nil {
						return err
					}
					if err := s.removeVolume(ctx, rec.Properties.UniqueID); err != nil {
						return err
					}
					continue
				}
				var rec snapshotRecord
				if err := json.Unmarshal(res.Body, &rec); err != nil {
					return err
				}
				if err := snapshot.DeleteSnapshot(ctx, s.Chunks, rec.Index); err != nil && !errs.Is(err, errs.NotFound) {
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

// operationStatus is the Compute status monitor body.
type operationStatus struct {
	Name       string           `json:"name"`
	Status     string           `json:"status"`
	StartTime  time.Time        `json:"startTime"`
	EndTime    *time.Time       `json:"endTime,omitempty"`
	Error      *arm.ErrorBody   `json:"error,omitempty"`
	Properties *operationOutput `json:"properties,omitempty"`
}

type operationOutput struct {
	Output json.RawMessage `json:"output"`
}

// operation serves the status monitor and, with monitor=true, the result.
func (s *Service) operation(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	id := r.Param("operationId")
	op, err := s.Store.GetOperation(ctx, id)
	if err == nil && (!strings.HasPrefix(op.Kind, "compute.") || !strings.EqualFold(subscriptionOf(op.ResourceID), r.Param("subscriptionId"))) {
		err = errs.E(errs.NotFound, "NotFound", "")
	}
	if errs.Is(err, errs.NotFound) {
		return nil, errs.E(errs.NotFound, "OperationNotFound", "The operation '%s' was not found.", id)
	}
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(r.Query("monitor"), "true") {
		switch op.Status {
		case meta.StatusInProgress:
			self := r.BaseURL + r.HTTP.URL.RequestURI()
			return arm.Accepted(http.StatusAccepted, nil, "", self, retryAfter), nil
		case meta.StatusSucceeded:
			if len(op.Result) == 0 || string(op.Result) == "null" {
				return arm.OK(nil), nil
			}
			return arm.OK(op.Result), nil
		default:
			return nil, ops.DecodeError(op.Error)
		}
	}
	out := operationStatus{Name: op.ID, Status: op.Status, StartTime: op.StartedAt.UTC()}
	if op.Status != meta.StatusInProgress {
		end := op.EndedAt.UTC()
		out.EndTime = &end
	}
	if op.Status == meta.StatusFailed {
		e := ops.DecodeError(op.Error)
		out.Error = &arm.ErrorBody{Code: e.Code, Message: e.Message, Details: []arm.ErrorBody{}, AdditionalInfo: []errs.AdditionalInfo{}}
		if e.Target != "" {
			out.Error.Target = &e.Target
		}
	}
	if op.Status == meta.StatusSucceeded && len(op.Result) > 0 && string(op.Result) != "null" {
		out.Properties = &operationOutput{Output: op.Result}
	}
	resp := arm.OK(out)
	if op.Status == meta.StatusInProgress {
		resp.WithHeader("Retry-After", "1")
	}
	return resp, nil
}

func subscriptionOf(id string) string {
	parts := strings.Split(id, "/")
	if len(parts) > 2 {
		return parts[2]
	}
	return ""
}
