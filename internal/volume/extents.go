package volume

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"golang.org/x/sys/unix"
)

// Extent is a run of a volume's bytes that share one allocation state.
type Extent struct {
	Len int64
	// Hole: the volume stores nothing for the run (a hole in its files).
	Hole bool
	// Zero: the run reads as zeros.
	Zero bool
}

// Extents describes [off, off+n) as consecutive runs from off, in order,
// adjacent runs in different states. Holes in the data file are Hole and
// Zero; on a volume still filling from its backing, a block not yet local
// is Zero where the backing lists no data there (a snapshot reader lists
// its non-zero chunks) and data otherwise. A run not reported Zero may
// still hold zeros (written zeros, or a backing that cannot tell). The
// state of a range written concurrently is either the old or the new one.
func (v *Volume) Extents(off, n int64) ([]Extent, error) {
	if err := v.checkRange(off, n); err != nil {
		return nil, err
	}
	var b extentList
	end := off + n
	if !v.hydrating() {
		err := v.data.extents(off, end, b.add)
		return b, err
	}
	// A block that turns local during the walk reads the same bytes from
	// either side, so the answer is right whichever side it was read from.
	bs, alloc := v.blockSize, v.backingAllocated()
	for pos := off; pos < end; {
		blk := pos / bs
		local := v.hydr.has(blk)
		last := blk
		for (last+1)*bs < end && v.hydr.has(last+1) == local {
			last++
		}
		next := min((last+1)*bs, end)
		switch {
		case local:
			if err := v.data.extents(pos, next, b.add); err != nil {
				return nil, err
			}
		case alloc == nil:
			b.add(next-pos, Extent{})
		default:
			backingExtents(alloc.ranges, pos, next, b.add)
		}
		pos = next
	}
	return b, nil
}

// extentList appends runs, merging one into the last when their states
// match.
type extentList []Extent

func (l *extentList) add(n int64, e Extent) {
	if k := len(*l); k > 0 && (*l)[k-1].Hole == e.Hole && (*l)[k-1].Zero == e.Zero {
		(*l)[k-1].Len += n
		return
	}
	e.Len = n
	*l = append(*l, e)
}

// backingMap is the backing's list of data ranges, cached for the reader
// it came from: a snapshot reader builds it from the whole index, too much
// to repeat for each block status query, and the backing never changes.
type backingMap struct {
	src    *io.ReaderAt
	ranges []Range
}

// backingAllocated returns where the backing holds data, or nil when it
// is not connected or cannot tell.
func (v *Volume) backingAllocated() *backingMap {
	p := v.hydr.source.Load()
	if p == nil {
		return nil
	}
	if m := v.backingMap.Load(); m != nil && m.src == p {
		return m
	}
	a, ok := (*p).(interface{ Allocated() []Range })
	if !ok {
		return nil
	}
	m := &backingMap{src: p, ranges: a.Allocated()}
	v.backingMap.Store(m)
	return m
}

// backingExtents reports [pos, end) as data where ranges (sorted, not
// overlapping) cover it and as zeros elsewhere.
func backingExtents(ranges []Range, pos, end int64, add func(int64, Extent)) {
	i := sort.Search(len(ranges), func(i int) bool { return ranges[i].Off+ranges[i].Len > pos })
	for ; pos < end; i++ {
		if i == len(ranges) || ranges[i].Off >= end {
			add(end-pos, Extent{Zero: true})
			return
		}
		r := ranges[i]
		if r.Off > pos {
			add(r.Off-pos, Extent{Zero: true})
			pos = r.Off
		}
		stop := min(r.Off+r.Len, end)
		add(stop-pos, Extent{})
		pos = stop
	}
}

// extents reports [off, end) as runs of data and holes, as SEEK_DATA and
// SEEK_HOLE find them, segment by segment.
func (s *segmented) extents(off, end int64, add func(int64, Extent)) error {
	hole := Extent{Hole: true, Zero: true}
	for off < end {
		i := off >> s.shift
		base := i << s.shift
		stop := min(end, base+1<<s.shift)
		_, f, err := s.file(int(i), false)
		if err != nil {
			return err
		}
		if f == nil { // a made file's unwritten segment
			add(stop-off, hole)
			off = stop
			continue
		}
		fd := int(f.Fd())
		for off < stop {
			d, err := unix.Seek(fd, off-base, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) { // nothing but holes to the end
				d = stop - base
			} else if err != nil {
				return fmt.Errorf("seek data: %w", err)
			}
			d = min(d+base, stop)
			if d > off {
				add(d-off, hole)
				off = d
				continue
			}
			h, err := unix.Seek(fd, off-base, unix.SEEK_HOLE)
			if err != nil {
				return fmt.Errorf("seek hole: %w", err)
			}
			h = min(h+base, stop)
			if h <= off { // the file changed under the walk; call it data
				h = stop
			}
			add(h-off, Extent{})
			off = h
		}
	}
	return nil
}
