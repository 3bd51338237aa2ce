package volume

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/coffer-backup/coffer/internal/directio"
	"github.com/coffer-backup/coffer/internal/errs"
)

// seg is the segment size of these tests: small, so boundaries are cheap
// to reach.
const seg = MiB

func newSegmented(t *testing.T, size int64) *Volume {
	t.Helper()
	v, err := CreateWith(filepath.Join(t.TempDir(), "vol"), size, Options{SegmentSize: seg})
	if err != nil {
		t.Fatalf("CreateWith: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func reopen(t *testing.T, v *Volume) *Volume {
	t.Helper()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v2, err := Open(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v2.Close() })
	return v2
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) | 1 // never zero
	}
	return p
}

func readHdr(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, headerName))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func fileBlocks(t *testing.T, name string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestSegmentSizeIsCheckedAndKept(t *testing.T) {
	for _, bad := range []int64{-MiB, 512 << 10, 3 * MiB, MaxSize * 2} {
		if _, err := CreateWith(filepath.Join(t.TempDir(), "v"), 4*MiB, Options{SegmentSize: bad}); !errs.Is(err, errs.Invalid) {
			t.Errorf("segment size %d: %v, want kind Invalid", bad, err)
		}
	}
	small := newSegmented(t, seg/2)
	if got := readHdr(t, small.dir); got["version"] != 1.0 || got["segmentSize"] != float64(seg) {
		t.Fatalf("header of a one-segment volume = %v, want version 1 with its segment size", got)
	}
	v := newSegmented(t, 2*seg+4096)
	if got := readHdr(t, v.dir); got["version"] != 2.0 || got["segmentSize"] != float64(seg) {
		t.Fatalf("header of a segmented volume = %v, want version 2", got)
	}
	for i, want := range []int64{seg, seg, 4096} {
		fi, err := os.Stat(segmentName(v.dir, dataName, i))
		if err != nil || fi.Size() != want {
			t.Fatalf("segment %d: %v, size %d, want %d", i, err, fi.Size(), want)
		}
	}
	v = reopen(t, v)
	if v.SegmentSize() != seg {
		t.Fatalf("reopened with segment size %d, want %d", v.SegmentSize(), seg)
	}
	if d := newVolume(t, MiB); d.SegmentSize() != DefaultSegmentSize {
		t.Fatalf("default segment size %d", d.SegmentSize())
	}
}

// TestSegmentBoundaries writes just below, at and just above every segment
// boundary, and across each in one call, and checks the bytes through the
// volume, in the segment files themselves, and after a reopen.
func TestSegmentBoundaries(t *testing.T) {
	const size = 3*seg + 64<<10 // the last segment is short
	v := newSegmented(t, size)
	model := make([]byte, size)
	write := func(off int64, n int, seed byte) {
		t.Helper()
		p := pattern(n, seed)
		if w, err := v.WriteAt(p, off); err != nil || w != n {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", n, off, w, err)
		}
		copy(model[off:], p)
	}
	for k := int64(1); k <= 3; k++ {
		b := k * seg
		write(b-4096, 4096, byte(k))    // just below
		write(b, 4096, byte(k+10))      // at
		write(b+8192, 4096, byte(k+20)) // just above
		write(b-100, 200, byte(k+30))   // across, unaligned
	}
	write(seg/2, 2*seg, 99) // across two boundaries, three segments
	check := func(v *Volume) {
		t.Helper()
		got := readAll(t, v, size)
		if !bytes.Equal(got, model) {
			t.Fatal("volume content differs from the model")
		}
		for _, off := range []int64{seg - 3, 2*seg - 1, 3*seg - 2} { // reads across
			p := make([]byte, 7)
			if _, err := v.ReadAt(p, off); err != nil || !bytes.Equal(p, model[off:off+7]) {
				t.Fatalf("read across %d: %v", off, err)
			}
		}
		// Each segment file holds its own part of the volume.
		for i := range 4 {
			f, err := os.ReadFile(segmentName(v.dir, dataName, i))
			if err != nil {
				t.Fatal(err)
			}
			lo := int64(i) * seg
			if !bytes.Equal(f, model[lo:min(lo+seg, size)]) {
				t.Fatalf("segment file %d does not hold bytes [%d, %d)", i, lo, min(lo+seg, size))
			}
		}
	}
	check(v)
	if dirty := dirtySegments(v); len(dirty) != 4 {
		t.Fatalf("dirty segments before Flush: %v", dirty)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if dirty := dirtySegments(v); len(dirty) != 0 {
		t.Fatalf("dirty segments after Flush: %v", dirty)
	}
	write(2*seg+5, 10, 7)
	if dirty := dirtySegments(v); len(dirty) != 1 || dirty[0] != 2 {
		t.Fatalf("dirty segments after a write to segment 2: %v", dirty)
	}
	check(reopen(t, v))
}

func dirtySegments(v *Volume) []int {
	var out []int
	for i, s := range *v.data.segs.Load() {
		if s.dirty.Load() {
			out = append(out, i)
		}
	}
	return out
}

// TestSegmentedRandomRoundTrips checks random writes, zeros and reads
// (many of them crossing boundaries) against a model.
func TestSegmentedRandomRoundTrips(t *testing.T) {
	const size = 6*seg + 512
	v := newSegmented(t, size)
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 400 {
		n := rng.Int64N(3*seg/2) + 1
		off := rng.Int64N(size - n + 1)
		switch rng.IntN(4) {
		case 0:
			if err := v.Zero(off, n); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
		case 1:
			if err := v.ZeroFill(off, n); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
		default:
			p := pattern(int(n), byte(i))
			if _, err := v.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			copy(model[off:], p)
		}
		roff := rng.Int64N(size)
		got := make([]byte, rng.Int64N(size-roff)+1)
		if _, err := v.ReadAt(got, roff); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, model[roff:roff+int64(len(got))]) {
			t.Fatalf("step %d: read [%d, +%d) differs", i, roff, len(got))
		}
	}
	if !bytes.Equal(readAll(t, reopen(t, v), size), model) {
		t.Fatal("content differs after reopen")
	}
}

func TestSegmentedAllocated(t *testing.T) {
	const size = 4 * seg
	v := newSegmented(t, size)
	if r, err := v.Allocated(); err != nil || len(r) != 0 {
		t.Fatalf("Allocated of an empty volume = %v, %v", r, err)
	}
	// One range across the first boundary, one wholly in segment 3, and
	// segment 2 untouched.
	for _, w := range []Range{{seg - 8192, 16384}, {3*seg + 4096, 4096}} {
		if _, err := v.WriteAt(pattern(int(w.Len), 1), w.Off); err != nil {
			t.Fatal(err)
		}
	}
	want := []Range{{seg - 8192, 16384}, {3*seg + 4096, 4096}}
	got, err := v.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Allocated = %v, want %v", got, want)
	}
	for i := range want { // file systems may round out to their blocks
		if got[i].Off > want[i].Off || got[i].Off+got[i].Len < want[i].Off+want[i].Len || got[i].Len > want[i].Len+64<<10 {
			t.Fatalf("Allocated = %v, want %v", got, want)
		}
	}
	// Data that fills the end of a segment and the start of the next is one
	// range.
	if _, err := v.WriteAt(pattern(2*seg, 2), seg); err != nil {
		t.Fatal(err)
	}
	got, err = v.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Off > seg-8192 || got[0].Off+got[0].Len != 3*seg {
		t.Fatalf("Allocated after filling segments 1 and 2 = %v, want [..%d) then segment 3's range", got, 3*seg)
	}
}

