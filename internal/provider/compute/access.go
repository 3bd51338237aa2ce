package compute

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/volume"
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
	var rec record
	var op meta.Operation
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		if rec, err = load(ctx, tx, sub, group, name); err != nil {
			return err
		}
		rec.settle(s.Clock.Now())
		if rec.Properties.ProvisioningState != provisioningSucceeded {
			return notAllowed("Disk '%s' is %s; try again when it has finished.", rec.Name, rec.Properties.ProvisioningState)
		}
		state := rec.Properties.DiskState
		switch {
		case rec.Access != nil:
			return notAllowed("Disk '%s' already has an active SAS (state %s); call endGetAccess first.", rec.Name, state)
		case state == StateAttached:
			return notAllowed("Disk '%s' is attached to '%s'; SAS access needs an unattached disk.", rec.Name, rec.ManagedBy)
		case write && (rec.Properties.CreationData.CreateOption != createUpload || state != StateReadyToUpload):
			return notAllowed("Write access is granted only to a disk created with createOption 'Upload' that is ReadyToUpload; disk '%s' is %s.", rec.Name, state)
		case !write && state != StateUnattached:
			return notAllowed("Read access needs an Unattached disk; disk '%s' is %s.", rec.Name, state)
		}
		rec.Access = &access{ID: accessID, Write: write, Expires: g.Expires}
		rec.Properties.DiskState = StateActiveSAS
		if write {
			rec.Properties.DiskState = StateActiveUpload
		}
		if _, err := s.save(ctx, tx, sub, group, rec); err != nil {
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
	var rec record
	if err == nil {
		if rec, err = decodeRecord(res.Body); err != nil {
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
		rec, err := load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		changed := rec.settle(s.Clock.Now())
		if rec.Access != nil {
			rec.endAccess()
			changed = true
		}
		if !changed {
			return nil
		}
		_, err = s.save(ctx, tx, sub, group, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &arm.Response{Status: http.StatusOK}, nil
}

// Lookup is the blobapi.Lookup of disk SAS URLs: the grant must still be
// the disk's live access. It hands out the disk's shared volume.
func (s *Service) Lookup(ctx context.Context, g blobapi.Grant) (blobapi.Disk, func(), error) {
	if strings.Contains(strings.ToLower(g.ResourceID), "/providers/microsoft.compute/snapshots/") {
		return s.lookupSnapshot(ctx, g)
	}
	revoked := errs.E(errs.Forbidden, "AccessRevoked", "The access has been revoked or the disk no longer exists.")
	res, err := s.Store.GetResource(ctx, g.ResourceID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil, revoked
	}
	if err != nil {
		return nil, nil, err
	}
	rec, err := decodeRecord(res.Body)
	if err != nil {
		return nil, nil, err
	}
	a := rec.Access
	if a == nil || a.ID != g.AccessID || a.Write != g.Write || !s.Clock.Now().Before(a.Expires) ||
		rec.Properties.ProvisioningState == provisioningDeleting {
		return nil, nil, revoked
	}
	id := rec.Properties.UniqueID
	vol, err := s.Volumes.Open(id)
	if err != nil {
		return nil, nil, err
	}
	return blobDisk{vol}, func() { s.Volumes.Release(id) }, nil
}

// blobDisk adapts a volume to blobapi.Disk, whose Allocated speaks
// blobapi.Range.
type blobDisk struct{ *volume.Volume }

var _ blobapi.Disk = blobDisk{}

func (d blobDisk) Allocated() ([]blobapi.Range, error) {
	rs, err := d.Volume.Allocated()
	if err != nil {
		return nil, err
	}
	out := make([]blobapi.Range, len(rs))
	for i, r := range rs {
		out[i] = blobapi.Range{Off: r.Off, Len: r.Len}
	}
	return out, nil
}

// LoadOrCreateSASKey returns the SAS signing key kept in path (32 random
// bytes, mode 0600), creating it on first use. Two processes starting at
// once agree: the file is created exclusively and the loser reads it.
func LoadOrCreateSASKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) < blobapi.MinKeyLen {
			return nil, fmt.Errorf("%s: SAS key is %d bytes, need %d", path, len(key), blobapi.MinKeyLen)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	key = make([]byte, blobapi.MinKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".sas.key-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateSASKey(path)
		}
		return nil, err
	}
	return key, nil
}
