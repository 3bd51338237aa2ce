package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/directio"
	"github.com/coffer-backup/coffer/internal/errs"
)

// hydratedName is the bitmap of blocks a backed volume holds locally. It is
// mapped shared, like the change-tracking bitmaps, so a set bit survives
// the process; it goes when the volume is fully hydrated.
const hydratedName = "hydrated"

// hydration is the state of a volume created from a backing image (a
// snapshot): blocks not yet local are read from the backing, a writer
// first brings the blocks it touches local, and Hydrate copies the rest.
type hydration struct {
	name    string // the backing's name, recorded in the header
	file    *os.File
	mem     []byte
	words   []uint64
	stripes [cowStripes]sync.Mutex
	source  atomic.Pointer[io.ReaderAt]
	done    atomic.Bool
	// next is where Hydrate goes next, set by a reader that had to fetch
	// from the backing: the extent after the one it fetched, plus one (0:
	// no news). Hydrate moves there, so its workers fetch ahead of the
	// reader instead of behind it.
	next atomic.Int64
}

// CreateBacked makes a volume of size bytes whose contents are, until
// written, those of the backing named backing (resolved later with
// SetBacking). It reads and writes at once; Hydrate fills it in the
// background.
func CreateBacked(dir string, size int64, backing string) (*Volume, error) {
	return CreateBackedWith(dir, size, backing, Options{})
}