func TestSegmentedZeroAcrossBoundary(t *testing.T) {
	for _, fill := range []bool{false, true} {
		v := newSegmented(t, 2*seg)
		if _, err := v.WriteAt(pattern(2*seg, 5), 0); err != nil {
			t.Fatal(err)
		}
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, e, err := v.SwapChanged(); err != nil || v.CommitChanged(e) != nil {
			t.Fatal(err)
		}
		before := []int64{fileBlocks(t, segmentName(v.dir, dataName, 0)), fileBlocks(t, segmentName(v.dir, dataName, 1))}
		zero := v.Zero
		if fill {
			zero = v.ZeroFill
		}
		const off, n = seg - 256<<10, 512 << 10
		if err := zero(off, n); err != nil {
			t.Fatal(err)
		}
		want := pattern(2*seg, 5)
		clear(want[off : off+n])
		if !bytes.Equal(readAll(t, v, 2*seg), want) {
			t.Fatalf("fill=%v: content after a zero across the boundary differs", fill)
		}
		for i := range 2 {
			after := fileBlocks(t, segmentName(v.dir, dataName, i))
			if !fill && after > before[i]-n/2+8192 {
				t.Fatalf("punch freed %d bytes of segment %d, want about %d", before[i]-after, i, n/2)
			}
			if fill && after < before[i] {
				t.Fatalf("ZeroFill released space of segment %d", i)
			}
		}
		c := v.Changed()
		if !c.Test(off/v.BlockSize()) || !c.Test((off+n-1)/v.BlockSize()) || c.Count() != n/v.BlockSize() {
			t.Fatalf("fill=%v: changed %v, want the zeroed blocks on both sides", fill, runs(c))
		}
	}
}

