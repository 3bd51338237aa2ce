package disk

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
)

// Lookup is the blobapi.Lookup of disk SAS URLs: the grant must still be
// the disk's live access. It hands out the disk's shared volume.
func (e *Engine) Lookup(ctx context.Context, g blobapi.Grant) (blobapi.Disk, func(), error) {
	if strings.Contains(strings.ToLower(g.ResourceID), "/providers/microsoft.compute/snapshots/") {
		return e.lookupSnapshot(ctx, g)
	}
	revoked := errs.E(errs.Forbidden, "AccessRevoked", "The access has been revoked or the disk no longer exists.")
	res, err := e.Store.GetResource(ctx, g.ResourceID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil, revoked
	}
	if err != nil {
		return nil, nil, err
	}
	rec, err := DecodeRecord(res.Body)
	if err != nil {
		return nil, nil, err
	}
	a := rec.Access
	if a == nil || a.ID != g.AccessID || a.Write != g.Write || !e.Clock.Now().Before(a.Expires) ||
		rec.Properties.ProvisioningState == ProvisioningDeleting {
		return nil, nil, revoked
	}
	id := rec.Properties.UniqueID
	vol, err := e.Volumes.Open(id)
	if err != nil {
		return nil, nil, err
	}
	return blobDisk{vol}, func() { e.Volumes.Release(id) }, nil
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

// lookupSnapshot is Lookup for a snapshot SAS: a read-only disk over the
// snapshot's index, which can also list what changed since another
// snapshot of its family.
func (e *Engine) lookupSnapshot(ctx context.Context, g blobapi.Grant) (blobapi.Disk, func(), error) {
	revoked := errs.E(errs.Forbidden, "AccessRevoked", "The access has been revoked or the snapshot no longer exists.")
	rec, err := LoadSnapshot(ctx, e.Store, g.ResourceID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil, revoked
	}
	if err != nil {
		return nil, nil, err
	}
	if a := rec.Access; a == nil || a.ID != g.AccessID || g.Write || !e.Clock.Now().Before(a.Expires) {
		return nil, nil, revoked
	}
	idx, err := e.Chunks.GetIndex(ctx, rec.Index)
	if err != nil {
		return nil, nil, err
	}
	return snapshotDisk{Reader: snapshot.NewReader(e.Chunks, idx, snapshot.ReaderOptions{}), e: e, rec: rec}, func() {}, nil
}

// snapshotDisk serves a snapshot through the page-blob data plane.
type snapshotDisk struct {
	*snapshot.Reader
	e   *Engine
	rec SnapshotRecord
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
// same family. blobapi hands over either the resource id a verified
// x-ms-previous-snapshot-url grants, or prevsnapshot as the client sent
// it, which coffer reads as the ARM id of the earlier snapshot. Anything
// that does not name a snapshot of this one's family, an Azure blob
// snapshot time included, is PreviousSnapshotNotFound: coffer's snapshot
// blobs have no blob snapshots of their own.
func (d snapshotDisk) ChangedSince(prev string) ([]blobapi.Range, error) {
	ctx := context.Background()
	notFound := errs.E(errs.Conflict, "PreviousSnapshotNotFound", "The previous snapshot is not found.")
	if _, _, _, ok := ParseSnapshotID(prev); !ok {
		return nil, notFound
	}
	other, err := LoadSnapshot(ctx, d.e.Store, prev)
	if errs.Is(err, errs.NotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	fam := d.rec.Properties.IncrementalSnapshotFamilyID
	if fam == "" || other.Properties.IncrementalSnapshotFamilyID != fam || other.Properties.ProvisioningState != ProvisioningSucceeded {
		return nil, errs.E(errs.Conflict, "PreviousSnapshotNotFound",
			"The previous snapshot '%s' is not an incremental snapshot of the same disk.", other.Name)
	}
	prevIdx, err := d.e.Chunks.GetIndex(ctx, other.Index)
	if err != nil {
		return nil, err
	}
	rs, err := snapshot.Diff(prevIdx, d.Reader.Index())
	if err != nil {
		return nil, err
	}
	return blobRanges(rs), nil
}
