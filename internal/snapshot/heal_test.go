package snapshot_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
)

// TestDamagedChunkHeals: a backup of data whose chunk is damaged in the
// store deduplicates onto it and is broken from birth; verify finds the
// damage and quarantines the chunk, so the next backup holding that data,
// an incremental that read nothing, stores it afresh; verify then names
// that backup as the one that healed it, and every snapshot restores.
func TestDamagedChunkHeals(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	data := randomBytes(4*mib, 7)
	upload := func(name string, prev *chunk.Index, prevName string) (chunk.Index, snapshot.Stats) {
		t.Helper()
		req := snapshot.UploadRequest{Name: name, Source: bytes.NewReader(data)}
		if prev != nil {
			req.Previous, req.PreviousName, req.Changed = prev, prevName, changedBlocks(int64(len(data)), 0, 0)
		}
		idx, st, err := snapshot.Upload(ctx, store, req)
		if err != nil {
			t.Fatal(err)
		}
		return idx, st
	}
	first, _ := upload("d/1", nil, "")
	bad := first.Digests[2]
	flipByte(t, store, bad)

	// The same data again: deduplicated onto the damaged chunk.
	second, st := upload("d/2", nil, "")
	if st.ChunksStored != 0 || second.Digests[2] != bad {
		t.Fatalf("second backup stored %d chunks; want the dedup onto the damaged one this test reproduces", st.ChunksStored)
	}
	rep, err := snapshot.Verify(ctx, store, snapshot.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bad) != 1 || rep.Bad[0].Digest != bad || !slices.Equal(rep.Bad[0].Indexes, []string{"d/1", "d/2"}) || !rep.Bad[0].Quarantined {
		t.Fatalf("verify after the damage: %+v; want the one chunk, quarantined, breaking d/1 and d/2", rep)
	}
	if r := rep.Bad[0].Ranges["d/2"]; len(r) != 1 || r[0] != (volume.Range{Off: 2 * mib, Len: mib}) {
		t.Fatalf("damaged range of d/2: %v; want [2 MiB, 3 MiB)", r)
	}
	// Quarantined, it stays bad for a second verify until a backup heals it.
	if rep, _ := snapshot.Verify(ctx, store, snapshot.VerifyOptions{}); len(rep.Bad) != 1 || !rep.Bad[0].Quarantined {
		t.Fatalf("second verify before any backup: %+v", rep)
	}

	// An incremental of the unchanged disk must not trust d/2's chunks.
	third, st := upload("d/3", &second, "d/2")
	if st.ChunksStored != 1 || third.Digests[2] != bad {
		t.Fatalf("the backup after verify stored %d chunks (%+v); want the quarantined one stored afresh", st.ChunksStored, st)
	}
	rep = mustVerify(t, store)
	if len(rep.Healed) != 1 || rep.Healed[0].Digest != bad || !slices.Equal(rep.Healed[0].By, []string{"d/3"}) ||
		!slices.Equal(rep.Healed[0].Indexes, []string{"d/1", "d/2", "d/3"}) {
		t.Fatalf("verify after the heal: %+v; want the chunk healed by d/3", rep.Healed)
	}
	for _, idx := range []chunk.Index{first, second, third} {
		if !bytes.Equal(restore(t, store, idx), data) {
			t.Fatal("a snapshot does not restore the data after the heal")
		}
	}
}

// TestGCOfQuarantine: a quarantined object is not a chunk; GC keeps it
// while a snapshot names its digest (verify reports heals from it) and
// while it is younger than the grace period, and deletes it after.
func TestGCOfQuarantine(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	idx, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "d/1", Source: bytes.NewReader(randomBytes(2*mib, 8))})
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, store, idx.Digests[0])
	if rep, err := snapshot.Verify(ctx, store, snapshot.VerifyOptions{}); err != nil || len(rep.Bad) != 1 || !rep.Bad[0].Quarantined {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	quarantined := func() int {
		n := 0
		if err := store.ListQuarantine(ctx, func(chunk.Info) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	later := laterClock()
	st, err := snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Clock: later}).Run(ctx)
	if err != nil || st.Quarantined != 1 || st.QuarantineDeleted != 0 || st.Deleted != 0 || quarantined() != 1 {
		t.Fatalf("GC while d/1 names the quarantined chunk: %+v, %v", st, err)
	}
	if err := snapshot.DeleteSnapshot(ctx, store, "d/1"); err != nil {
		t.Fatal(err)
	}
	st, err = snapshot.NewCollector(store, nil, snapshot.CollectorOptions{}).Run(ctx)
	if err != nil || st.Quarantined != 1 || quarantined() != 1 {
		t.Fatalf("GC within the grace period: %+v, %v", st, err)
	}
	st, err = snapshot.NewCollector(store, nil, snapshot.CollectorOptions{Clock: later}).Run(ctx)
	if err != nil || st.QuarantineDeleted != 1 || st.Deleted != 1 || quarantined() != 0 {
		t.Fatalf("GC once nothing names it: %+v, %v", st, err)
	}
}