func TestSegmentedSnapshotPreimages(t *testing.T) {
	const size = 3 * seg
	v := newSegmented(t, size)
	old := pattern(size, 11)
	if _, err := v.WriteAt(old, 0); err != nil {
		t.Fatal(err)
	}
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// One write across the first boundary (blocks in segments 0 and 1),
	// one in segment 2, a zero across the second boundary.
	if _, err := v.WriteAt(pattern(128<<10, 12), seg-64<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(pattern(4096, 13), 2*seg+seg/2); err != nil {
		t.Fatal(err)
	}
	if err := v.Zero(2*seg-4096, 8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, s, size), old) {
		t.Fatal("the snapshot does not read the pre-images across segments")
	}
	for i := range 3 {
		if _, err := os.Stat(segmentName(v.dir, cowName, i)); err != nil {
			t.Fatalf("pre-image segment %d: %v", i, err)
		}
	}
	live := readAll(t, v, size)
	if bytes.Equal(live[seg-64<<10:seg+64<<10], old[seg-64<<10:seg+64<<10]) {
		t.Fatal("the live volume did not change")
	}
	if err := s.Release(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(v.dir, cowName+"*"))
	if len(left) != 0 {
		t.Fatalf("Release left %v", left)
	}
}

func TestSegmentedGrow(t *testing.T) {
	v := newSegmented(t, seg+seg/2)
	if _, err := v.WriteAt(pattern(4096, 1), seg+seg/2-4096); err != nil {
		t.Fatal(err)
	}
	const newSize = 3*seg + 4096
	if err := v.Grow(newSize); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{seg, seg, seg, 4096} {
		fi, err := os.Stat(segmentName(v.dir, dataName, i))
		if err != nil || fi.Size() != want {
			t.Fatalf("segment %d after Grow: %v, want %d bytes", i, err, want)
		}
	}
	// A write across the old end and into the new segments.
	if _, err := v.WriteAt(pattern(seg, 2), seg+seg/2-2048); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(pattern(4096, 3), newSize-4096); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, newSize)
	copy(want[seg+seg/2-4096:], pattern(4096, 1))
	copy(want[seg+seg/2-2048:], pattern(seg, 2))
	copy(want[newSize-4096:], pattern(4096, 3))
	if !bytes.Equal(readAll(t, v, newSize), want) {
		t.Fatal("content after Grow differs")
	}
	v = reopen(t, v)
	if v.Size() != newSize || !bytes.Equal(readAll(t, v, newSize), want) {
		t.Fatal("content after Grow and reopen differs")
	}
}

