package snapshot_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// garbageChunk stores content as index "old", deletes the index, and
// returns the digest of its one chunk: a stored chunk no index names, old
// enough for GC (with laterClock).
func garbageChunk(t *testing.T, store *chunk.Store, content []byte) chunk.Digest {
	t.Helper()
	idx, _, err := snapshot.Upload(t.Context(), store, snapshot.UploadRequest{Name: "old", Source: bytes.NewReader(content)})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.DeleteSnapshot(t.Context(), store, "old"); err != nil {
		t.Fatal(err)
	}
	return idx.Digests[0]
}

func has(t *testing.T, store *chunk.Store, d chunk.Digest) bool {
	t.Helper()
	ok, err := store.Has(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestGCSparesInFlight interleaves a collection with an upload at the
// points the safety argument in doc.go is about, through hooks in the
// store (no sleeps).
func TestGCSparesInFlight(t *testing.T) {
	content := randomBytes(mib, 99)

	// The upload deduplicates against garbage (Put finds it stored), has
	// registered it, and GC runs before the index is written: GC skips it.
	t.Run("registered before the sweep", func(t *testing.T) {
		ctx := t.Context()
		store := openStore(t, t.TempDir())
		d := garbageChunk(t, store, content)
		reg := snapshot.NewInFlight()
		gc := snapshot.NewCollector(store, reg, snapshot.CollectorOptions{Clock: laterClock()})
		var st snapshot.GCStats
		var ran bool
		h := &hookStore{Store: store}
		h.beforeHas = func(ctx context.Context, got chunk.Digest) {
			if got != d || ran {
				return
			}
			ran = true
			var err error
			if st, err = gc.Run(ctx); err != nil {
				t.Error(err)
			}
		}
		idx, ust, err := snapshot.Upload(ctx, h, snapshot.UploadRequest{Name: "new", Source: bytes.NewReader(content), InFlight: reg, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !ran || st.InFlight != 1 || st.Deleted != 0 {
			t.Errorf("GC ran=%v: %+v, want the chunk kept as in flight", ran, st)
		}
		if ust.Deduplicated != 1 || !has(t, store, d) {
			t.Errorf("upload %+v; chunk present: %v", ust, has(t, store, d))
		}
		if !bytes.Equal(restore(t, store, idx), content) {
			t.Error("snapshot does not restore")
		}
	})

	// GC deletes the chunk after Put found it stored but before the upload
	// registered it: the upload's check after registering sees it gone
	// and writes it again.
	t.Run("deleted before registration", func(t *testing.T) {
		ctx := t.Context()
		store := openStore(t, t.TempDir())
		d := garbageChunk(t, store, content)
		reg := snapshot.NewInFlight()
		gc := snapshot.NewCollector(store, reg, snapshot.CollectorOptions{Clock: laterClock()})
		var st snapshot.GCStats
		h := &hookStore{Store: store}
		h.afterPut = func(ctx context.Context, got chunk.Digest, stored int64) {
			if got != d || stored != 0 || st.Deleted > 0 {
				return
			}
			var err error
			if st, err = gc.Run(ctx); err != nil {
				t.Error(err)
			}
		}
		idx, ust, err := snapshot.Upload(ctx, h, snapshot.UploadRequest{Name: "new", Source: bytes.NewReader(content), InFlight: reg, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		if st.Deleted != 1 {
			t.Errorf("GC %+v, want the unregistered chunk deleted", st)
		}
		if ust.ChunksStored != 1 || !has(t, store, d) {
			t.Errorf("upload %+v did not store the chunk again (present: %v)", ust, has(t, store, d))
		}
		if !bytes.Equal(restore(t, store, idx), content) {
			t.Error("snapshot does not restore")
		}
		mustVerify(t, store)
	})

	// Retention deletes the previous snapshot while an incremental copies
	// its digests, and GC runs: the copied chunks are held.
	t.Run("copied from a deleted previous", func(t *testing.T) {
		ctx := t.Context()
		store := openStore(t, t.TempDir())
		base := randomBytes(8*mib, 5)
		prev, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "d/1", Source: bytes.NewReader(base)})
		if err != nil {
			t.Fatal(err)
		}
		next := bytes.Clone(base)
		copy(next[3*mib:], randomBytes(4096, 6))
		changed := changedBlocks(int64(len(next)), 3*mib, 4096)

		reg := snapshot.NewInFlight()
		// Any dead chunk repacked: the old chunk 3 is one of eight in its
		// pack.
		gc := snapshot.NewCollector(store, reg, snapshot.CollectorOptions{Clock: laterClock(), RepackDead: -1})
		var st snapshot.GCStats
		h := &hookStore{Store: store}
		var ran bool
		h.beforeHas = func(ctx context.Context, _ chunk.Digest) {
			if ran {
				return
			}
			ran = true
			if err := snapshot.DeleteSnapshot(ctx, store, "d/1"); err != nil {
				t.Error(err)
			}
			if st, err = gc.Run(ctx); err != nil {
				t.Error(err)
			}
		}
		idx, ust, err := snapshot.Upload(ctx, h, snapshot.UploadRequest{
			Name: "d/2", Source: bytes.NewReader(next), Changed: changed, Previous: &prev, PreviousName: "d/1",
			InFlight: reg, Workers: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		if ust.Reused != 7 || ust.ChunksRead != 1 {
			t.Errorf("upload %+v, want 7 reused and 1 read", ust)
		}
		// Held: the 7 copied chunks and the old chunk 3 (Upload registers
		// all of Previous's digests in one go). The new chunk 3 is in a
		// pack not yet durable, which GC does not see.
		if st.InFlight != 8 || st.Deleted != 0 {
			t.Errorf("GC during the upload: %+v, want all 8 chunks held", st)
		}
		if !bytes.Equal(restore(t, store, idx), next) {
			t.Error("snapshot does not restore")
		}
		// After the upload, the old chunk 3 is garbage and only it.
		if st, err = gc.Run(ctx); err != nil || st.Deleted != 1 {
			t.Errorf("GC after the upload: %+v, %v; want chunk 3 of d/1 deleted", st, err)
		}
		mustVerify(t, store)
	})

	// An upload finishes (index written, lease released) after GC listed
	// the indexes but before it swept: the released digests stay marked
	// for the rest of that collection.
	t.Run("released during a collection", func(t *testing.T) {
		ctx := t.Context()
		store := openStore(t, t.TempDir())
		d := garbageChunk(t, store, content)
		reg := snapshot.NewInFlight()
		h := &hookStore{Store: store}
		var idx chunk.Index
		h.afterList = func(ctx context.Context) {
			var err error
			idx, _, err = snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "new", Source: bytes.NewReader(content), InFlight: reg})
			if err != nil {
				t.Error(err)
			}
			if reg.Len() != 0 {
				t.Error("lease not released after the upload")
			}
		}
		gc := snapshot.NewCollector(h, reg, snapshot.CollectorOptions{Clock: laterClock()})
		st, err := gc.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Indexes != 0 || st.InFlight != 1 || st.Deleted != 0 || !has(t, store, d) {
			t.Errorf("GC %+v, present %v: want the chunk of the index written after the listing kept", st, has(t, store, d))
		}
		if !bytes.Equal(restore(t, store, idx), content) {
			t.Error("snapshot does not restore")
		}
	})

	// Control: the same interleaving as the first case without a shared
	// registry loses the chunk. This is what the registry is for.
	t.Run("control without registry", func(t *testing.T) {
		ctx := t.Context()
		store := openStore(t, t.TempDir())
		d := garbageChunk(t, store, content)
		gc := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Clock: laterClock()})
		h := &hookStore{Store: store}
		h.beforePutIdx = func(ctx context.Context, _ string) {
			if _, err := gc.Run(ctx); err != nil {
				t.Error(err)
			}
		}
		if _, _, err := snapshot.Upload(ctx, h, snapshot.UploadRequest{Name: "new", Source: bytes.NewReader(content)}); err != nil {
			t.Fatal(err)
		}
		if has(t, store, d) {
			t.Fatal("chunk survived an unprotected GC: the interleaving tests prove nothing")
		}
		rep, err := snapshot.Verify(ctx, store, snapshot.VerifyOptions{})
		if err != nil || len(rep.Bad) != 1 || !errs.Is(rep.Bad[0].Err, errs.NotFound) {
			t.Errorf("Verify: %+v, %v; want the missing chunk reported", rep, err)
		}
	})
}

// TestGCRunsOnce: a second Run of a Collector while one runs is refused.
func TestGCRunsOnce(t *testing.T) {
	store := openStore(t, t.TempDir())
	h := &hookStore{Store: store}
	var gc *snapshot.Collector
	var inner error
	h.afterList = func(ctx context.Context) { _, inner = gc.Run(ctx) }
	gc = snapshot.NewCollector(h, nil, snapshot.CollectorOptions{})
	if _, err := gc.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !errs.Is(inner, errs.Conflict) {
		t.Errorf("concurrent Run: %v, want Conflict", inner)
	}
}

// TestGCGrace: unreferenced chunks younger than the grace period stay.
func TestGCGrace(t *testing.T) {
	store := openStore(t, t.TempDir())
	d := garbageChunk(t, store, randomBytes(4096, 1))
	st, err := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{}).Run(t.Context())
	if err != nil || st.Young != 1 || st.Deleted != 0 || !has(t, store, d) {
		t.Errorf("GC with the default grace: %+v, %v", st, err)
	}
	st, err = snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Grace: -1}).Run(t.Context())
	if err != nil || st.Deleted != 1 || has(t, store, d) {
		t.Errorf("GC without grace: %+v, %v", st, err)
	}
}

