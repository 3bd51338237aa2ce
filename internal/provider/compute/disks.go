package compute

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
)

// Versions are the Microsoft.Compute api-versions served for disks and
// snapshots: every version of the disk swagger Azure publishes, stable and
// preview (docs/api-coverage.md names each one's spec file).
var Versions = arm.APIVersions{Provider: "Microsoft.Compute", Versions: []string{
	"2016-04-30-preview", "2017-03-30", "2018-04-01", "2018-06-01", "2018-09-30", "2019-03-01",
	"2019-07-01", "2019-11-01", "2020-05-01", "2020-06-30", "2020-09-30", "2020-12-01", "2021-04-01",
	"2021-08-01", "2021-12-01", "2022-03-02", "2022-07-02", "2023-01-02", "2023-04-02", "2023-10-02",
	"2024-03-02", "2025-01-02", "2026-03-02", "2026-03-04-preview", "2026-05-01-preview",
	"2026-06-01-preview",
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

// Service serves managed disks and snapshots: it translates ARM calls into
// the disk engine's use cases.
type Service struct {
	Store meta.Store
	Ops   *ops.Runner
	Clock clock.Clock
	Disks *disk.Engine
	// Signer issues the SAS URLs of beginGetAccess; blobapi checks them
	// with the same key.
	Signer blobapi.Signer
	// NBDAddress is host:port of the NBD listener, for attach's URIs; nil
	// when NBD is not served.
	NBDAddress func() string
	// Guard refuses deleting a snapshot (or stripping its backup tags) that
	// a guarded recovery point holds; nil guards nothing.
	Guard SnapshotGuard
}

// SnapshotGuard refuses changes to a snapshot that another use case relies
// on; the backup engine implements it.
type SnapshotGuard interface {
	// HoldOf returns the refusal for snapshotID, nil when nothing holds it.
	HoldOf(ctx context.Context, tx meta.Tx, snapshotID string) error
}

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
		Versions: Versions, Action: "Microsoft.Compute/locations/operations/read", Scope: s.operationScope, Handler: s.operation})
	s.snapshotRoutes(r)
	s.attachRoutes(r)
	s.Ops.Register(kindProvision, s.runProvision)
	s.Ops.Register(kindDelete, s.runDelete)
	s.Ops.Register(kindGrant, s.runGrant)
}