// TestOpenRepairsACrashedGrow: a Grow that died after it extended the last
// segment and made new ones, before the header named the new size.
func TestOpenRepairsACrashedGrow(t *testing.T) {
	v := newSegmented(t, seg+seg/2)
	if _, err := v.WriteAt(pattern(4096, 1), seg); err != nil {
		t.Fatal(err)
	}
	dir := v.dir
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segmentName(dir, dataName, 1), seg); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{2, 3} {
		if err := createSparse(segmentName(dir, dataName, i), seg); err != nil {
			t.Fatal(err)
		}
	}
	v, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if fi, err := os.Stat(segmentName(dir, dataName, 1)); err != nil || fi.Size() != seg/2 {
		t.Fatalf("last segment not cut back to the header's size: %v", err)
	}
	for _, i := range []int{2, 3} {
		if _, err := os.Stat(segmentName(dir, dataName, i)); !os.IsNotExist(err) {
			t.Fatalf("segment %d the header does not count survived: %v", i, err)
		}
	}
	got := make([]byte, 4096)
	if _, err := v.ReadAt(got, seg); err != nil || !bytes.Equal(got, pattern(4096, 1)) {
		t.Fatalf("data lost by the repair: %v", err)
	}
	if err := v.Grow(3 * seg); err != nil {
		t.Fatal(err)
	}
	// A missing segment is corruption, not zeros.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(segmentName(dir, dataName, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errs.Is(err, errs.Internal) {
		t.Fatalf("Open with a segment missing = %v, want kind Internal", err)
	}
}

// TestSingleFileVolumeOpens: a volume written before segments (a header
// without segmentSize, one data file) opens and works, and keeps working
// after it grows past what its file held.
func TestSingleFileVolumeOpens(t *testing.T) {
	for _, tc := range []struct {
		name           string
		size, grown    int64
		wantSegment    int64
		wantGrownFiles int
	}{
		{"small", 8 * MiB, 64 * MiB, DefaultSegmentSize, 1},
		// Larger than a default segment (possible on a file system with a
		// higher limit): its file is segment 0 of the next power of two.
		{"larger than a segment", 1<<40 + 1<<39, 3 << 40, 2 << 40, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "v")
			// With a segment as large as the volume, Create writes exactly
			// what the single-file format had: "data" of the volume's size.
			v, err := CreateWith(dir, tc.size, Options{SegmentSize: legacySegmentSize(tc.size)})
			if err != nil {
				t.Fatal(err)
			}
			at := []int64{0, tc.size/2 - 100, tc.size - 4096}
			for i, off := range at {
				if _, err := v.WriteAt(pattern(4096, byte(i)), off); err != nil {
					t.Fatal(err)
				}
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			old := []byte(`{"format":"coffer-volume","version":1,"size":` + itoa(tc.size) + `,"blockSize":65536}` + "\n")
			if err := os.WriteFile(filepath.Join(dir, headerName), old, 0o600); err != nil {
				t.Fatal(err)
			}
			if ents, _ := filepath.Glob(filepath.Join(dir, dataName+"*")); len(ents) != 1 {
				t.Fatalf("data files %v, want the one data file", ents)
			}
			v, err = Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if v.SegmentSize() != tc.wantSegment {
				t.Fatalf("segment size of the old volume = %d, want %d", v.SegmentSize(), tc.wantSegment)
			}
			got := make([]byte, 4096)
			for i, off := range at {
				if _, err := v.ReadAt(got, off); err != nil || !bytes.Equal(got, pattern(4096, byte(i))) {
					t.Fatalf("old bytes at %d: %v", off, err)
				}
			}
			if err := v.Grow(tc.grown); err != nil {
				t.Fatal(err)
			}
			if _, err := v.WriteAt(pattern(4096, 9), tc.grown-4096); err != nil {
				t.Fatal(err)
			}
			v = reopen(t, v)
			if h := readHdr(t, dir); h["segmentSize"] != float64(tc.wantSegment) {
				t.Fatalf("header after Grow = %v, want the segment size recorded", h)
			}
			if ents, _ := filepath.Glob(filepath.Join(dir, dataName+"*")); len(ents) != tc.wantGrownFiles {
				t.Fatalf("data files after Grow %v, want %d", ents, tc.wantGrownFiles)
			}
			for i, off := range append(at, tc.grown-4096) {
				want := pattern(4096, byte(i))
				if off == tc.grown-4096 {
					want = pattern(4096, 9)
				}
				if _, err := v.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("bytes at %d after Grow and reopen: %v", off, err)
				}
			}
		})
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestSegmentedHydration(t *testing.T) {
	const size = 4*seg + 64<<10
	image := randomBytes(t, size)
	clear(image[2*seg-128<<10 : 2*seg+128<<10]) // zeros across a boundary stay holes
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateBackedWith(dir, size, "snapshots/x", Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	if v.SegmentSize() != seg {
		t.Fatalf("segment size %d", v.SegmentSize())
	}
	v.SetBacking(bytes.NewReader(image))
	want := append([]byte(nil), image...)
	patch := pattern(8192, 4)
	if _, err := v.WriteAt(patch, 3*seg-4096); err != nil { // fills blocks on both sides first
		t.Fatal(err)
	}
	copy(want[3*seg-4096:], patch)
	if !bytes.Equal(readAll(t, v, size), want) {
		t.Fatal("a hydrating segmented volume reads wrong")
	}
	if err := v.Grow(8 * seg); !errs.Is(err, errs.Conflict) {
		t.Fatalf("Grow while hydrating = %v, want kind Conflict", err)
	}
	if err := v.Hydrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	// Hydrate syncs every segment it wrote before the header drops the
	// backing, those it wrote only through O_DIRECT included.
	if d := dirtySegments(v); len(d) != 0 {
		t.Fatalf("segments %v were written but not synced by Hydrate", d)
	}
	v = reopen(t, v)
	if v.Backing() != "" || !bytes.Equal(readAll(t, v, size), want) {
		t.Fatal("the hydrated segmented volume differs")
	}
	if h := readHdr(t, dir); h["segmentSize"] != float64(seg) || h["version"] != 2.0 {
		t.Fatalf("header after hydration = %v", h)
	}
	rs, err := v.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Off < 2*seg+64<<10 && r.Off+r.Len > 2*seg-64<<10 {
			t.Fatalf("the zero stretch across the boundary was written: %v", rs)
		}
	}
	if err := v.Grow(8 * seg); err != nil {
		t.Fatalf("Grow once hydrated: %v", err)
	}
}