// TestGCRoots: a root keeps its chunks.
func TestGCRoots(t *testing.T) {
	store := openStore(t, t.TempDir())
	content := randomBytes(2*mib, 8)
	idx, _, err := snapshot.Upload(t.Context(), store, snapshot.UploadRequest{Name: "r", Source: bytes.NewReader(content)})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.DeleteSnapshot(t.Context(), store, "r"); err != nil {
		t.Fatal(err)
	}
	roots := func(context.Context) ([]chunk.Index, error) { return []chunk.Index{idx}, nil }
	st, err := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Roots: roots, Clock: laterClock()}).Run(t.Context())
	if err != nil || st.Roots != 1 || st.Deleted != 0 {
		t.Errorf("GC with a root: %+v, %v", st, err)
	}
	if !bytes.Equal(restore(t, store, idx), content) {
		t.Error("root does not restore after GC")
	}
}

const crashEnv = "COFFER_SNAPSHOT_GC_CRASH_DIR"

// TestGCCrash kills a collecting process (SIGKILL) in the middle of its
// sweep, then checks that every chunk an index names is intact and that a
// second GC finishes the job.
func TestGCCrash(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		gcChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	ctx := t.Context()
	dir := t.TempDir()
	// The version-1 layout, one object per chunk, swept chunk by chunk;
	// the child opens it as coffer does now, so the sweep of an old
	// store is what is killed. TestGCRepackCrash kills a pack rewrite.
	store := openStoreV1(t, dir)
	var keep []chunk.Index
	for k := range 3 {
		idx, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{
			Name: fmt.Sprintf("keep/%d", k), Source: bytes.NewReader(randomBytes(6*mib, uint64(k))),
		})
		if err != nil {
			t.Fatal(err)
		}
		keep = append(keep, idx)
	}
	// 200 garbage chunks, 4 KiB each, in one index that is then deleted.
	garbage := randomBytes(200*4096, 77)
	if _, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "gone", Source: bytes.NewReader(garbage), ChunkSize: 4096}); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.DeleteSnapshot(ctx, store, "gone"); err != nil {
		t.Fatal(err)
	}
	_, total := storedBytes(t, store)
	referenced := len(digestSet(keep...))
	if total != referenced+200 {
		t.Fatalf("%d chunks stored, want %d", total, referenced+200)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestGCCrash$", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "MID-SWEEP") {
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if ps := cmd.ProcessState; ps == nil || ps.Success() {
		t.Fatalf("child was not killed: %v", ps)
	}

	_, left := storedBytes(t, store)
	if left >= total || left <= referenced {
		t.Fatalf("%d chunks left of %d (%d referenced): the child was not killed mid-sweep", left, total, referenced)
	}
	t.Logf("killed after deleting %d of 200 garbage chunks", total-left)
	mustVerify(t, store)

	st, err := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Grace: -1}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, n := storedBytes(t, store); st.Deleted != left-referenced || n != referenced {
		t.Errorf("second GC %+v left %d chunks, want %d", st, n, referenced)
	}
	rep := mustVerify(t, store)
	if rep.Checked != referenced {
		t.Errorf("Verify checked %d chunks, want %d", rep.Checked, referenced)
	}
}

// gcChild runs GC over the store in dir, announces on stdout once it has
// deleted 50 chunks, and then blocks every further Delete until it is
// killed.
func gcChild(dir string) {
	ctx := context.Background()
	store, err := chunk.Open(ctx, "", dir, chunk.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var deleted atomic.Int64
	var once sync.Once
	h := &hookStore{Store: store}
	h.beforeDeleteC = func(context.Context, chunk.Digest) {
		if deleted.Add(1) > 50 {
			once.Do(func() { fmt.Println("MID-SWEEP") })
			select {} // hold here until SIGKILL
		}
	}
	_, err = snapshot.NewCollector(h, nil, snapshot.CollectorOptions{Grace: -1, Workers: 4}).Run(ctx)
	fmt.Fprintln(os.Stderr, "GC finished unexpectedly:", err)
	os.Exit(3)
}
