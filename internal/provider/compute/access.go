package compute

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// maxAccessSeconds bounds durationInSeconds; a SAS longer than a week is a
// mistake, not a plan.
const maxAccessSeconds = 7 * 24 * 3600

type grantInput struct {
	Access            *string `json:"access"`
	DurationInSeconds *int64  `json:"durationInSeconds"`
}

// grantOp is the input of a grant operation: enough to sign the SAS again
// (signing is deterministic), so the URL itself is not kept as input.
type grantOp struct {
	DiskID   string    `json:"diskId"`
	AccessID string    `json:"accessId"`
	Write    bool      `json:"write"`
	Expires  time.Time `json:"expires"`
	Base     string    `json:"base"`
}

// AccessURI is the result of beginGetAccess.
type AccessURI struct {
	AccessSAS string `json:"accessSAS"`
}

func (s *Service) beginGetAccess(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	write, expires, err := s.parseGrant(r)
	if err != nil {
		return nil, err
	}
	accessID, err := blobapi.NewAccessID()
	if err != nil {
		return nil, err
	}
	g := grantOp{AccessID: accessID, Write: write, Base: r.BaseURL, Expires: expires}
	var rec disk.Record
	var op meta.Operation
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		if rec, err = disk.Load(ctx, tx, sub, group, name); err != nil {
			return err
		}
		rec.Settle(s.Clock.Now())
		if rec.Properties.ProvisioningState != disk.ProvisioningSucceeded {
			return notAllowed("Disk '%s' is %s; try again when it has finished.", rec.Name, rec.Properties.ProvisioningState)
		}
		state := rec.Properties.DiskState
		switch {
		case rec.Access != nil:
			return notAllowed("Disk '%s' already has an active SAS (state %s); call endGetAccess first.", rec.Name, state)
		case state == disk.StateAttached:
			return notAllowed("Disk '%s' is attached to '%s'; SAS access needs an unattached disk.", rec.Name, rec.ManagedBy)
		case write && (rec.Properties.CreationData.CreateOption != disk.CreateUpload || state != disk.StateReadyToUpload):
			return notAllowed("Write access is granted only to a disk created with createOption 'Upload' that is ReadyToUpload; disk '%s' is %s.", rec.Name, state)
		case !write && state != disk.StateUnattached:
			return notAllowed("Read access needs an Unattached disk; disk '%s' is %s.", rec.Name, state)
		}
		rec.Access = &disk.Access{ID: accessID, Write: write, Expires: g.Expires}
		rec.Properties.DiskState = disk.StateActiveSAS
		if write {
			rec.Properties.DiskState = disk.StateActiveUpload
		}
		if _, err := s.Disks.Save(ctx, tx, rec); err != nil {
			return err
		}
		g.DiskID = rec.ID
		op, err = s.Ops.Enqueue(ctx, tx, kindGrant, rec.ID, g)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	return accepted(r, http.StatusAccepted, nil, rec.Location, op), nil
}

// parseGrant reads GrantAccessData: the access asked for and when it ends.
func (s *Service) parseGrant(r *arm.Request) (write bool, expires time.Time, err error) {
	var in grantInput
	if err := r.Decode(&in); err != nil {
		return false, time.Time{}, err
	}
	switch {
	case in.Access == nil:
		return false, time.Time{}, invalid("access", "Required parameter 'access' is missing (null): give 'Read' or 'Write'.")
	case strings.EqualFold(*in.Access, "Read"):
	case strings.EqualFold(*in.Access, "Write"):
		write = true
	default:
		return false, time.Time{}, invalid("access", "The value '%s' of access is not supported: give 'Read' or 'Write'.", *in.Access)
	}
	if in.DurationInSeconds == nil {
		return false, time.Time{}, invalid("durationInSeconds", "Required parameter 'durationInSeconds' is missing (null).")
	}
	if d := *in.DurationInSeconds; d < 1 || d > maxAccessSeconds {
		return false, time.Time{}, invalid("durationInSeconds", "The value %d of durationInSeconds is out of range: 1 to %d seconds.", d, maxAccessSeconds)
	}
	return write, s.Clock.Now().Add(time.Duration(*in.DurationInSeconds) * time.Second).UTC().Truncate(time.Second), nil
}

// runGrant returns the SAS of a grant that is still live.
func (s *Service) runGrant(ctx context.Context, op meta.Operation) (any, error) {
	var in grantOp
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	res, err := s.Store.GetResource(ctx, in.DiskID)
	if err != nil && !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	var rec disk.Record
	if err == nil {
		if rec, err = disk.DecodeRecord(res.Body); err != nil {
			return nil, err
		}
	}
	if rec.Access == nil || rec.Access.ID != in.AccessID {
		return nil, notAllowed("The access was revoked before it was granted.")
	}
	url := s.Signer.URL(in.Base, blobapi.Grant{AccessID: in.AccessID, ResourceID: in.DiskID, Write: in.Write, Expires: in.Expires})
	return AccessURI{AccessSAS: url}, nil
}

// endGetAccess revokes at once, so it needs no operation: 200 and done.
func (s *Service) endGetAccess(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := disk.Load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		changed := rec.Settle(s.Clock.Now())
		if rec.Access != nil {
			rec.EndAccess()
			changed = true
		}
		if !changed {
			return nil
		}
		_, err = s.Disks.Save(ctx, tx, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusOK}, nil
}