// TestDirectIO writes and reads across a segment boundary with the O_DIRECT
// paths and with the page cache, in every mix: each path sees the other's
// bytes, an unaligned request falls back to the cache, and an aligned
// direct write leaves no pages of its range cached.
func TestDirectIO(t *testing.T) {
	v := newSegmented(t, 4*seg)
	s := v.data
	off := int64(seg - 64<<10) // crosses into segment 1
	want := directio.AlignedBuf(256 << 10)[:256<<10]
	copy(want, pattern(len(want), 3))
	if n, err := s.WriteAtDirect(want, off); err != nil || n != len(want) {
		t.Fatalf("WriteAtDirect = %d, %v", n, err)
	}
	if s.noDirect.Load() {
		t.Skip("the file system refuses O_DIRECT; WriteAtDirect fell back and was checked as WriteAt")
	}
	if s.cached(off, 64<<10) || s.cached(seg, 64<<10) {
		t.Errorf("an aligned direct write left its range in the page cache")
	}
	got := make([]byte, len(want))
	if _, err := s.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("ReadAt after WriteAtDirect: %v, equal %v", err, bytes.Equal(got, want))
	}

	// A buffered write, then a direct read of it: the kernel writes the
	// dirty pages back before the direct read.
	copy(want[4<<10:], pattern(8<<10, 9))
	if _, err := s.WriteAt(want[4<<10:12<<10], off+4<<10); err != nil {
		t.Fatal(err)
	}
	dgot := directio.AlignedBuf(len(want))[:len(want)]
	if _, err := s.ReadAtDirect(dgot, off); err != nil || !bytes.Equal(dgot, want) {
		t.Fatalf("ReadAtDirect after WriteAt: %v, equal %v", err, bytes.Equal(dgot, want))
	}

	// Unaligned: memory, offset and length each off by one.
	odd := pattern(1000, 5)
	if _, err := s.WriteAtDirect(odd, off+1); err != nil {
		t.Fatalf("unaligned WriteAtDirect: %v", err)
	}
	back := make([]byte, len(odd))
	if _, err := s.ReadAtDirect(back, off+1); err != nil || !bytes.Equal(back, odd) {
		t.Fatalf("unaligned ReadAtDirect: %v, equal %v", err, bytes.Equal(back, odd))
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
}