// DiskID is the canonical id of a disk.
func DiskID(sub, group, name string) string { return disk.DiskID(sub, group, name) }

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
	if err := groups.CheckSubscription(sub); err != nil {
		return nil, err
	}
	if err := checkDiskName(name); err != nil {
		return nil, err
	}
	var in diskInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	var out disk.Record
	var op meta.Operation
	created := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := groups.RequireActive(ctx, tx, sub, group); err != nil {
			return err
		}
		res, err := tx.GetResource(ctx, DiskID(sub, group, name))
		switch {
		case err == nil:
			rec, err := disk.DecodeRecord(res.Body)
			if err != nil {
				return err
			}
			if disk.NormalizeLocation(*in.Location) != rec.Location {
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
		if _, err := s.Disks.Save(ctx, tx, out); err != nil {
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
func (s *Service) newDisk(sub, group, name string, in diskInput) (disk.Record, error) {
	p := in.Properties
	if p == nil || p.CreationData == nil || p.CreationData.CreateOption == nil || *p.CreationData.CreateOption == "" {
		return disk.Record{}, invalid("creationData.createOption", "Required parameter 'creationData.createOption' is missing (null).")
	}
	skuName := "Standard_LRS"
	if in.SKU != nil && in.SKU.Name != nil {
		var err error
		if skuName, err = disk.CanonicalSKU(*in.SKU.Name); err != nil {
			return disk.Record{}, err
		}
	}
	rec := disk.NewRecord(DiskID(sub, group, name), *in.Location, skuName, s.Clock.Now())
	if in.Tags != nil {
		rec.Tags = *in.Tags
	}
	if p.OSType != nil {
		rec.Properties.OSType = *p.OSType
	}
	if p.HyperVGeneration != nil {
		rec.Properties.HyperVGeneration = *p.HyperVGeneration
	}
	if p.MaxShares != nil {
		if *p.MaxShares < 1 {
			return disk.Record{}, invalid("maxShares", "The value %d of maxShares must be at least 1.", *p.MaxShares)
		}
		rec.Properties.MaxShares = *p.MaxShares
	}
	option := *p.CreationData.CreateOption
	switch {
	case strings.EqualFold(option, disk.CreateEmpty):
		if p.DiskSizeGB == nil {
			return disk.Record{}, invalid("diskSizeGB", "Required parameter 'diskSizeGB' is missing (null): a disk created with createOption Empty needs a size.")
		}
		if err := disk.CheckSizeGB(*p.DiskSizeGB); err != nil {
			return disk.Record{}, err
		}
		rec.Properties.CreationData = disk.CreationData{CreateOption: disk.CreateEmpty}
		rec.SetSize(*p.DiskSizeGB * disk.GiB)
		rec.RestState = disk.StateUnattached
	case strings.EqualFold(option, disk.CreateUpload):
		if p.CreationData.UploadSizeBytes == nil {
			return disk.Record{}, invalid("creationData.uploadSizeBytes", "Required parameter 'creationData.uploadSizeBytes' is missing (null): a disk created with createOption Upload needs the size of the upload.")
		}
		n := *p.CreationData.UploadSizeBytes
		if err := disk.CheckUploadSize(n); err != nil {
			return disk.Record{}, err
		}
		rec.Properties.CreationData = disk.CreationData{CreateOption: disk.CreateUpload, UploadSizeBytes: n}
		rec.SetSize(n)
		rec.RestState = disk.StateReadyToUpload
	default:
		for _, known := range []string{"Attach", "FromImage", "Import", "Copy", "Restore", "CopyStart", "ImportSecure", "UploadPreparedSecure", "CopyFromSanSnapshot"} {
			if strings.EqualFold(option, known) {
				return disk.Record{}, invalid("creationData.createOption",
					"The value '%s' of creationData.createOption is not supported: coffer creates disks with 'Empty' or 'Upload'.", known)
			}
		}
		return disk.Record{}, invalid("creationData.createOption",
			"The value '%s' of creationData.createOption is not a disk create option; use 'Empty' or 'Upload'.", option)
	}
	rec.Properties.DiskState = rec.RestState
	return rec, nil
}

// update applies a PUT on an existing disk or a PATCH: tags, sku and a
// larger size. The disk goes Updating until the provision operation has
// grown its volume.
func (s *Service) update(rec disk.Record, in diskInput) (disk.Record, error) {
	rec.Settle(s.Clock.Now())
	if rec.Properties.ProvisioningState == disk.ProvisioningDeleting {
		return rec, notAllowed("Disk '%s' is being deleted.", rec.Name)
	}
	if in.Tags != nil {
		rec.Tags = *in.Tags
	}
	if in.SKU != nil && in.SKU.Name != nil {
		name, err := disk.CanonicalSKU(*in.SKU.Name)
		if err != nil {
			return rec, err
		}
		rec.SetSKU(name)
	}
	if p := in.Properties; p != nil {
		if p.DiskSizeGB != nil && *p.DiskSizeGB != rec.Properties.DiskSizeGB {
			gb := *p.DiskSizeGB
			if gb < rec.Properties.DiskSizeGB {
				return rec, invalid("diskSizeGB", "Disk '%s' is %d GiB and cannot shrink to diskSizeGB %d: disks only grow.",
					rec.Name, rec.Properties.DiskSizeGB, gb)
			}
			if err := disk.CheckSizeGB(gb); err != nil {
				return rec, err
			}
			if rec.Properties.DiskState != rec.Rest() || rec.Properties.DiskState == disk.StateReadyToUpload {
				return rec, notAllowed("Disk '%s' cannot be resized while its state is %s.", rec.Name, rec.Properties.DiskState)
			}
			rec.SetSize(gb * disk.GiB)
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
	rec.Properties.ProvisioningState = disk.ProvisioningUpdating
	return rec, nil
}

func (s *Service) get(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	rec, err := disk.Load(ctx, s.Store, r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName"))
	if err != nil {
		return nil, err
	}
	rec.Settle(s.Clock.Now())
	return arm.OK(s.Disks.Show(rec)), nil
}

func (s *Service) patch(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	var in diskInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	var out disk.Record
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := disk.Load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		if in.Location != nil && disk.NormalizeLocation(*in.Location) != rec.Location {
			return invalid("location", "The location of disk '%s' is '%s' and cannot change.", rec.Name, rec.Location)
		}
		if out, err = s.update(rec, in); err != nil {
			return err
		}
		if _, err := s.Disks.Save(ctx, tx, out); err != nil {
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
	q.Type, q.After, q.Limit = disk.DiskType, after, limit
	page, err := s.Store.ListResources(ctx, q)
	if err != nil {
		return nil, err
	}
	now := s.Clock.Now()
	disks := make([]disk.Disk, 0, len(page.Items))
	for _, res := range page.Items {
		rec, err := disk.DecodeRecord(res.Body)
		if err != nil {
			return nil, err
		}
		rec.Settle(now)
		disks = append(disks, s.Disks.Show(rec))
	}
	return arm.List(r, disks, page.Next), nil
}

func (s *Service) listByGroup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group := r.Param("subscriptionId"), r.Param("resourceGroupName")
	if err := groups.CheckSubscription(sub); err != nil {
		return nil, err
	}
	if _, err := groups.Get(ctx, s.Store, sub, group); err != nil {
		return nil, err
	}
	return s.list(ctx, r, meta.Query{Subscription: sub, ResourceGroup: group})
}

func (s *Service) listBySubscription(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub := r.Param("subscriptionId")
	if err := groups.CheckSubscription(sub); err != nil {
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
	var rec disk.Record
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		if rec, err = disk.Load(ctx, tx, sub, group, name); err != nil {
			return err
		}
		rec.Settle(s.Clock.Now())
		switch rec.Properties.DiskState {
		case disk.StateAttached:
			return notAllowed("Disk '%s' is attached to '%s' and cannot be deleted; detach it first.", rec.Name, rec.ManagedBy)
		case disk.StateActiveSAS, disk.StateActiveUpload:
			return notAllowed("Disk '%s' has an active SAS (state %s) and cannot be deleted; call endGetAccess first.", rec.Name, rec.Properties.DiskState)
		}
		rec.Properties.ProvisioningState = disk.ProvisioningDeleting
		if _, err := s.Disks.Save(ctx, tx, rec); err != nil {
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
// then marks the disk Succeeded.
func (s *Service) runProvision(ctx context.Context, op meta.Operation) (any, error) {
	var in provisionInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Disks.Provision(ctx, in.DiskID, in.UniqueID)
}

// runDelete removes the volume, then the row.
func (s *Service) runDelete(ctx context.Context, op meta.Operation) (any, error) {
	var in deleteInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Disks.Remove(ctx, in.DiskID, in.UniqueID)
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
// lookupOperation is the Compute operation the URL names, in the URL's
// subscription.
func (s *Service) lookupOperation(ctx context.Context, r *arm.Request) (meta.Operation, error) {
	op, err := s.Store.GetOperation(ctx, r.Param("operationId"))
	if err == nil && (!strings.HasPrefix(op.Kind, "compute.") || !strings.EqualFold(subscriptionOf(op.ResourceID), r.Param("subscriptionId"))) {
		err = errs.E(errs.NotFound, "NotFound", "")
	}
	return op, err
}

// operationScope authorizes a status read at the disk or snapshot the
// operation acts on, so a caller whose role covers only its resource group
// can poll what it started there; an unknown id is checked at the URL.
func (s *Service) operationScope(r *arm.Request) string {
	if op, err := s.lookupOperation(r.HTTP.Context(), r); err == nil {
		return op.ResourceID
	}
	return r.ResourceID()
}

func (s *Service) operation(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	id := r.Param("operationId")
	op, err := s.lookupOperation(ctx, r)
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
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return ""
	}
	return rid.Subscription()
}
