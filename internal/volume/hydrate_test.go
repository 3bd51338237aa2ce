package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

func TestBackedVolumeReadsWritesAndHydrates(t *testing.T) {
	const size = 8 << 20
	image := randomBytes(t, size)
	clear(image[2<<20 : 3<<20]) // a zero stretch
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateBacked(dir, size, "snapshots/x")
	if err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "snapshots/x" {
		t.Fatalf("Backing() = %q", v.Backing())
	}
	// Before the backing is connected, reads wait on it: a transient error.
	if _, err := v.ReadAt(make([]byte, 10), 0); !errs.Is(err, errs.Transient) {
		t.Fatalf("read without backing: %v", err)
	}
	v.SetBacking(bytes.NewReader(image))
	if got := readAll(t, v, size); !bytes.Equal(got, image) {
		t.Fatal("a backed volume does not read as its backing")
	}
	// A partial write to a block not yet local keeps the rest of the block.
	want := append([]byte(nil), image...)
	patch := randomBytes(t, 1000)
	if _, err := v.WriteAt(patch, 5<<20+123); err != nil {
		t.Fatal(err)
	}
	copy(want[5<<20+123:], patch)
	if got := readAll(t, v, size); !bytes.Equal(got, want) {
		t.Fatal("a partial write lost the block's backing bytes")
	}
	// A snapshot of a hydrating volume is its logical contents.
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(randomBytes(t, 4096), 7<<20); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, size); !bytes.Equal(got, want) {
		t.Fatal("a snapshot of a hydrating volume is wrong")
	}
	s.Release()
	if _, err := v.ReadAt(want[7<<20:7<<20+4096], 7<<20); err != nil {
		t.Fatal(err)
	}

	// A cancelled hydration stops; a reopen (as after a crash, some blocks
	// local and some not) reconnects and finishes.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Hydrate(ctx, nil); err == nil {
		t.Fatal("a cancelled hydration reported success")
	}
	v.Close()
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.Backing() == "" {
		t.Fatal("a half-hydrated volume forgot its backing")
	}
	v.SetBacking(bytes.NewReader(image))
	if err := v.Hydrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "" {
		t.Fatal("hydrated volume still names a backing")
	}
	got := readAll(t, v, size)
	v.Close()
	if !bytes.Equal(got, want) {
		t.Fatal("hydrated contents differ")
	}
	// Standalone now: it opens and reads without any backing.
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Backing() != "" || !bytes.Equal(readAll(t, v, size), want) {
		t.Fatal("the hydrated volume is not standalone")
	}
	// Zero ranges stayed holes.
	rs, _ := v.Allocated()
	for _, r := range rs {
		if r.Off <= 2<<20+4096 && r.Off+r.Len >= 3<<20-4096 {
			t.Fatalf("the zero stretch was written: %v", rs)
		}
	}
}

// TestCreateBackedFinishesACrashedCreate: a plain volume left by a
// CreateBacked that died before naming its backing is finished on retry;
// a volume of another size or backing is refused.
func TestCreateBackedFinishesACrashedCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := Create(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v, err = CreateBacked(dir, 1<<20, "idx")
	if err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "idx" {
		t.Fatalf("backing %q", v.Backing())
	}
	v.Close()
	if v, err = CreateBacked(dir, 1<<20, "idx"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	v.Close()
	if _, err := CreateBacked(dir, 1<<20, "other"); !errs.Is(err, errs.Conflict) {
		t.Fatalf("another backing: %v", err)
	}
}

// allocatedReader is a backing that lists where its data is, as a
// snapshot reader does.
type allocatedReader struct {
	*bytes.Reader
	alloc []Range
}

func (r allocatedReader) Allocated() []Range { return r.alloc }

// TestHydrateUnderConcurrentWrites: Hydrate's workers copy whole extents
// while writers land 4 KiB writes all over the disk; every write survives,
// every other byte is the backing's, the data file holds it all without
// the backing, and extents the backing lists as empty stay holes.
func TestHydrateUnderConcurrentWrites(t *testing.T) {
	const size = 32 << 20
	image := randomBytes(t, size)
	var alloc []Range
	for e := int64(0); e < size>>20; e++ {
		if e%3 == 1 { // a third of the extents are empty
			clear(image[e<<20 : (e+1)<<20])
			continue
		}
		clear(image[e<<20+128<<10 : e<<20+192<<10]) // a zero block inside data
		alloc = append(alloc, Range{Off: e << 20, Len: 1 << 20})
	}
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateBacked(dir, size, "snapshots/y")
	if err != nil {
		t.Fatal(err)
	}
	v.SetBacking(allocatedReader{bytes.NewReader(image), alloc})

	want := bytes.Clone(image)
	const writers, writes = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(w), 7))
			buf := make([]byte, 4096)
			for range writes {
				// Writer w owns the 4 KiB pages whose number is w mod writers.
				off := (r.Int64N(size/4096/writers)*writers + int64(w)) * 4096
				if off>>20%3 == 1 || off&(1<<19) != 0 {
					continue // keep the empty extents empty, to check they stay holes, and second halves for the readers
				}
				rand.Read(buf)
				if _, err := v.WriteAt(buf, off); err != nil {
					t.Error(err)
					return
				}
				copy(want[off:], buf) // pages are disjoint between writers
			}
		})
	}
	// Readers meanwhile check the second half of every extent, which no
	// one writes, in reads that span local and backing blocks.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for rd := range 2 {
		readers.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(rd), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := r.Int64N(size >> 20)
				off := e<<20 + 1<<19 + r.Int64N(1<<18)
				buf := make([]byte, 1<<18)
				if _, err := v.ReadAt(buf, off); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf, image[off:off+int64(len(buf))]) {
					t.Errorf("a read at %d during hydration returned other bytes", off)
					return
				}
			}
		})
	}
	var calls []int64
	if err := v.Hydrate(t.Context(), func(done, total int64) { calls = append(calls, done) }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if v.Backing() != "" {
		t.Fatal("hydrated volume still names a backing")
	}
	if len(calls) == 0 || calls[len(calls)-1] != size/DefaultBlockSize {
		t.Fatalf("progress calls %v, want the last to be %d blocks", calls, size/DefaultBlockSize)
	}
	if got := readAll(t, v, size); !bytes.Equal(got, want) {
		t.Fatal("hydrated volume differs from backing plus writes")
	}
	v.Close()
	raw, err := os.ReadFile(filepath.Join(dir, dataName))
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("the data file on its own is not the disk (%v)", err)
	}
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	rs, err := v.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		for e := r.Off >> 20; e<<20 < r.Off+r.Len; e++ {
			if e%3 == 1 {
				t.Fatalf("empty extent %d was written: allocated %v", e, rs)
			}
		}
	}
}

