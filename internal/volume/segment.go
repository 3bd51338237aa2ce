package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/directio"
	"github.com/coffer-backup/coffer/internal/errs"
)

// segmented is a sparse byte range kept as a row of files of one
// power-of-two size each, so no file outgrows what the file system allows
// (doc.go, "Segments"). Segment 0 is the file name, segment i > 0 is
// name.i. Files are opened on first use and stay open until close; I/O
// that crosses a segment boundary is split. Safe for concurrent use except
// close and grow, which the volume orders against its I/O.
//
// A volume's data file must have every segment on disk (made by Create and
// Grow); a snapshot's pre-image file (made) creates a segment on its first
// write, and reads zeros from one it has not written.
type segmented struct {
	dir, name string
	shift     uint // log2 of the segment size
	made      bool // segments appear on first write (snapshot.cow)

	mu   sync.Mutex // opening files, grow, close
	segs atomic.Pointer[[]*segment]
	// noCachestat is set once the kernel refused cachestat(2).
	noCachestat atomic.Bool
	// noDirect is set once the file system refused O_DIRECT.
	noDirect atomic.Bool
}

type segment struct {
	file atomic.Pointer[os.File]
	// direct is the same file opened with O_DIRECT, on the first I/O that
	// bypasses the page cache (ReadAtDirect, WriteAtDirect).
	direct atomic.Pointer[os.File]
	// dirty is set after a write or hole punch lands and cleared by the
	// sync that covers it, so Flush syncs only the segments written since.
	dirty  atomic.Bool
	syncMu sync.Mutex
}

// segmentCount is how many segments hold size bytes (at least one).
func segmentCount(size int64, shift uint) int {
	return int(max((size+(1<<shift)-1)>>shift, 1))
}

// segmentName is the file of segment i of the file name.
func segmentName(dir, name string, i int) string {
	if i == 0 {
		return filepath.Join(dir, name)
	}
	return filepath.Join(dir, name+"."+strconv.Itoa(i))
}

// segmentLen is the length of segment i of a volume of size bytes: whole
// segments but the last, which ends where the volume does.
func segmentLen(size int64, shift uint, i int) int64 {
	return min(size-int64(i)<<shift, 1<<shift)
}

// createSegments makes the segment files of a new data file of size bytes,
// durably, replacing what was there.
func createSegments(dir, name string, size int64, shift uint) error {
	for i := range segmentCount(size, shift) {
		if err := createSparse(segmentName(dir, name, i), segmentLen(size, shift, i)); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

// openSegments opens a data file of size bytes (every segment on disk) or,
// made, starts an empty pre-image file for size bytes. Segment 0 is opened
// at once: its file is the one the volume locks.
func openSegments(dir, name string, size int64, shift uint, made bool) (*segmented, error) {
	s := &segmented{dir: dir, name: name, shift: shift, made: made}
	segs := make([]*segment, segmentCount(size, shift))
	for i := range segs {
		segs[i] = &segment{}
	}
	s.segs.Store(&segs)
	if _, err := s.open(0); err != nil {
		return nil, err
	}
	return s, nil
}

// file returns the open file of segment i, opening it if need be. In a made
// file it returns nil for a segment not yet written unless create is set.
func (s *segmented) file(i int, create bool) (*segment, *os.File, error) {
	segs := *s.segs.Load()
	if i >= len(segs) {
		return nil, nil, fmt.Errorf("segment %d of %s is past its end", i, s.name)
	}
	seg := segs[i]
	if f := seg.file.Load(); f != nil {
		return seg, f, nil
	}
	if s.made && !create {
		return seg, nil, nil
	}
	f, err := s.open(i)
	return seg, f, err
}

func (s *segmented) open(i int) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg := (*s.segs.Load())[i]
	if f := seg.file.Load(); f != nil {
		return f, nil
	}
	flag := os.O_RDWR
	if s.made {
		// Truncate: a segment is created once per pre-image file, and a
		// file left by an earlier snapshot holds nothing of this one.
		flag |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(segmentName(s.dir, s.name, i), flag, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.E(errs.Internal, "VolumeCorrupt", "segment %d of %s in %s is missing", i, s.name, s.dir).Wrap(err)
	}
	if err != nil {
		return nil, err
	}
	seg.file.Store(f)
	return f, nil
}

// first is segment 0's file, which is always open.
func (s *segmented) first() *os.File { return (*s.segs.Load())[0].file.Load() }

func (seg *segment) touched() {
	if !seg.dirty.Load() {
		seg.dirty.Store(true)
	}
}

// ReadAt reads len(p) bytes at off; holes, the space past a segment file's
// end and unwritten segments of a made file read as zeros.
func (s *segmented) ReadAt(p []byte, off int64) (int, error) {
	return s.each(p, off, s.readSegment)
}

// each calls io for the pieces of p at off that fall in one segment each,
// with the segment's number and the offset in it, and returns how many
// bytes of p the pieces before the first failing one covered.
func (s *segmented) each(p []byte, off int64, io func(p []byte, i int, off int64) error) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if i := off >> s.shift; (off+int64(len(p))-1)>>s.shift == i { // the common case
		if err := io(p, int(i), off-i<<s.shift); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		i := pos >> s.shift
		n := int(min(int64(len(p)-done), (i+1)<<s.shift-pos))
		if err := io(p[done:done+n], int(i), pos-i<<s.shift); err != nil {
			return done, err
		}
		done += n
	}
	return len(p), nil
}

func (s *segmented) readSegment(p []byte, i int, off int64) error {
	_, f, err := s.file(i, false)
	if err != nil {
		return err
	}
	if f == nil {
		clear(p)
		return nil
	}
	n, err := f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		err = nil
	}
	return err
}

