package snapshot_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// packCounts counts the pack and pack index objects in store's bucket.
func packCounts(t *testing.T, store *chunk.Store) (packs, indexes int) {
	t.Helper()
	for _, prefix := range []string{"packs/", "packindex/"} {
		it := store.Bucket().List(nil)
		for {
			obj, err := it.Next(t.Context())
			if err != nil {
				break
			}
			if strings.HasPrefix(obj.Key, prefix) {
				if prefix == "packs/" {
					packs++
				} else {
					indexes++
				}
			}
		}
	}
	return packs, indexes
}

// TestGCPacks: deleting snapshots leaves packs all dead, mostly dead and
// mostly live. GC deletes the first, repacks the second, leaves the
// third; the remaining snapshots restore byte for byte, in this process
// and in a new one that loads the compacted pack index.
func TestGCPacks(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store := openStore(t, dir)
	// Three snapshots of 24 MiB: a, b shares 4 MiB of a's first pack
	// (16 MiB), c shares 12 MiB.
	a := randomBytes(24*mib, 1)
	b := append(bytes.Clone(a[:4*mib]), randomBytes(20*mib, 2)...)
	c := append(bytes.Clone(a[:12*mib]), randomBytes(12*mib, 3)...)
	idx := map[string]chunk.Index{}
	for _, up := range []struct {
		name string
		data []byte
	}{{"a", a}, {"b", b}, {"c", c}} { // in order: a's packs hold the shared chunks
		name := up.name
		x, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: name, Source: bytes.NewReader(up.data), Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		idx[name] = x
	}
	packsBefore, _ := packCounts(t, store)
	_, chunksBefore := storedBytes(t, store)

	// Drop a: its first pack is 12/16 live (c), its second (8 MiB)
	// dead. Then drop c as well: the first pack is 4/16 live (b).
	if err := snapshot.DeleteSnapshot(ctx, store, "a"); err != nil {
		t.Fatal(err)
	}
	gc := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Clock: laterClock()})
	st, err := gc.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GC after dropping a: %+v", st)
	if st.PacksDeleted != 1 || st.PacksRepacked != 0 || st.Deleted != 8 || st.Dead != 4 {
		t.Errorf("GC after dropping a: %+v; want a's second pack deleted (8 chunks) and 4 dead chunks left in its first", st)
	}
	if err := snapshot.DeleteSnapshot(ctx, store, "c"); err != nil {
		t.Fatal(err)
	}
	st, err = gc.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GC after dropping c: %+v", st)
	if st.PacksRepacked != 1 || st.PacksDeleted != 1 || st.Deleted != 12+12 || st.CopiedBytes < 4*mib || st.CopiedBytes > 4*mib+4*64 {
		t.Errorf("GC after dropping c: %+v; want a's first pack repacked (4 MiB copied, 12 chunks dropped) and c's own pack gone", st)
	}
	if st.PackIndexesCompacted == 0 {
		t.Errorf("GC left the pack indexes as they were: %+v", st)
	}
	_, chunksAfter := storedBytes(t, store)
	if want := len(digestSet(idx["b"])); chunksAfter != want {
		t.Errorf("%d chunks left of %d, want b's %d", chunksAfter, chunksBefore, want)
	}
	packsAfter, indexesAfter := packCounts(t, store)
	t.Logf("packs %d -> %d, pack indexes now %d", packsBefore, packsAfter, indexesAfter)
	if indexesAfter != 1 {
		t.Errorf("%d pack index objects after compaction, want 1", indexesAfter)
	}
	if !bytes.Equal(restore(t, store, idx["b"]), b) {
		t.Fatal("b restores to other bytes after GC")
	}
	mustVerify(t, store)
	if st, err := gc.Run(ctx); err != nil || st.Deleted != 0 || st.PacksRepacked != 0 {
		t.Errorf("a second GC: %+v, %v; want nothing to do", st, err)
	}

	// A new process loads the compacted index.
	store.Close()
	fresh := openStore(t, dir)
	if !bytes.Equal(restore(t, fresh, idx["b"]), b) {
		t.Fatal("b restores to other bytes in a new process")
	}
	if rep := mustVerify(t, fresh); rep.Checked != len(digestSet(idx["b"])) {
		t.Errorf("verify checked %d chunks, want %d", rep.Checked, len(digestSet(idx["b"])))
	}
}