// patternReader is a backing of any size whose bytes are a function of
// their offset. It records every read and holds reads (but those that
// start in the extent at free) until open is closed.
type patternReader struct {
	free int64
	open chan struct{}
	mu   sync.Mutex
	log  []Range
}

func patternByte(off int64) byte { return byte(off*7 + off>>12 + 1) }

func (r *patternReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.log = append(r.log, Range{Off: off, Len: int64(len(p))})
	r.mu.Unlock()
	if off>>20 != r.free>>20 {
		<-r.open
	}
	for i := range p {
		p[i] = patternByte(off + int64(i))
	}
	return len(p), nil
}

func (r *patternReader) reads() []Range {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Range(nil), r.log...)
}

// TestHydrationFollowsTheReader: a reader that fetches extent X from the
// backing makes it local, and the hydration, busy elsewhere, moves on to
// X+1, X+2, ... (read-ahead for a sequential reader), comes back for what
// it skipped, and never fetches X again. X is past the batches the
// workers start with.
func TestHydrationFollowsTheReader(t *testing.T) {
	const extents, x = 256, HydrateWorkers*hydrateBatch + 36
	const size = extents << 20
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateBacked(dir, size, "snapshots/z")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	src := &patternReader{free: x << 20, open: make(chan struct{})}
	v.SetBacking(src)
	hydrated := make(chan error, 1)
	go func() { hydrated <- v.Hydrate(t.Context(), nil) }()
	// Every worker waits on the backing with an extent from the start.
	for len(src.reads()) < HydrateWorkers {
		runtime.Gosched()
	}
	got := make([]byte, 4096)
	if _, err := v.ReadAt(got, x<<20+8192); err != nil {
		t.Fatal(err)
	}
	for i, c := range got {
		if c != patternByte(x<<20+8192+int64(i)) {
			t.Fatalf("read at extent %d returned other bytes", x)
		}
	}
	close(src.open)
	if err := <-hydrated; err != nil {
		t.Fatal(err)
	}
	first := map[int64]int{} // extent -> position of its first read
	for i, r := range src.reads() {
		for e := r.Off >> 20; e<<20 < r.Off+r.Len; e++ {
			if _, seen := first[e]; seen {
				t.Fatalf("extent %d was read from the backing twice", e)
			}
			first[e] = i
		}
	}
	if len(first) != extents {
		t.Fatalf("%d extents read from the backing, want %d", len(first), extents)
	}
	// Extent x-1 comes last of all (after x+1 ... the end, then the skipped
	// ones from HydrateWorkers on), far behind x+1.
	if first[x+1] > first[x-1] {
		t.Fatalf("extent %d was fetched after %d: the hydration did not move to the reader at %d", x+1, x-1, x)
	}
	got = readAll(t, v, size)
	for off, c := range got {
		if c != patternByte(int64(off)) {
			t.Fatalf("the hydrated volume reads other bytes at %d", off)
		}
	}
}

// TestSequentialReaderReadsAhead: a reader going through the disk in
// order fetches readAhead extents with each read of the backing (one
// request a pack on S3), not one extent; the bytes are the backing's.
func TestSequentialReaderReadsAhead(t *testing.T) {
	const extents = 64
	const size = extents << 20
	v, err := CreateBacked(filepath.Join(t.TempDir(), "vol"), size, "snapshots/s")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	open := make(chan struct{})
	close(open)
	src := &patternReader{open: open}
	v.SetBacking(src)
	got := make([]byte, 256<<10)
	for off := int64(0); off < size; off += int64(len(got)) {
		if _, err := v.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		for i, c := range got {
			if c != patternByte(off+int64(i)) {
				t.Fatalf("sequential read at %d returned other bytes", off+int64(i))
			}
		}
	}
	if n, limit := len(src.reads()), extents/readAhead+1; n > limit {
		t.Fatalf("a sequential reader of %d extents made %d reads of the backing, want at most %d", extents, n, limit)
	}
}
