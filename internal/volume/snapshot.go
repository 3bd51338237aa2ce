package volume

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/coffer-backup/coffer/internal/errs"
)

// cowName is the file that holds the pre-images of a live snapshot. It
// lives only while the snapshot does; Open removes a stale one.
const cowName = "snapshot.cow"

// cowStripes bounds the locks that order a block's copy-on-write against
// readers of the snapshot; blocks share them by number.
const cowStripes = 256

// Snapshot is a point-in-time view of a volume: it reads the bytes the
// volume held when Snapshot returned, however the volume is written to
// afterwards. Writers are not stalled while it is read: the first write to
// a block after the snapshot first copies the block's old bytes aside
// (copy-on-write), one block at a time.
//
// A Snapshot also carries the set of blocks changed since the last
// committed snapshot, so an incremental backup reads only those. Commit
// says the snapshot is stored and that set can be forgotten; Release
// without Commit keeps it, and the next snapshot reports it again.
type Snapshot struct {
	v       *Volume
	size    int64
	changed *Bitmap
	epoch   uint64

	cow       *segmented
	preserved []atomic.Uint64 // bit per block: its pre-image is in cow
	stripes   [cowStripes]sync.Mutex

	// users counts writers inside preserve; Release waits for them.
	users    sync.WaitGroup
	mu       sync.Mutex // guards released against new users
	released bool
}

// Snapshot freezes the volume's current contents. Only one snapshot of a
// volume may be live at a time: a second is errs.Conflict until the first
// is released.
func (v *Volume) Snapshot() (*Snapshot, error) {
	v.snapMu.Lock()
	defer v.snapMu.Unlock()
	if v.frozen.Load() != nil {
		return nil, errs.E(errs.Conflict, "SnapshotInProgress", "another snapshot of this volume is still being stored")
	}
	size := v.size.Load()
	cow, err := openSegments(v.dir, cowName, size, uint(log2(v.segmentSize)), true)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{v: v, size: size, cow: cow, preserved: make([]atomic.Uint64, wordsFor(nblocksFor(size, v.blockSize)))}
	// Install the view before ending the change epoch: a write that enters
	// the new epoch is ordered after the install and so copies before it
	// writes; a write still in the old epoch either saw the view (and
	// copies) or did not, and then the cut below waits for it to land
	// before the snapshot is handed out.
	v.frozen.Store(s)
	changed, epoch, err := v.cbt.cut()
	if err != nil {
		v.frozen.Store(nil)
		cow.close()
		removeSegments(v.dir, cowName, 0)
		return nil, err
	}
	s.changed, s.epoch = changed, epoch
	return s, nil
}

// Size is the volume's size when the snapshot was taken.
func (s *Snapshot) Size() int64 { return s.size }

// BlockSize is the change-tracking block size of Changed.
func (s *Snapshot) BlockSize() int64 { return s.v.blockSize }

// Changed is the set of blocks written since the last committed snapshot,
// as of this one. The caller must not modify it.
func (s *Snapshot) Changed() *Bitmap { return s.changed }

func (s *Snapshot) isPreserved(b int64) bool {
	return s.preserved[b>>6].Load()&(1<<(uint(b)&63)) != 0
}

// preserve copies the pre-images of the blocks of [off, off+n) that have
// none yet. Writers call it before they modify the volume.
func (s *Snapshot) preserve(off, n int64) error {
	s.mu.Lock()
	if s.released {
		s.mu.Unlock()
		return nil
	}
	s.users.Add(1)
	s.mu.Unlock()
	defer s.users.Done()
	if off >= s.size {
		return nil
	}
	bs := s.v.blockSize
	first, last := off/bs, (min(off+n, s.size)-1)/bs
	var buf []byte
	for b := first; b <= last; b++ {
		if s.isPreserved(b) {
			continue
		}
		lock := &s.stripes[b%cowStripes]
		lock.Lock()
		if !s.isPreserved(b) {
			if buf == nil {
				buf = make([]byte, bs)
			}
			start := b * bs
			blk := buf[:min(bs, s.size-start)]
			if _, err := s.v.readLogical(blk, start); err != nil && !errors.Is(err, io.EOF) {
				lock.Unlock()
				return fmt.Errorf("copy-on-write read: %w", err)
			}
			if !allZero(blk) { // the cow file is sparse: zeros need no write
				if _, err := s.cow.WriteAt(blk, start); err != nil {
					lock.Unlock()
					return fmt.Errorf("copy-on-write: %w", err)
				}
			}
			s.preserved[b>>6].Or(1 << (uint(b) & 63))
		}
		lock.Unlock()
	}
	return nil
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

// ReadAt reads the snapshot's bytes: pre-images where a block has been
// written since, the volume elsewhere. It takes no locks and reads each
// run of blocks without pre-images in one call (readRuns): a writer marks
// a block preserved, after its pre-image is in the cow file, before it
// writes the volume. (Reading block by block under the copy-on-write locks
// made sixteen calls of a 1 MiB chunk and cost a snapshot upload a third of
// its speed.)
func (s *Snapshot) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > s.size-int64(len(p)) {
		return 0, errs.E(errs.Invalid, "OutOfRange", "range [%d, +%d) is outside the snapshot of %d bytes", off, len(p), s.size)
	}
	return readRuns(p, off, s.v.blockSize, s.isPreserved, s.readPreserved, func(p []byte, off int64) error {
		_, err := s.v.readLogical(p, off)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return err
	})
}

// readPreserved reads p at pos from the pre-images of a preserved block,
// which never change once marked.
func (s *Snapshot) readPreserved(p []byte, pos int64) error {
	_, err := s.cow.ReadAt(p, pos) // a sparse cow file may end before pos: zeros
	return err
}

// Allocated lists the ranges of the snapshot that may hold data: the
// volume's allocated ranges and every preserved block.
func (s *Snapshot) Allocated() ([]Range, error) {
	live, err := s.v.Allocated()
	if err != nil {
		return nil, err
	}
	bs := s.v.blockSize
	nb := nblocksFor(s.size, bs)
	marks := NewBitmap(nb)
	for _, r := range live {
		if r.Off >= s.size {
			continue
		}
		marks.SetRange(r.Off/bs, (min(r.Off+r.Len, s.size)-1)/bs+1)
	}
	for b := int64(0); b < nb; b++ {
		if s.isPreserved(b) {
			marks.Set(b)
		}
	}
	out := []Range{}
	marks.ForEach(func(start, n int64) bool {
		end := min((start+n)*bs, s.size)
		out = append(out, Range{Off: start * bs, Len: end - start*bs})
		return true
	})
	return out, nil
}

// Commit records that the snapshot is stored: the changes it carries are
// forgotten, and the next snapshot reports only what is written after it.
func (s *Snapshot) Commit() error { return s.v.CommitChanged(s.epoch) }

// Release ends the snapshot and frees its pre-images. Without Commit, its
// changes are reported again by the next snapshot.
func (s *Snapshot) Release() error {
	s.mu.Lock()
	if s.released {
		s.mu.Unlock()
		return nil
	}
	s.released = true
	s.mu.Unlock()
	s.v.frozen.CompareAndSwap(s, nil)
	s.users.Wait()
	err := s.cow.close()
	if rerr := removeSegments(s.v.dir, cowName, 0); err == nil {
		err = rerr
	}
	return err
}
