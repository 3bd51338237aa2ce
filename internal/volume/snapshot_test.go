package volume

import (
	"bytes"
	"crypto/rand"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

func newTestVolume(t *testing.T, size int64) *Volume {
	t.Helper()
	v, err := Create(filepath.Join(t.TempDir(), "vol"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	rand.Read(p)
	return p
}

func readAll(t *testing.T, r interface {
	ReadAt([]byte, int64) (int, error)
}, size int64) []byte {
	t.Helper()
	p := make([]byte, size)
	if _, err := r.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSnapshotIsPointInTime(t *testing.T) {
	const size = 4 << 20
	v := newTestVolume(t, size)
	before := randomBytes(t, 1<<20)
	if _, err := v.WriteAt(before, 512<<10); err != nil {
		t.Fatal(err)
	}
	want := readAll(t, v, size)
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	// Overwrite, zero and write elsewhere after the snapshot.
	if _, err := v.WriteAt(randomBytes(t, 100<<10), 600<<10); err != nil {
		t.Fatal(err)
	}
	if err := v.Zero(1<<20, 256<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(randomBytes(t, 4096), 3<<20+17*512); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, size); !bytes.Equal(got, want) {
		t.Fatal("the snapshot shows writes made after it")
	}
	// Odd offsets and lengths across block edges.
	p := make([]byte, 70000)
	if _, err := s.ReadAt(p, 600<<10-1000); err != nil || !bytes.Equal(p, want[600<<10-1000:600<<10-1000+70000]) {
		t.Fatalf("odd read: %v", err)
	}
	if live := readAll(t, v, size); bytes.Equal(live, want) {
		t.Fatal("the volume did not change")
	}
	if _, err := v.Snapshot(); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second live snapshot: %v", err)
	}
}

// TestSnapshotUnderConcurrentWrites: writers running while the snapshot is
// read never leak into it.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	const size = 16 << 20
	v := newTestVolume(t, size)
	if _, err := v.WriteAt(randomBytes(t, size), 0); err != nil {
		t.Fatal(err)
	}
	want := readAll(t, v, size)
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				rand.Read(buf)
				n, _ := rand.Int(rand.Reader, big.NewInt(size/4096))
				if _, err := v.WriteAt(buf, n.Int64()*4096); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	got := make([]byte, size)
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := s.ReadAt(got[off:off+1<<20], off); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if !bytes.Equal(got, want) {
		t.Fatal("concurrent writes leaked into the snapshot")
	}
}

func TestSnapshotChangesCommitAndRelease(t *testing.T) {
	const size = 8 << 20
	v := newTestVolume(t, size)
	bs := v.BlockSize()
	write := func(block int64) {
		t.Helper()
		if _, err := v.WriteAt(randomBytes(t, 512), block*bs); err != nil {
			t.Fatal(err)
		}
	}
	blocks := func(b *Bitmap) []int64 {
		var out []int64
		b.ForEach(func(start, n int64) bool {
			for i := start; i < start+n; i++ {
				out = append(out, i)
			}
			return true
		})
		return out
	}
	write(3)
	write(10)
	s1, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := blocks(s1.Changed()); len(got) != 2 || got[0] != 3 || got[1] != 10 {
		t.Fatalf("first changes = %v", got)
	}
	write(5) // after s1: not in it
	if err := s1.Commit(); err != nil {
		t.Fatal(err)
	}
	s1.Release()
	write(7)
	s2, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := blocks(s2.Changed()); len(got) != 2 || got[0] != 5 || got[1] != 7 {
		t.Fatalf("after commit, changes = %v, want [5 7]", got)
	}
	s2.Release() // not committed: its changes come back
	write(9)
	s3, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Release()
	if got := blocks(s3.Changed()); len(got) != 3 || got[0] != 5 || got[1] != 7 || got[2] != 9 {
		t.Fatalf("after a released snapshot, changes = %v, want [5 7 9]", got)
	}
}

func TestSnapshotAllocatedCoversPreimages(t *testing.T) {
	const size = 4 << 20
	v := newTestVolume(t, size)
	if _, err := v.WriteAt(randomBytes(t, 64<<10), 1<<20); err != nil {
		t.Fatal(err)
	}
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if err := v.Zero(1<<20, 64<<10); err != nil { // the live volume forgets the data
		t.Fatal(err)
	}
	rs, err := s.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	covered := false
	for _, r := range rs {
		if r.Off <= 1<<20 && r.Off+r.Len >= 1<<20+64<<10 {
			covered = true
		}
	}
	if !covered {
		t.Fatalf("allocated %v misses the preserved block", rs)
	}
}

func TestStaleCopyOnWriteFileIsRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := Create(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: the process never releases; a new Open cleans up.
	cow := filepath.Join(dir, cowName)
	if _, err := os.Stat(cow); err != nil {
		t.Fatal(err)
	}
	v.data.close() // drop the lock without Close's release
	v2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := os.Stat(cow); !os.IsNotExist(err) {
		t.Fatalf("stale cow file: %v", err)
	}
}

// TestSnapshotReadsInChunks: a snapshot read in chunk-sized pieces, as an
// upload reads it, sees what the cache holds unwritten, zeros in holes and
// past a segment file's end, pre-images of blocks written since, and reads
// that span segments.
func TestSnapshotReadsInChunks(t *testing.T) {
	const size, seg = 8 << 20, 2 << 20
	v, err := CreateWith(filepath.Join(t.TempDir(), "vol"), size, Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// Writes through the cache, not flushed: a segment's first MiB, one
	// spanning a segment edge, and the last block, so the other segments
	// and the middle of this one are holes.
	for _, off := range []int64{0, 3<<20 + 512<<10, size - 64<<10} {
		n := min(1<<20, size-off)
		if _, err := v.WriteAt(randomBytes(t, int(n)), off); err != nil {
			t.Fatal(err)
		}
	}
	want := readAll(t, v, size)
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if _, err := v.WriteAt(randomBytes(t, 200<<10), 3<<20+600<<10); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, size)
	for off := int64(0); off < size; off += 1 << 20 {
		p := buf[off : off+1<<20]
		if _, err := s.ReadAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("chunk-sized reads of the snapshot differ from the volume as it was")
	}
}
