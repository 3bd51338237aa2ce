package volume

import (
	"bytes"
	"path/filepath"
	"reflect"
	"testing"
)

const mib = 1 << 20

func TestExtents(t *testing.T) {
	v, err := Create(filepath.Join(t.TempDir(), "vol"), 8*mib)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.WriteAt(bytes.Repeat([]byte{1}, 64<<10), mib); err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(bytes.Repeat([]byte{2}, 2*mib), 4*mib); err != nil {
		t.Fatal(err)
	}
	if err := v.Zero(5*mib, mib); err != nil { // punch the middle of the second run
		t.Fatal(err)
	}
	hole := Extent{Hole: true, Zero: true}
	at := func(n int64, e Extent) Extent { e.Len = n; return e }
	for _, tc := range []struct {
		name   string
		off, n int64
		want   []Extent
	}{
		{"whole", 0, 8 * mib, []Extent{at(mib, hole), at(64<<10, Extent{}), at(3*mib-64<<10, hole), at(mib, Extent{}), at(3*mib, hole)}},
		{"inside data", mib + 100, 1000, []Extent{at(1000, Extent{})}},
		{"inside a hole", 7 * mib, 4096, []Extent{at(4096, hole)}},
		{"to the end", 4*mib + 1, 4*mib - 1, []Extent{at(mib-1, Extent{}), at(3*mib, hole)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Extents(tc.off, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Extents(%d, %d) = %+v, want %+v", tc.off, tc.n, got, tc.want)
			}
		})
	}
	if _, err := v.Extents(8*mib-10, 11); err == nil {
		t.Fatal("Extents past the end succeeded")
	}
}

// TestExtentsAcrossSegments checks that runs are merged across a segment
// boundary and that each segment file is walked at its own offsets.
func TestExtentsAcrossSegments(t *testing.T) {
	seg := int64(MinSegmentSize)
	v, err := CreateWith(filepath.Join(t.TempDir(), "vol"), 3*seg, Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	half := seg / 2
	if _, err := v.WriteAt(bytes.Repeat([]byte{3}, int(seg)), seg-half); err != nil {
		t.Fatal(err)
	}
	got, err := v.Extents(0, 3*seg)
	if err != nil {
		t.Fatal(err)
	}
	want := []Extent{{Len: half, Hole: true, Zero: true}, {Len: seg}, {Len: 2*seg - half, Hole: true, Zero: true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Extents = %+v, want %+v", got, want)
	}
}

// mappedBacking is a backing image that lists where its data is, as a
// snapshot reader does.
type mappedBacking struct {
	*bytes.Reader
	ranges []Range
}

func (m mappedBacking) Allocated() []Range { return m.ranges }

func TestExtentsWhileHydrating(t *testing.T) {
	const size = 8 * mib
	image := make([]byte, size)
	copy(image[2*mib:], bytes.Repeat([]byte{7}, 2*mib)) // backing data at [2, 4) MiB
	v, err := CreateBacked(filepath.Join(t.TempDir(), "vol"), size, "snapshots/x")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	// Not connected: blocks not local cannot be known to be zero.
	got, err := v.Extents(0, size)
	if err != nil || !reflect.DeepEqual(got, []Extent{{Len: size}}) {
		t.Fatalf("unconnected: %+v, %v", got, err)
	}

	v.SetBacking(mappedBacking{bytes.NewReader(image), []Range{{Off: 2 * mib, Len: 2 * mib}}})
	// A write makes its block local: [6 MiB, 6 MiB+64 KiB) holds data in
	// the data file, and the rest of that block was zero in the backing, so
	// it is a hole in the data file.
	if _, err := v.WriteAt([]byte("x"), 6*mib); err != nil {
		t.Fatal(err)
	}
	fsBlock := int64(4096) // the data file's allocation unit here
	want := []Extent{{Len: 2 * mib, Zero: true}, {Len: 2 * mib}, {Len: 2 * mib, Zero: true}, {Len: fsBlock}, {Len: 64<<10 - fsBlock, Hole: true, Zero: true}, {Len: 2*mib - 64<<10, Zero: true}}
	got, err = v.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("hydrating: %+v, want %+v", got, want)
	}
	// Whatever a range is called zero must read as zeros.
	checkZeros(t, v, got, 0)
}

// checkZeros reads every run reported Zero and fails if it is not.
func checkZeros(t *testing.T, v *Volume, exts []Extent, off int64) {
	t.Helper()
	for _, e := range exts {
		if e.Zero {
			p := make([]byte, e.Len)
			if _, err := v.ReadAt(p, off); err != nil {
				t.Fatal(err)
			}
			if !allZero(p) {
				t.Fatalf("[%d, +%d) is reported zero but is not", off, e.Len)
			}
		}
		off += e.Len
	}
}
