package snapshot_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
)

// mixedImage is size bytes cut in 1 MiB extents that are random, zero, or
// half of each (so some chunks are partly zero), with a short tail.
func mixedImage(size int, seed uint64) (img []byte, zeroChunks int) {
	img = make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 1))
	for off := 0; off < size; off += mib {
		end := min(off+mib, size)
		switch r.IntN(3) {
		case 0:
			zeroChunks++
		case 1:
			fillRandom(img[off:end], seed+uint64(off))
		case 2:
			fillRandom(img[off:off+(end-off)/2], seed+uint64(off))
		}
	}
	return img, zeroChunks
}

func TestRoundTrip(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	const size = 37*mib + 3*512 // a short last chunk
	img, zeros := mixedImage(size, 7)

	var calls int
	var last, total int64
	idx, st, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{
		Name:     "disk/snap-1",
		Source:   bytes.NewReader(img),
		Workers:  3,
		Progress: func(d, t int64) { calls, last, total = calls+1, d, t },
	})
	if err != nil {
		t.Fatal(err)
	}
	n := int64(chunk.NumChunks(size, chunk.DefaultChunkSize))
	if !st.Full || st.Chunks != n || st.ChunksRead != n || st.ZeroChunks != int64(zeros) ||
		st.ChunksStored != n-int64(zeros) || st.BytesRead != size || st.Reused != 0 {
		t.Errorf("stats %+v, want a full read of %d chunks, %d zero", st, n, zeros)
	}
	if last != size || total != size || calls < 2 {
		t.Errorf("progress ended at %d/%d after %d calls", last, total, calls)
	}
	got, err := store.GetIndex(ctx, "disk/snap-1")
	if err != nil || !slices.Equal(got.Digests, idx.Digests) || got.DiskSize != size {
		t.Fatalf("stored index differs from the returned one: %v", err)
	}

	if restoreFile(t, store, idx) != sha256.Sum256(img) {
		t.Fatal("restored file differs from the image")
	}

	// ReadAt at odd offsets and lengths, across chunk edges and the end.
	rd := snapshot.NewReader(store, idx, snapshot.ReaderOptions{CacheChunks: 4})
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		off := r.Int64N(size + 10)
		buf := make([]byte, r.IntN(3*mib))
		n, err := rd.ReadAt(buf, off)
		want := max(0, min(int64(len(buf)), size-off))
		if int64(n) != want {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, want %d", len(buf), off, n, want)
		}
		if int64(len(buf)) > want && err != io.EOF || int64(len(buf)) <= want && err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): err %v", len(buf), off, err)
		}
		if !bytes.Equal(buf[:n], img[off:off+int64(n)]) {
			t.Fatalf("ReadAt(%d bytes at %d) returned other bytes", len(buf), off)
		}
	}
	// Whole chunks go straight into the caller's buffer unless cached;
	// both ways read the same bytes.
	whole := snapshot.NewReader(store, idx, snapshot.ReaderOptions{CacheChunks: 4})
	for i := int64(0); i < n; i++ {
		c := img[i*mib : min((i+1)*mib, size)]
		if i%2 == 0 { // cache this one first
			if _, err := whole.ReadAt(make([]byte, 10), i*mib+5); err != nil {
				t.Fatal(err)
			}
		}
		buf := bytes.Repeat([]byte{0xee}, mib+8) // room past the chunk must stay as it was
		if k, err := whole.ReadAt(buf[:len(c)], i*mib); k != len(c) || err != nil && err != io.EOF {
			t.Fatalf("ReadAt of chunk %d: %d, %v", i, k, err)
		}
		if !bytes.Equal(buf[:len(c)], c) || bytes.Count(buf[len(c):], []byte{0xee}) != len(buf)-len(c) {
			t.Fatalf("ReadAt of whole chunk %d returned other bytes", i)
		}
	}
	if _, err := rd.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at a negative offset succeeded")
	}

	// Allocated lists exactly the non-zero chunks.
	var want []volume.Range
	for i := int64(0); i < n; i++ {
		c := img[i*mib : min((i+1)*mib, size)]
		if bytes.Count(c, []byte{0}) == len(c) {
			continue
		}
		if l := len(want); l > 0 && want[l-1].Off+want[l-1].Len == i*mib {
			want[l-1].Len += int64(len(c))
		} else {
			want = append(want, volume.Range{Off: i * mib, Len: int64(len(c))})
		}
	}
	if got := rd.Allocated(); !slices.Equal(got, want) {
		t.Errorf("Allocated = %v, want %v", got, want)
	}

	// The same bytes again store nothing.
	_, st, err = snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "other/snap-1", Source: bytes.NewReader(img)})
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesStored != 0 || st.ChunksStored != 0 || st.Deduplicated != n-int64(zeros) {
		t.Errorf("second upload of the same bytes: %+v", st)
	}
	// A used name is refused before anything is read.
	_, _, err = snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "disk/snap-1", Source: bytes.NewReader(img)})
	if !errs.Is(err, errs.Conflict) {
		t.Errorf("upload under a used name: %v, want Conflict", err)
	}
}

