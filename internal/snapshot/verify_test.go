package snapshot_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
)

// changedBlocks is a change set of 64 KiB blocks marking [off, off+n).
func changedBlocks(size, off, n int64) *volume.Bitmap {
	bs := int64(volume.DefaultBlockSize)
	bm := volume.NewBitmap((size + bs - 1) / bs)
	bm.SetRange(off/bs, (off+n+bs-1)/bs)
	return bm
}

// TestVerify flips one byte of one stored chunk object and removes
// another; Verify names each and exactly the snapshots that use it.
func TestVerify(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	a := randomBytes(6*mib, 1)
	b := bytes.Clone(a)
	copy(b[5*mib:], randomBytes(mib, 2)) // b shares chunks 0-4 with a
	c := randomBytes(3*mib, 3)           // unrelated
	var idx [3]chunk.Index
	for i, img := range [][]byte{a, b, c} {
		var err error
		idx[i], _, err = snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: []string{"a/1", "b/1", "c/1"}[i], Source: bytes.NewReader(img)})
		if err != nil {
			t.Fatal(err)
		}
	}
	rep := mustVerify(t, store)
	if rep.Checked != 6+1+3 || rep.Indexes != 3 {
		t.Fatalf("clean Verify: %+v, want 10 chunks of 3 indexes", rep)
	}

	// Flip a byte in the middle of chunk 2 of a (also in b).
	shared := idx[0].Digests[2]
	flipByte(t, store, shared)
	// Remove chunk 1 of c.
	removeChunk(t, store, idx[2].Digests[1])

	var calls int
	var done, total int64
	rep, err := snapshot.Verify(ctx, store, snapshot.VerifyOptions{Workers: 3, Progress: func(d, t int64) { calls, done, total = calls+1, d, t }})
	if err != nil {
		t.Fatal(err)
	}
	if done != 10 || total != 10 || calls != 11 {
		t.Errorf("progress %d/%d in %d calls, want 10/10 in 11", done, total, calls)
	}
	if rep.Checked != 10 || len(rep.Bad) != 2 || rep.OK() {
		t.Fatalf("Verify: %+v, want 2 bad chunks of 10", rep)
	}
	byDigest := map[chunk.Digest]snapshot.BadChunk{}
	for _, bc := range rep.Bad {
		byDigest[bc.Digest] = bc
	}
	flipped, ok := byDigest[shared]
	if !ok || !slices.Equal(flipped.Indexes, []string{"a/1", "b/1"}) || code(flipped.Err) != "ChunkCorrupt" {
		t.Errorf("flipped chunk: %+v, want ChunkCorrupt in a/1 and b/1", flipped)
	}
	missing, ok := byDigest[idx[2].Digests[1]]
	if !ok || !slices.Equal(missing.Indexes, []string{"c/1"}) || !errs.Is(missing.Err, errs.NotFound) {
		t.Errorf("missing chunk: %+v, want ChunkNotFound in c/1", missing)
	}

	// Prefix limits what is checked.
	rep, err = snapshot.Verify(ctx, store, snapshot.VerifyOptions{Prefix: "b/"})
	if err != nil || rep.Checked != 6 || len(rep.Bad) != 1 || !slices.Equal(rep.Bad[0].Indexes, []string{"b/1"}) {
		t.Errorf("Verify b/: %+v, %v", rep, err)
	}
}

func code(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