// TestVersion1Store: a store written one object per chunk (format version
// 1) is read, verified and collected by the pack layout, and a new backup
// deduplicates onto its chunks and puts new ones in packs.
func TestVersion1Store(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	old := openStoreV1(t, dir)
	a := randomBytes(6*mib, 10)
	b := randomBytes(6*mib, 11)
	ia, _, err := snapshot.Upload(ctx, old, snapshot.UploadRequest{Name: "a", Source: bytes.NewReader(a)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := snapshot.Upload(ctx, old, snapshot.UploadRequest{Name: "b", Source: bytes.NewReader(b)}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if p, _ := packCounts(t, openStoreV1(t, dir)); p != 0 {
		t.Fatalf("the version-1 store has %d packs", p)
	}

	store := openStore(t, dir)
	if !store.Packed() {
		t.Fatal("openStore does not write packs")
	}
	if !bytes.Equal(restore(t, store, ia), a) {
		t.Fatal("a version-1 snapshot restores to other bytes")
	}
	mustVerify(t, store)

	// A flipped byte in a version-1 object is found and quarantined.
	flipByte(t, store, ia.Digests[1])
	rep, err := snapshot.Verify(ctx, store, snapshot.VerifyOptions{})
	if err != nil || len(rep.Bad) != 1 || !rep.Bad[0].Quarantined {
		t.Fatalf("Verify of a damaged version-1 chunk: %+v, %v", rep, err)
	}

	// Same data again plus new data: the old chunks dedup (except the
	// quarantined one), the new ones go to a pack.
	c := append(bytes.Clone(a), randomBytes(2*mib, 12)...)
	ic, ust, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "c", Source: bytes.NewReader(c)})
	if err != nil {
		t.Fatal(err)
	}
	if ust.Deduplicated != 5 || ust.ChunksStored != 3 {
		t.Errorf("upload onto a version-1 store: %+v; want 5 deduplicated, 3 stored", ust)
	}
	if p, _ := packCounts(t, store); p != 1 {
		t.Errorf("%d packs after the upload, want 1", p)
	}
	if !bytes.Equal(restore(t, store, ia), a) {
		t.Fatal("a does not restore after its damaged chunk was stored again")
	}

	// GC: b's chunks are version-1 objects no index names once b goes.
	if err := snapshot.DeleteSnapshot(ctx, store, "b"); err != nil {
		t.Fatal(err)
	}
	st, err := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Clock: laterClock()}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Deleted != 6 {
		t.Errorf("GC of a version-1 store: %+v; want b's 6 chunk objects deleted", st)
	}
	for name, want := range map[string][]byte{"a": a, "c": c} {
		x := ia
		if name == "c" {
			x = ic
		}
		if !bytes.Equal(restore(t, store, x), want) {
			t.Errorf("%s restores to other bytes after GC", name)
		}
	}
	mustVerify(t, store)
}

// TestGCRepackCrash: a repack that fails after writing the new pack (its
// index write, or the old pack's delete) loses nothing: every snapshot
// restores, in a new process too, and the next GC finishes the job.
func TestGCRepackCrash(t *testing.T) {
	for _, fail := range []struct {
		name string
		op   chunktest.Op
		pass int
	}{
		{"new pack index", chunktest.OpWrite, 1},
		{"old pack delete", chunktest.OpDelete, 0},
	} {
		t.Run(fail.name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			var faulty *chunktest.Faulty
			store, err := chunk.Open(ctx, "", dir, chunk.Options{Wrap: func(b chunk.Backend) chunk.Backend {
				faulty = chunktest.NewFaulty(b)
				return faulty
			}})
			if err != nil {
				t.Fatal(err)
			}
			a := randomBytes(16*mib, 20)
			keep := append(bytes.Clone(a[:4*mib]), randomBytes(4*mib, 21)...)
			if _, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "a", Source: bytes.NewReader(a), Workers: 1}); err != nil {
				t.Fatal(err)
			}
			ik, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "keep", Source: bytes.NewReader(keep)})
			if err != nil {
				t.Fatal(err)
			}
			if err := snapshot.DeleteSnapshot(ctx, store, "a"); err != nil {
				t.Fatal(err)
			}
			faulty.Inject(fail.op, chunktest.Fault{Pass: fail.pass, Repeat: 1000})
			st, err := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Grace: -1}).Run(ctx)
			if err == nil {
				t.Fatalf("GC with a failing %s succeeded: %+v", fail.name, st)
			}
			t.Logf("GC failed as it should: %v", err)
			// The process dies here.

			fresh := openStore(t, dir)
			if !bytes.Equal(restore(t, fresh, ik), keep) {
				t.Fatal("keep restores to other bytes after the failed repack")
			}
			mustVerify(t, fresh)
			st, err = snapshot.NewCollector(fresh, nil, snapshot.CollectorOptions{Grace: -1}).Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, n := storedBytes(t, fresh); n != len(digestSet(ik)) {
				t.Errorf("after the second GC (%+v), %d chunks stored, want %d", st, n, len(digestSet(ik)))
			}
			if p, _ := packCounts(t, fresh); p != 2 {
				t.Errorf("%d packs after the second GC, want 2 (keep's own, and a's first repacked)", p)
			}
			if !bytes.Equal(restore(t, fresh, ik), keep) {
				t.Fatal("keep restores to other bytes after the second GC")
			}
			mustVerify(t, fresh)
		})
	}
}