// cached reports whether every page of [off, off+n) (n > 0) is in the page
// cache, so a read of it would not wait for the device. It answers false
// where it cannot tell cheaply: a kernel without cachestat(2) (before
// Linux 6.5), a range across segments, a segment not open. Holes read no
// device either but count as not cached; a false answer only costs the
// caller the slower path.
func (s *segmented) cached(off, n int64) bool {
	i := off >> s.shift
	if n <= 0 || (off+n-1)>>s.shift != i || s.noCachestat.Load() {
		return false
	}
	f := (*s.segs.Load())[i].file.Load()
	if f == nil {
		return false
	}
	page := int64(os.Getpagesize())
	start := (off - i<<s.shift) &^ (page - 1)
	end := off - i<<s.shift + n
	r := unix.CachestatRange{Off: uint64(start), Len: uint64(end - start)}
	var st unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &r, &st, 0); err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			s.noCachestat.Store(true)
		}
		return false
	}
	return int64(st.Cache) >= (end-start+page-1)/page
}

// WriteAt writes p at off.
func (s *segmented) WriteAt(p []byte, off int64) (int, error) {
	return s.each(p, off, s.writeSegment)
}

func (s *segmented) writeSegment(p []byte, i int, off int64) error {
	seg, f, err := s.file(i, true)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(p, off)
	seg.touched()
	return err
}

// WriteAtDirect is WriteAt bypassing the page cache when p's memory, its
// length and off are aligned for O_DIRECT (directio.Usable) and the file
// system does direct I/O; otherwise it is WriteAt. For bulk bytes not read
// again soon (a restored disk's blocks, a large sequential write): on the
// virtual machines we measured, a fresh page-cache page cost more CPU than
// the copy into it. The kernel keeps the two paths coherent. The bytes are
// durable, as WriteAt's, after the next sync.
func (s *segmented) WriteAtDirect(p []byte, off int64) (int, error) {
	if !directio.Usable(p, off) {
		return s.WriteAt(p, off)
	}
	return s.each(p, off, func(p []byte, i int, off int64) error {
		seg, f, err := s.directFile(i)
		if err != nil || f == nil {
			if err == nil {
				err = s.writeSegment(p, i, off)
			}
			return err
		}
		_, err = f.WriteAt(p, off)
		seg.touched()
		return err
	})
}

// ReadAtDirect is ReadAt bypassing the page cache under the conditions of
// WriteAtDirect: for bulk reads that need not stay cached (a backup's read
// of the volume).
func (s *segmented) ReadAtDirect(p []byte, off int64) (int, error) {
	if !directio.Usable(p, off) {
		return s.ReadAt(p, off)
	}
	return s.each(p, off, func(p []byte, i int, off int64) error {
		_, f, err := s.directFile(i)
		if err != nil || f == nil {
			if err == nil {
				err = s.readSegment(p, i, off)
			}
			return err
		}
		n, err := f.ReadAt(p, off)
		if errors.Is(err, io.EOF) {
			clear(p[n:])
			err = nil
		}
		return err
	})
}