// CreateBackedWith is CreateBacked with options other than the defaults.
// A retry that finds the plain volume a crashed call left keeps that
// volume's options.
func CreateBackedWith(dir string, size int64, backing string, o Options) (*Volume, error) {
	if backing == "" {
		return nil, errs.E(errs.Invalid, "InvalidBacking", "a backed volume needs a backing name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// A plain volume already here is what a CreateBacked that crashed
	// before naming its backing left: nothing can have written to it, so
	// it is finished below. One that names the backing is done.
	h, err := readHeader(dir)
	if errs.Is(err, errs.NotFound) {
		v, cerr := create(dir, size, DefaultBlockSize, o.SegmentSize)
		if cerr != nil {
			return nil, cerr
		}
		if cerr := v.Close(); cerr != nil {
			return nil, cerr
		}
		h, err = readHeader(dir)
	}
	if err != nil {
		return nil, err
	}
	if h.Backing == backing {
		return Open(dir)
	}
	if h.Backing != "" || h.Size != size {
		return nil, errs.E(errs.Conflict, "VolumeExists", "a different volume already exists in %s", dir)
	}
	n := wordsFor(nblocksFor(size, h.BlockSize)) * 8
	if err := createSparse(filepath.Join(dir, hydratedName), n); err != nil {
		return nil, err
	}
	// The header names the backing last: it is the commit point.
	h.Backing = backing
	if err := writeHeader(dir, h); err != nil {
		return nil, err
	}
	return Open(dir)
}

func openHydration(dir string, h header) (*hydration, error) {
	f, err := os.OpenFile(filepath.Join(dir, hydratedName), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open hydration bitmap: %w", err)
	}
	n := wordsFor(nblocksFor(h.Size, h.BlockSize)) * 8
	if fi, err := f.Stat(); err != nil || fi.Size() < n {
		f.Close()
		return nil, errs.E(errs.Internal, "VolumeCorrupt", "hydration bitmap in %s is short", dir)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map hydration bitmap: %w", err)
	}
	return &hydration{name: h.Backing, file: f, mem: mem, words: unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n/8)}, nil
}

func (h *hydration) close() error {
	if h.mem != nil {
		unix.Munmap(h.mem)
		h.mem = nil
	}
	return h.file.Close()
}

func (h *hydration) has(b int64) bool {
	return atomic.LoadUint64(&h.words[b>>6])&(1<<(uint(b)&63)) != 0
}

func (h *hydration) set(b int64) { atomic.OrUint64(&h.words[b>>6], 1<<(uint(b)&63)) }

// Backing names the image the volume still reads from, "" when it holds
// all its blocks.
func (v *Volume) Backing() string {
	if h := v.hydr; h != nil && !h.done.Load() {
		return h.name
	}
	return ""
}

// SetBacking connects the reader of the backing image. Until it is set,
// reads of blocks not yet local fail with errs.Transient.
func (v *Volume) SetBacking(r io.ReaderAt) {
	if v.hydr != nil {
		v.hydr.source.Store(&r)
	}
}

func (v *Volume) backingSource() (io.ReaderAt, error) {
	p := v.hydr.source.Load()
	if p == nil {
		return nil, errs.E(errs.Transient, "BackingNotConnected", "the volume's backing image %q is not connected", v.hydr.name)
	}
	return *p, nil
}

// hydrating reports whether some blocks may still be in the backing.
func (v *Volume) hydrating() bool { return v.hydr != nil && !v.hydr.done.Load() }

// readLogical reads [off, off+len(p)) as the volume's contents: local
// blocks from the data file, the others through readThrough, which makes
// them local. Consecutive local extents are read in one call.
func (v *Volume) readLogical(p []byte, off int64) (int, error) {
	if !v.hydrating() {
		return v.data.ReadAt(p, off)
	}
	h, bs := v.hydr, v.blockSize
	per := max(hydrateExtent/bs, 1)
	nb := nblocksFor(v.size.Load(), bs)
	end := off + int64(len(p))
	local := int64(-1) // start of a run of local bytes not yet read
	flush := func(to int64) error {
		if local < 0 {
			return nil
		}
		from := local
		local = -1
		return v.readData(p[from-off:to-off], from)
	}
	for pos := off; pos < end; {
		first := pos / bs / per * per
		next := min((first+per)*bs, end)
		if h.allLocal(pos/bs, (next-1)/bs+1) {
			if local < 0 {
				local = pos
			}
			pos = next
			continue
		}
		if from := local; from >= 0 {
			if err := flush(pos); err != nil {
				return int(from - off), err
			}
		}
		if err := v.readThrough(p[pos-off:next-off], pos, first, min(first+per, nb)); err != nil {
			return int(pos - off), err
		}
		pos = next
	}
	if from := local; from >= 0 {
		if err := flush(end); err != nil {
			return int(from - off), err
		}
	}
	return len(p), nil
}

// allLocal reports whether blocks [first, end) are all local.
func (h *hydration) allLocal(first, end int64) bool {
	for b := first; b < end; b++ {
		if !h.has(b) {
			return false
		}
	}
	return true
}

// extentBufs are the buffers of readThrough, one extent each, aligned for
// O_DIRECT writes.
var extentBufs = sync.Pool{New: func() any { b := directio.AlignedBuf(hydrateExtent); return &b }}

// readThrough reads p at pos, within the extent of blocks [first, end),
// some of which are not local: it reads the whole extent from the backing
// (a chunk of the store, fetched whole anyway), makes its missing blocks
// local as Hydrate would (copy on read: neither this reader nor the
// hydration fetches them again), and answers from what it read, or from
// the data file for blocks that were already local (a writer's). It then
// points the hydration at the next extent, so a sequential reader finds
// the extents ahead of it being fetched in parallel (read-ahead).
func (v *Volume) readThrough(p []byte, pos, first, end int64) error {
	src, err := v.backingSource()
	if err != nil {
		return err
	}
	bs := v.blockSize
	bufp := extentBufs.Get().(*[]byte)
	defer extentBufs.Put(bufp)
	buf := *bufp
	if int64(cap(buf)) < (end-first)*bs {
		buf = directio.AlignedBuf(int((end - first) * bs))
	}
	start := first * bs
	ext := buf[:min(end*bs, v.size.Load())-start]
	if _, err := src.ReadAt(ext, start); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	wasLocal := make([]bool, end-first)
	if err := v.storeExtent(first, end, ext, true, wasLocal); err != nil {
		return err
	}
	per := max(hydrateExtent/bs, 1)
	v.hydr.next.Store(first/per + 2)
	stop := pos + int64(len(p))
	for b := pos / bs; b*bs < stop; b++ {
		lo, hi := max(b*bs, pos), min((b+1)*bs, stop)
		if wasLocal[b-first] {
			if err := v.readData(p[lo-pos:hi-pos], lo); err != nil {
				return err
			}
			continue
		}
		copy(p[lo-pos:hi-pos], ext[lo-start:hi-start])
	}
	return nil
}

// readData reads p at off from the data file; past its end is zeros.
func (v *Volume) readData(p []byte, off int64) error {
	_, err := v.data.ReadAt(p, off)
	return err
}

// fill brings the blocks of [off, off+n) local so a write can go to the
// data file; a block's backing bytes are written before its bit is set.
func (v *Volume) fill(off, n int64) error {
	if !v.hydrating() || n <= 0 {
		return nil
	}
	bs := v.blockSize
	var buf []byte
	for b := off / bs; b <= (off+n-1)/bs; b++ {
		if v.hydr.has(b) {
			continue
		}
		if buf == nil {
			buf = make([]byte, bs)
		}
		if err := v.hydrateBlock(b, buf); err != nil {
			return err
		}
	}
	return nil
}

func (v *Volume) hydrateBlock(b int64, buf []byte) error {
	h := v.hydr
	lock := &h.stripes[b%cowStripes]
	lock.Lock()
	defer lock.Unlock()
	if h.has(b) {
		return nil
	}
	src, err := v.backingSource()
	if err != nil {
		return err
	}
	start := b * v.blockSize
	blk := buf[:min(v.blockSize, v.size.Load()-start)]
	if _, err := src.ReadAt(blk, start); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("hydrate block %d: %w", b, err)
	}
	if !allZero(blk) { // the data file is sparse: zeros need no write
		if _, err := v.data.WriteAt(blk, start); err != nil {
			return err
		}
	}
	h.set(b)
	return nil
}