// TestUploadAllocated: a full read of a thin volume reads only the chunks
// that hold data.
func TestUploadAllocated(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	v, err := volume.Create(filepath.Join(t.TempDir(), "vol"), 64*mib)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	img := make([]byte, 64*mib)
	for _, off := range []int64{3 * mib, 3*mib + 4096, 17*mib - 100, 40 * mib} {
		p := randomBytes(8192, uint64(off))
		copy(img[off:], p)
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	alloc, err := v.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	idx, st, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "thin", Source: v, Allocated: alloc})
	if err != nil {
		t.Fatal(err)
	}
	// Chunks 3, 16, 17 and 40 hold data.
	if st.ChunksRead != 4 || st.ZeroChunks != 60 || st.ChunksStored != 4 {
		t.Errorf("stats %+v, want 4 chunks read and stored, 60 zero", st)
	}
	if !bytes.Equal(restore(t, store, idx), img) {
		t.Error("restored thin volume differs")
	}
	// Without a list, a full upload asks the source, which is an Allocator.
	idx2, st, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "thin-asked", Source: v})
	if err != nil || st.ChunksRead != 4 || st.ZeroChunks != 60 || !slices.Equal(idx2.Digests, idx.Digests) {
		t.Errorf("upload asking the source for its allocation: %+v, %v", st, err)
	}
	// An empty allocation list means all zeros: nothing is read.
	_, st, err = snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "empty", Source: v, Allocated: []volume.Range{}})
	if err != nil || st.ChunksRead != 0 || st.ZeroChunks != 64 {
		t.Errorf("upload with nothing allocated: %+v, %v", st, err)
	}
}

type failingSource struct {
	*bytes.Reader
	at int64
}

func (f failingSource) ReadAt(p []byte, off int64) (int, error) {
	if off == f.at {
		return 0, errors.New("injected read error")
	}
	return f.Reader.ReadAt(p, off)
}

// TestUploadFailure: a failed upload writes no index and releases its
// lease.
func TestUploadFailure(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	reg := snapshot.NewInFlight()
	src := failingSource{bytes.NewReader(randomBytes(20*mib, 3)), 11 * mib}
	_, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "broken", Source: src, InFlight: reg, Workers: 2})
	if err == nil {
		t.Fatal("upload over a failing source succeeded")
	}
	if _, err := store.GetIndex(ctx, "broken"); !errs.Is(err, errs.NotFound) {
		t.Errorf("index after a failed upload: %v", err)
	}
	if reg.Len() != 0 {
		t.Errorf("%d digests still registered after a failed upload", reg.Len())
	}
}

// TestUploadGrownDisk: an incremental over a disk that grew reads the
// changed chunks and the previous short last chunk; the new space is zero.
func TestUploadGrownDisk(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	v, err := volume.Create(filepath.Join(t.TempDir(), "vol"), 10*mib+512)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	img := randomBytes(10*mib+512, 5)
	if _, err := v.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	cut, epoch, err := v.SwapChanged()
	if err != nil {
		t.Fatal(err)
	}
	prev, _, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: "g/1", Source: v, Changed: cut})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CommitChanged(epoch); err != nil {
		t.Fatal(err)
	}
	if err := v.Grow(20 * mib); err != nil {
		t.Fatal(err)
	}
	img = append(img, make([]byte, 20*mib-len(img))...)
	p := randomBytes(4096, 6)
	copy(img[15*mib:], p)
	if _, err := v.WriteAt(p, 15*mib); err != nil {
		t.Fatal(err)
	}
	cut, _, err = v.SwapChanged()
	if err != nil {
		t.Fatal(err)
	}
	idx, st, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{
		Name: "g/2", Source: v, Changed: cut, Previous: &prev, PreviousName: "g/1",
	})
	if err != nil {
		t.Fatal(err)
	}
	// Chunk 10 (short before, full now) and 15 are read; 0-9 reused; the
	// other 8 are grown zeros.
	if st.Full || st.ChunksRead != 2 || st.Reused != 10 || st.ZeroChunks != 8 {
		t.Errorf("stats %+v, want 2 read, 10 reused, 8 zero", st)
	}
	if !bytes.Equal(restore(t, store, idx), img) {
		t.Error("restored grown disk differs")
	}
}