// directFile returns segment i's O_DIRECT file, opening it if need be, or
// nil when direct I/O is not to be used: a made file (its segments appear
// on first write), or a file system that refused it.
func (s *segmented) directFile(i int) (*segment, *os.File, error) {
	if s.made || s.noDirect.Load() {
		return nil, nil, nil
	}
	seg, _, err := s.file(i, false)
	if err != nil {
		return nil, nil, err
	}
	if f := seg.direct.Load(); f != nil {
		return seg, f, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := seg.direct.Load(); f != nil {
		return seg, f, nil
	}
	f, err := directio.Open(segmentName(s.dir, s.name, i))
	if err != nil {
		return nil, nil, err
	}
	if f == nil {
		s.noDirect.Store(true)
		return nil, nil, nil
	}
	seg.direct.Store(f)
	return seg, f, nil
}

// fallocate applies a fallocate mode to [off, off+n), segment by segment.
func (s *segmented) fallocate(mode uint32, off, n int64) error {
	for end := off + n; off < end; {
		i := off >> s.shift
		piece := min(end, (i+1)<<s.shift) - off
		seg, f, err := s.file(int(i), true)
		if err != nil {
			return err
		}
		err = unix.Fallocate(int(f.Fd()), mode, off-i<<s.shift, piece)
		seg.touched()
		if err != nil {
			return err
		}
		off += piece
	}
	return nil
}

// sync makes every write that completed before it was called durable:
// fdatasync of each segment written since its last sync. The segment's
// lock makes a second caller wait for a sync already under way, which may
// be the one covering its writes.
func (s *segmented) sync() error {
	for _, seg := range *s.segs.Load() {
		f := seg.file.Load()
		if f == nil {
			continue
		}
		seg.syncMu.Lock()
		var err error
		if seg.dirty.Swap(false) {
			if err = unix.Fdatasync(int(f.Fd())); err != nil {
				seg.dirty.Store(true)
			}
		}
		seg.syncMu.Unlock()
		if err != nil {
			return fmt.Errorf("sync %s: %w", f.Name(), err)
		}
	}
	return nil
}

// allocated returns the ranges of [0, size) that hold data, as SEEK_DATA
// and SEEK_HOLE report them, merged across segment boundaries. A segment
// file with no blocks is skipped without being opened.
func (s *segmented) allocated(size int64) ([]Range, error) {
	out := []Range{}
	segs := *s.segs.Load()
	for i := 0; i < len(segs) && int64(i)<<s.shift < size; i++ {
		base := int64(i) << s.shift
		end := min(size-base, 1<<s.shift)
		f := segs[i].file.Load()
		if f == nil {
			if s.made {
				continue
			}
			var st unix.Stat_t
			if err := unix.Stat(segmentName(s.dir, s.name, i), &st); err != nil {
				return nil, err
			}
			if st.Blocks == 0 {
				continue
			}
			var err error
			if _, f, err = s.file(i, false); err != nil {
				return nil, err
			}
		}
		fd := int(f.Fd())
		for off := int64(0); off < end; {
			d, err := unix.Seek(fd, off, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("seek data: %w", err)
			}
			if d >= end {
				break
			}
			h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
			if err != nil {
				return nil, fmt.Errorf("seek hole: %w", err)
			}
			h = min(h, end)
			if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == base+d {
				out[n-1].Len += h - d
			} else {
				out = append(out, Range{Off: base + d, Len: h - d})
			}
			off = h
		}
	}
	return out, nil
}

// grow extends a data file from size to newSize bytes: the last segment to
// its full length, then new segment files, all durable before it returns.
// The caller commits the new size afterwards (the header).
func (s *segmented) grow(size, newSize int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, n := segmentCount(size, s.shift), segmentCount(newSize, s.shift)
	last := segmentName(s.dir, s.name, old-1)
	if err := truncateSync(last, segmentLen(newSize, s.shift, old-1)); err != nil {
		return err
	}
	if n == old {
		return nil
	}
	segs := append([]*segment(nil), *s.segs.Load()...)
	for i := old; i < n; i++ {
		if err := createSparse(segmentName(s.dir, s.name, i), segmentLen(newSize, s.shift, i)); err != nil {
			return err
		}
		segs = append(segs, &segment{})
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.segs.Store(&segs)
	return nil
}

func truncateSync(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// repairSegments makes the data file's segments match size, the header's
// word: a crash inside Grow can leave the old last segment longer and new
// segment files that the header does not count yet. No write reached
// either, since writers see a new size only after the header names it.
func repairSegments(dir, name string, size int64, shift uint) error {
	n := segmentCount(size, shift)
	for i := range n {
		want := segmentLen(size, shift, i)
		fi, err := os.Stat(segmentName(dir, name, i))
		if errors.Is(err, fs.ErrNotExist) {
			return errs.E(errs.Internal, "VolumeCorrupt", "segment %d of the data in %s is missing", i, dir).Wrap(err)
		}
		if err != nil {
			return err
		}
		if fi.Size() != want {
			if err := truncateSync(segmentName(dir, name, i), want); err != nil {
				return err
			}
		}
	}
	return removeSegments(dir, name, n)
}

// removeSegments removes the files of segments from on, and segment 0's
// too when from is 0.
func removeSegments(dir, name string, from int) error {
	matches, err := filepath.Glob(filepath.Join(dir, name+".*"))
	if err != nil {
		return err
	}
	if from == 0 {
		matches = append(matches, filepath.Join(dir, name))
	}
	for _, m := range matches {
		if suffix, ok := strings.CutPrefix(filepath.Base(m), name+"."); ok {
			if i, err := strconv.Atoi(suffix); err != nil || i < from {
				continue
			}
		}
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// close closes every open file.
func (s *segmented) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for _, seg := range *s.segs.Load() {
		for _, f := range []*os.File{seg.file.Swap(nil), seg.direct.Swap(nil)} {
			if f == nil {
				continue
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}
