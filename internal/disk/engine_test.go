package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/google/uuid"
)

const testSub = "8f1d7c1e-3b7a-4c55-9d43-2f0e6a0b9c11"

// refuser is an Authorizer that refuses one action.
type refuser struct{ action string }

func (r refuser) Authorize(_ context.Context, p auth.Principal, action, scope string) error {
	if action == r.action {
		return errs.E(errs.Forbidden, "AuthorizationFailed", "%s may not %s over %s", p.ObjectID, action, scope)
	}
	return nil
}

func newEngine(t *testing.T) *Engine {
	t.Helper()
	return newEngineWith(t, chunk.Options{})
}

// newEngineWith is newEngine with a chunk store opened with opts.
func newEngineWith(t *testing.T, opts chunk.Options) *Engine {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := meta.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	chunks, err := chunk.Open(ctx, "", dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	e := &Engine{Store: store, Clock: clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)),
		Volumes: NewVolumes(filepath.Join(dir, "volumes")), Chunks: chunks, InFlight: snapshot.NewInFlight()}
	e.Volumes.Backing = e.BackingReader
	t.Cleanup(func() { e.WaitHydration(); e.Volumes.Close() })
	for _, g := range []string{"rg", "snaps"} {
		body, _ := json.Marshal(groups.Group{ID: groups.ID(testSub, g), Name: g, Type: groups.Type, Location: "westus",
			Properties: groups.Properties{ProvisioningState: "Succeeded"}})
		if _, err := store.PutResource(ctx, meta.Resource{ID: groups.ID(testSub, g), Type: groups.Type, Name: g,
			Subscription: testSub, Parent: "/subscriptions/" + testSub, Body: body, UpdatedAt: e.Clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newDisk records an empty disk of size bytes and provisions its volume.
func newDisk(t *testing.T, e *Engine, name string, size int64) Record {
	t.Helper()
	ctx := context.Background()
	rec := Record{Disk: Disk{ID: DiskID(testSub, "rg", name), Name: name, Type: DiskType, Location: "westus",
		Properties: DiskProperties{UniqueID: uuid.NewString(), ProvisioningState: ProvisioningUpdating,
			CreationData: CreationData{CreateOption: CreateEmpty}, DiskState: StateUnattached}}}
	rec.SetSize(size)
	if _, err := e.Save(ctx, e.Store, rec); err != nil {
		t.Fatal(err)
	}
	if err := e.Provision(ctx, rec.ID, rec.Properties.UniqueID); err != nil {
		t.Fatal(err)
	}
	got, err := LoadByID(ctx, e.Store, rec.ID)
	if err != nil || got.Properties.ProvisioningState != ProvisioningSucceeded {
		t.Fatalf("provisioned disk: %+v %v", got.Properties, err)
	}
	return got
}

func write(t *testing.T, e *Engine, rec Record, p []byte, off int64) {
	t.Helper()
	vol, err := e.Volumes.Open(rec.Properties.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Volumes.Release(rec.Properties.UniqueID)
	if _, err := vol.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

// contents reads a stored snapshot back from the chunk store.
func contents(t *testing.T, e *Engine, rec SnapshotRecord) []byte {
	t.Helper()
	idx, err := e.Chunks.GetIndex(context.Background(), rec.Index)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, rec.Properties.DiskSizeBytes)
	if _, err := snapshot.NewReader(e.Chunks, idx, snapshot.ReaderOptions{}).ReadAt(out, 0); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTakeSnapshotThroughTheGoAPI is what the backup engine does: take
// incremental snapshots of a disk into another group as a principal, each
// the disk at its moment, counted per disk from the label index.
func TestTakeSnapshotThroughTheGoAPI(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	d := newDisk(t, e, "d1", 4<<20)
	vault := auth.Principal{ObjectID: uuid.NewString()}
	first := bytes.Repeat([]byte("A"), 64<<10)
	write(t, e, d, first, 1<<20)

	take := func(name string) SnapshotRecord {
		t.Helper()
		rec, err := e.TakeSnapshot(ctx, SnapshotRequest{ID: SnapshotID(testSub, "snaps", name), DiskID: d.ID,
			Incremental: true, Principal: vault, Tags: map[string]string{"made-by": "test"}})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Properties.ProvisioningState != ProvisioningSucceeded || rec.Properties.IncrementalSnapshotFamilyID == "" ||
			rec.Tags["made-by"] != "test" || rec.Location != "westus" {
			t.Fatalf("snapshot %s: %+v", name, rec)
		}
		return rec
	}
	s1 := take("s1")
	second := bytes.Repeat([]byte("B"), 4096)
	write(t, e, d, second, 1<<20)
	s2 := take("s2")

	want1 := make([]byte, 4<<20)
	copy(want1[1<<20:], first)
	if got := contents(t, e, s1); !bytes.Equal(got, want1) {
		t.Fatal("first snapshot is not the disk at its moment")
	}
	want2 := append([]byte(nil), want1...)
	copy(want2[1<<20:], second)
	if got := contents(t, e, s2); !bytes.Equal(got, want2) {
		t.Fatal("second snapshot is not the disk at its moment")
	}
	d, _ = LoadByID(ctx, e.Store, d.ID)
	if n, err := e.IncrementalSnapshots(ctx, e.Store, d); err != nil || n != 2 {
		t.Fatalf("incremental snapshots = %d, %v; want 2", n, err)
	}
	if err := e.DeleteSnapshot(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.IncrementalSnapshots(ctx, e.Store, d); n != 1 {
		t.Fatalf("after a delete: %d incremental snapshots, want 1", n)
	}
	// A principal without the right to read the disk gets the 403 and no
	// snapshot.
	e.Permissions = refuser{action: "Microsoft.Compute/disks/beginGetAccess/action"}
	_, err := e.TakeSnapshot(ctx, SnapshotRequest{ID: SnapshotID(testSub, "snaps", "s3"), DiskID: d.ID, Incremental: true, Principal: vault})
	if !errs.Is(err, errs.Forbidden) {
		t.Fatalf("refused principal: %v", err)
	}
	if _, err := LoadSnapshot(ctx, e.Store, SnapshotID(testSub, "snaps", "s3")); !errs.Is(err, errs.NotFound) {
		t.Fatalf("refused snapshot exists: %v", err)
	}
}

// TestStoreSnapshotWithoutItsView: a snapshot whose frozen view was lost
// (a restart) is removed, not left half there.
func TestStoreSnapshotWithoutItsView(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	d := newDisk(t, e, "d1", 1<<20)
	id := SnapshotID(testSub, "snaps", "s1")
	if _, err := e.BeginSnapshot(ctx, SnapshotRequest{ID: id, DiskID: d.ID}, nil); err != nil {
		t.Fatal(err)
	}
	// What a restart does: the view is gone with the process.
	if v, ok := e.frozen.take(id); ok {
		e.release(v)
	}
	err := e.StoreSnapshot(ctx, id)
	var ee *errs.Error
	if !errors.As(err, &ee) || ee.Code != "OperationPreempted" {
		t.Fatalf("store without a view: %v", err)
	}
	if _, err := LoadSnapshot(ctx, e.Store, id); !errs.Is(err, errs.NotFound) {
		t.Fatalf("half-stored snapshot left: %v", err)
	}
}

// TestCopySourceChecks: a disk is made only from a finished snapshot in its
// own region that the caller may read, and a malformed id is a 400, not a
// panic.
func TestCopySourceChecks(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	d := newDisk(t, e, "d1", 1<<20)
	s, err := e.TakeSnapshot(ctx, SnapshotRequest{ID: SnapshotID(testSub, "snaps", "s1"), DiskID: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, location string
		kind               errs.Kind
	}{
		{"ok", s.ID, "West US", 0},
		{"other region", s.ID, "eastus", errs.Invalid},
		{"missing", SnapshotID(testSub, "snaps", "nope"), "westus", errs.NotFound},
		{"a disk, not a snapshot", d.ID, "westus", errs.Invalid},
		{"garbage", "2021-01-01T00:00:00.0000000Z", "westus", errs.Invalid},
		{"short", "/subscriptions/x", "westus", errs.Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.CopySource(ctx, e.Store, auth.Principal{}, tc.id, tc.location)
			if tc.kind == 0 && err != nil || tc.kind != 0 && !errs.Is(err, tc.kind) {
				t.Fatalf("CopySource(%q, %q) = %v, want kind %v", tc.id, tc.location, err, tc.kind)
			}
		})
	}
	e.Permissions = refuser{action: "Microsoft.Compute/snapshots/read"}
	if _, err := e.CopySource(ctx, e.Store, auth.Principal{}, s.ID, "westus"); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("unreadable snapshot: %v", err)
	}
}

// TestFailedProvisioningSaysSo: a disk whose volume cannot be made ends
// Failed with the volume's code, not Updating forever; the largest Azure
// disk provisions (its volume is sparse segments).
func TestFailedProvisioningSaysSo(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	rec := Record{Disk: Disk{ID: DiskID(testSub, "rg", "odd"), Name: "odd", Type: DiskType, Location: "westus",
		Properties: DiskProperties{UniqueID: uuid.NewString(), ProvisioningState: ProvisioningUpdating}}}
	rec.SetSize(1<<20 + 1) // not a whole number of sectors: the volume refuses it
	if _, err := e.Save(ctx, e.Store, rec); err != nil {
		t.Fatal(err)
	}
	err := e.Provision(ctx, rec.ID, rec.Properties.UniqueID)
	var ee *errs.Error
	if !errors.As(err, &ee) || ee.Code != "InvalidVolumeSize" {
		t.Fatalf("provision of an odd size: %v", err)
	}
	if got, _ := LoadByID(ctx, e.Store, rec.ID); got.Properties.ProvisioningState != ProvisioningFailed {
		t.Fatalf("disk after a failed provisioning: %s", got.Properties.ProvisioningState)
	}
	big := newDisk(t, e, "biggest", MaxDiskSizeGB*GiB)
	write(t, e, big, []byte("last sector"), MaxDiskSizeGB*GiB-512)
}