// Hydrate copies every block not yet local from the backing, then makes
// the volume standalone: the header forgets the backing. progress, if not
// nil, gets the blocks done and the total. It is safe to run beside
// readers and writers, and to run again after a crash.
//
// It works in extents of hydrateExtent bytes (a chunk of the store), with
// HydrateWorkers of them in flight: the backing reads each whole, and the
// missing non-zero blocks go to the data file in one write per run, with
// O_DIRECT where the file system allows (internal/directio): a restored
// disk is written once, and not read back through the cache of the
// process that restored it. A backing that lists its data (Allocated, as
// a snapshot reader does) spares the reads of its zero extents.
func (v *Volume) Hydrate(ctx context.Context, progress func(done, total int64)) error {
	if !v.hydrating() {
		return nil
	}
	src, err := v.backingSource()
	if err != nil {
		return err
	}
	size := v.size.Load()
	nb := nblocksFor(size, v.blockSize)
	per := max(hydrateExtent/v.blockSize, 1) // blocks an extent
	withData := dataBlocks(src, nb, v.blockSize)

	var mu sync.Mutex
	var done int64
	report := func(n int64) {
		if progress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if done/1024 != (done+n)/1024 {
			progress(done+n, nb)
		}
		done += n
	}
	next := make(chan int64)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(next)
		// Extents go out in order from a cursor that jumps to where a
		// reader last fetched (readThrough), then wraps around to those
		// it skipped; each goes out once.
		extents := (nb + per - 1) / per
		sent := NewBitmap(extents)
		cursor := int64(0)
		for range extents {
			if hint := v.hydr.next.Swap(0); hint > 0 && hint-1 < extents {
				cursor = hint - 1
			}
			if cursor = sent.nextClear(cursor); cursor == extents {
				cursor = sent.nextClear(0)
			}
			sent.Set(cursor)
			select {
			case next <- cursor * per:
			case <-gctx.Done():
				return gctx.Err()
			}
			cursor++
		}
		return nil
	})
	for range HydrateWorkers {
		g.Go(func() error {
			buf := directio.AlignedBuf(int(per * v.blockSize))
			for first := range next {
				end := min(first+per, nb)
				if err := v.hydrateExtent(src, first, end, size, buf, withData); err != nil {
					return err
				}
				report(end - first)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// Durable bytes first, then the bits, then the header that drops the
	// backing: a crash between leaves a volume that hydrates again.
	if err := v.data.sync(); err != nil {
		return err
	}
	if err := unix.Msync(v.hydr.mem, unix.MS_SYNC); err != nil {
		return err
	}
	if err := writeHeader(v.dir, v.header(v.size.Load(), "")); err != nil {
		return err
	}
	v.hydr.done.Store(true)
	if progress != nil {
		progress(nb, nb)
	}
	return nil
}

// hydrateExtent is how many bytes a Hydrate worker reads from the backing
// at once: the store's chunk size, so each read is one whole chunk.
const hydrateExtent = 1 << 20

// HydrateWorkers is how many extents Hydrate copies at once (each holds a
// 1 MiB buffer). Hydration waits on the device more than on the CPU: a
// 4 GiB restore took 4.2 s with 32 in flight and 4.7 s with 8, alternating
// runs on a 2-CPU machine, where the device was the limit (vmstat: 40%
// I/O wait).
const HydrateWorkers = 32

// dataBlocks returns the blocks the backing may hold data in, or nil when
// it cannot tell (then every block is read).
func dataBlocks(src io.ReaderAt, nb, bs int64) *Bitmap {
	a, ok := src.(interface{ Allocated() []Range })
	if !ok {
		return nil
	}
	m := NewBitmap(nb)
	for _, r := range a.Allocated() {
		if r.Len > 0 && r.Off < nb*bs {
			m.SetRange(r.Off/bs, min((r.Off+r.Len+bs-1)/bs, nb))
		}
	}
	return m
}

// hydrateExtent brings blocks [first, end) local. The backing never
// changes, so it is read without locks (storeExtent then takes them).
func (v *Volume) hydrateExtent(src io.ReaderAt, first, end, size int64, buf []byte, withData *Bitmap) error {
	if v.hydr.allLocal(first, end) {
		return nil
	}
	start := first * v.blockSize
	p := buf[:min(end*v.blockSize, size)-start]
	data := withData == nil || withData.anySet(first, end)
	if data {
		if _, err := src.ReadAt(p, start); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("hydrate blocks %d-%d: %w", first, end-1, err)
		}
	}
	return v.storeExtent(first, end, p, data, nil)
}

// storeExtent makes blocks [first, end) local, given p, their backing
// bytes (or nothing to write when data is false: the backing holds only
// zeros there). The blocks' locks are held while those still missing are
// written and marked, which orders this against a writer's fill and
// another reader or worker storing the same extent. wasLocal, if not nil,
// gets which blocks were local already (their bytes are the data file's,
// not p's).
func (v *Volume) storeExtent(first, end int64, p []byte, data bool, wasLocal []bool) error {
	h, bs := v.hydr, v.blockSize
	start := first * bs
	unlock := h.lockBlocks(first, end)
	defer unlock()
	// Write each run of blocks that are missing and not zero (the data
	// file is sparse: zeros need no write), then mark the extent.
	run := int64(-1) // first block of the current run
	flush := func(b int64) error {
		if run < 0 {
			return nil
		}
		lo, hi := (run-first)*bs, min((b-first)*bs, int64(len(p)))
		run = -1
		return v.writeHydrated(p[lo:hi], start+lo)
	}
	for b := first; b < end; b++ {
		local := h.has(b)
		if wasLocal != nil {
			wasLocal[b-first] = local
		}
		blk := p[(b-first)*bs : min((b-first+1)*bs, int64(len(p)))]
		if data && !local && !allZero(blk) {
			if run < 0 {
				run = b
			}
			continue
		}
		if err := flush(b); err != nil {
			return err
		}
	}
	if err := flush(end); err != nil {
		return err
	}
	for b := first; b < end; b++ {
		h.set(b)
	}
	return nil
}

// lockBlocks locks the stripes of blocks [first, end), at most cowStripes
// of them, in stripe order: other lockers hold one stripe at a time, and
// two Hydrate workers take theirs in the same order, so none deadlock.
func (h *hydration) lockBlocks(first, end int64) (unlock func()) {
	var idx [cowStripes]bool
	for b := first; b < end; b++ {
		idx[b%cowStripes] = true
	}
	for i := range idx {
		if idx[i] {
			h.stripes[i].Lock()
		}
	}
	return func() {
		for i := range idx {
			if idx[i] {
				h.stripes[i].Unlock()
			}
		}
	}
}

// writeHydrated writes backing bytes to the data file, directly when it
// can.
func (v *Volume) writeHydrated(p []byte, off int64) error {
	if directio.Usable(p, off) {
		if done, err := v.data.writeDirect(p, off); done {
			return err
		}
	}
	_, err := v.data.WriteAt(p, off)
	return err
}
