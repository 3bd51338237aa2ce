package volume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	name string // the backing's name, recorded in the header
	file *os.File
	mem  []byte
	// words is the persisted bitmap (mem): blocks whose bytes are durable
	// in the data file. local is the one reads and writes consult: words
	// plus blocks written to the data file and not yet synced (see
	// markLocal and persist). A crash loses only local's extra bits, whose
	// blocks are then fetched again.
	words   []uint64
	local   []uint64
	stripes [cowStripes]sync.Mutex
	source  atomic.Pointer[io.ReaderAt]
	done    atomic.Bool
	// next is where Hydrate goes next, set by a reader that had to fetch
	// from the backing: the extent after the one it fetched, plus one (0:
	// no news). Hydrate moves there, so its workers fetch ahead of the
	// reader instead of behind it.
	next atomic.Int64

	// Blocks made local since the last persist, and the bytes written for
	// them (which trigger a persist in the background).
	pendingMu  sync.Mutex
	pending    []blockRun
	unsynced   int64
	persistMu  sync.Mutex // one persist at a time
	persisting atomic.Bool
	persists   sync.WaitGroup

	// fetching holds the extents a fetch from the backing is under way
	// for, by extent number; the channel closes when it is done. Another
	// reader or the hydrator waits for it instead of fetching (and
	// decrypting) the same chunk again.
	fetchMu  sync.Mutex
	fetching map[int64]chan struct{}
}

// blockRun is blocks [first, end).
type blockRun struct{ first, end int64 }

// persistEvery is how many bytes copy-on-read and hydration write to the
// data file, through the page cache, before a background persist makes
// them durable (one fdatasync) and marks their blocks in the persisted
// bitmap: the device works beside the fetches instead of each fetch
// waiting on an O_DIRECT write. It bounds what a crash makes the volume
// fetch again; the kernel's own dirty limits bound the memory. Large, so
// a restore's reads of the packs are not made to share the device with
// the restored disk's writes: reading a 1 GiB disk (614 MiB of data) with
// nbdcopy through the service, cold cache, alternating, took 2.39, 2.57,
// 2.53 s persisting every 2 GiB against 2.84, 2.72, 3.03 s every 256 MiB.
const persistEvery = 1 << 30

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
	words := unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n/8)
	return &hydration{name: h.Backing, file: f, mem: mem, words: words, local: slices.Clone(words),
		fetching: map[int64]chan struct{}{}}, nil
}

func (h *hydration) close() error {
	h.persists.Wait() // a background persist writes to mem
	if h.mem != nil {
		unix.Munmap(h.mem)
		h.mem = nil
	}
	return h.file.Close()
}

// has reports whether block b is local: its bytes are in the data file
// (durable or not yet).
func (h *hydration) has(b int64) bool {
	return atomic.LoadUint64(&h.local[b>>6])&(1<<(uint(b)&63)) != 0
}

// markLocal records blocks [first, end) as local, their bytes (written
// bytes of them) just written to the data file; they join the persisted
// bitmap at the next persist. It reports whether a persist is due.
func (h *hydration) markLocal(first, end, written int64) bool {
	for b := first; b < end; b++ {
		atomic.OrUint64(&h.local[b>>6], 1<<(uint(b)&63))
	}
	h.pendingMu.Lock()
	defer h.pendingMu.Unlock()
	if l := len(h.pending); l > 0 && h.pending[l-1].end == first {
		h.pending[l-1].end = end
	} else {
		h.pending = append(h.pending, blockRun{first, end})
	}
	h.unsynced += written
	return h.unsynced >= persistEvery
}

// persist makes the blocks made local so far durable: the data file is
// synced, then their bits are set in the persisted bitmap. Blocks made
// local while it syncs wait for the next one. On error they stay pending.
func (v *Volume) persist() error {
	h := v.hydr
	h.persistMu.Lock()
	defer h.persistMu.Unlock()
	h.pendingMu.Lock()
	runs := h.pending
	h.pending, h.unsynced = nil, 0
	h.pendingMu.Unlock()
	if err := v.data.sync(); err != nil {
		h.pendingMu.Lock()
		h.pending = append(runs, h.pending...)
		h.pendingMu.Unlock()
		return err
	}
	for _, r := range runs {
		for b := r.first; b < r.end; b++ {
			atomic.OrUint64(&h.words[b>>6], 1<<(uint(b)&63))
		}
	}
	return nil
}

// persistLater starts a persist in the background unless one runs. Its
// error is dropped: the blocks stay pending, and the next persist (or
// Flush, or the end of Hydrate) retries and reports it.
func (v *Volume) persistLater() {
	h := v.hydr
	if !h.persisting.CompareAndSwap(false, true) {
		return
	}
	h.persists.Add(1)
	go func() {
		defer h.persists.Done()
		defer h.persisting.Store(false)
		_ = v.persist()
	}()
}

// claimFetch claims extent e for a fetch from the backing. ok: the caller
// fetches it and calls done after. Otherwise another fetch of e is under
// way; wait is closed when it is done.
func (h *hydration) claimFetch(e int64) (ok bool, wait <-chan struct{}, done func()) {
	h.fetchMu.Lock()
	defer h.fetchMu.Unlock()
	if c, busy := h.fetching[e]; busy {
		return false, c, nil
	}
	c := make(chan struct{})
	h.fetching[e] = c
	return true, nil, func() {
		h.fetchMu.Lock()
		delete(h.fetching, e)
		h.fetchMu.Unlock()
		close(c)
	}
}

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

// windowBufs are the buffers of readThrough: readAhead extents each.
var windowBufs = sync.Pool{New: func() any { b := directio.AlignedBuf(readAhead * hydrateExtent); return &b }}

// readThrough reads p at pos, within the extent of blocks [first, end),
// some of which are not local: it reads the whole extent from the backing
// (a chunk of the store, fetched whole anyway), makes its missing blocks
// local as Hydrate would (copy on read: neither this reader nor the
// hydration fetches them again), and answers from what it read, or from
// the data file for blocks that were already local (a writer's). The
// write goes to the page cache and is made durable later (persist), so
// the reader does not wait on the device. If the hydration or another
// reader is already fetching the extent, it waits for that instead.
//
// A reader that looks sequential (the extent before is local, or empty in
// the backing) reads ahead: the extents after this one that are not local
// and that no one is fetching, up to readAhead, come in the same read of
// the backing (one request a pack on S3, not one a chunk) and are made
// local with it. The hydration is then pointed past them, so it fetches
// further ahead in parallel.
func (v *Volume) readThrough(p []byte, pos, first, end int64) error {
	src, err := v.backingSource()
	if err != nil {
		return err
	}
	h, bs := v.hydr, v.blockSize
	per := max(hydrateExtent/bs, 1)
	e := first / per
	for {
		ok, wait, done := h.claimFetch(e)
		if ok {
			defer done()
			break
		}
		<-wait
		if h.allLocal(first, end) {
			return v.readData(p, pos)
		}
	}
	if h.allLocal(first, end) { // fetched between the caller's look and the claim
		return v.readData(p, pos)
	}
	size := v.size.Load()
	nb := nblocksFor(size, bs)
	winEnd := end // blocks [first, winEnd) are fetched
	if v.sequential(e, per, nb) {
		for k := e + 1; k < e+readAhead && k*per < nb; k++ {
			lo, hi := k*per, min((k+1)*per, nb)
			if h.allLocal(lo, hi) {
				break
			}
			ok, _, done := h.claimFetch(k)
			if !ok {
				break
			}
			defer done()
			winEnd = hi
		}
	}
	bufp := windowBufs.Get().(*[]byte)
	defer windowBufs.Put(bufp)
	buf := *bufp
	if int64(cap(buf)) < (winEnd-first)*bs {
		buf = directio.AlignedBuf(int((winEnd - first) * bs))
	}
	start := first * bs
	win := buf[:min(winEnd*bs, size)-start]
	ext := win[:min(end*bs, size)-start]
	if n, err := src.ReadAt(win, start); err != nil && !errors.Is(err, io.EOF) {
		if n < len(ext) {
			return err
		}
		// What failed is ahead of this reader (a damaged chunk, say):
		// the reader gets its bytes, and the extents from the failed one
		// on are left to whoever reads them, who gets the error.
		winEnd = max(end, (first+int64(n)/bs)/per*per)
		win = win[:min(winEnd*bs, size)-start]
	}
	wasLocal := make([]bool, end-first)
	if err := v.storeExtent(first, end, ext, true, wasLocal); err != nil {
		return err
	}
	h.next.Store((winEnd+per-1)/per + 1)
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
	// The extents read ahead; their claims go when this returns.
	for lo := end; lo < winEnd; lo += per {
		hi := min(lo+per, winEnd)
		if err := v.storeExtent(lo, hi, win[(lo-first)*bs:min(hi*bs, size)-start], true, nil); err != nil {
			return err
		}
	}
	return nil
}

// sequential reports whether a reader that needs extent e looks like it
// reads in order: the extent before is local, or holds no data in the
// backing (a reader that skips holes, as nbdcopy does, never reads it).
func (v *Volume) sequential(e, per, nb int64) bool {
	if e == 0 {
		return true
	}
	lo, hi := (e-1)*per, min(e*per, nb)
	if v.hydr.allLocal(lo, hi) {
		return true
	}
	m := v.backingAllocated()
	if m == nil {
		return false
	}
	bs := v.blockSize
	empty := true
	backingExtents(m.ranges, lo*bs, hi*bs, func(_ int64, x Extent) {
		if !x.Zero {
			empty = false
		}
	})
	return empty
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
	written := int64(0)
	if !allZero(blk) { // the data file is sparse: zeros need no write
		if _, err := v.data.WriteAt(blk, start); err != nil {
			return err
		}
		written = int64(len(blk))
	}
	if h.markLocal(b, b+1, written) {
		v.persistLater()
	}
	return nil
}

// Hydrate copies every block not yet local from the backing, then makes
// the volume standalone: the header forgets the backing. progress, if not
// nil, gets the blocks done and the total. It is safe to run beside
// readers and writers, and to run again after a crash.
//
// It works in batches of hydrateBatch extents (an extent is
// hydrateExtent bytes, a chunk of the store), HydrateWorkers of them in
// flight: the backing reads each run of missing extents of a batch at
// once (a snapshot reader fetches neighbouring chunks of a pack with one
// request), and their missing non-zero blocks go to the data file through
// the page cache, made durable in the background every persistEvery
// bytes. A backing that lists its data (Allocated, as a snapshot reader
// does) spares the reads of its zero extents. Extents a reader is
// fetching are left to it; batches go out from where a reader last
// fetched, so the hydration reads ahead of it.
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
	type batch struct{ first, end int64 } // extents
	next := make(chan batch)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(next)
		// Batches go out in order from a cursor that jumps to where a
		// reader last fetched (readThrough), then wraps around to the
		// extents it skipped; each extent goes out once.
		extents := (nb + per - 1) / per
		sent := NewBitmap(extents)
		cursor := int64(0)
		for left := extents; left > 0; {
			if err := gctx.Err(); err != nil {
				return err
			}
			if hint := v.hydr.next.Swap(0); hint > 0 && hint-1 < extents {
				cursor = hint - 1
			}
			if cursor = sent.nextClear(cursor); cursor == extents {
				cursor = sent.nextClear(0)
			}
			end := cursor + 1
			for end < extents && end-cursor < hydrateBatch && !sent.Test(end) {
				end++
			}
			sent.SetRange(cursor, end)
			left -= end - cursor
			select {
			case next <- batch{cursor, end}:
			case <-gctx.Done():
				return gctx.Err()
			}
			cursor = end
		}
		return nil
	})
	for range HydrateWorkers {
		g.Go(func() error {
			buf := directio.AlignedBuf(int(hydrateBatch * per * v.blockSize))
			for b := range next {
				if err := gctx.Err(); err != nil {
					return err
				}
				first, end := b.first*per, min(b.end*per, nb)
				if err := v.hydrateBatch(src, b.first, b.end, size, buf, withData); err != nil {
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
	if !v.hydr.allLocal(0, nb) {
		return errs.E(errs.Internal, "HydrationIncomplete", "blocks of the volume are still missing after its hydration")
	}
	// Durable bytes first, then the bits, then the header that drops the
	// backing: a crash between leaves a volume that hydrates again.
	v.hydr.persists.Wait()
	if err := v.persist(); err != nil {
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

// hydrateExtent is the unit of copy-on-read: the store's chunk size, so
// each fetch is whole chunks.
const hydrateExtent = 1 << 20

// hydrateBatch is how many extents a Hydrate worker takes at once. A
// backup's parallel workers fill a pack with chunks from a few MiB around
// each other, so 32 MiB of disk is about two packs read in few ranged
// reads (a 1 GiB disk: 90 reads in 32 MiB batches, 150 in 16 MiB ones,
// where one a chunk took 614).
const hydrateBatch = 32

// readAhead is how many extents a sequential reader fetches at once: a
// pack's worth, which it waits for before its own bytes come back.
const readAhead = 16

// HydrateWorkers is how many batches Hydrate copies at once (each holds a
// 32 MiB buffer). Enough to keep both the store's reads and the decoding
// busy on a 2-CPU machine; more only competes with the readers it is
// meant to read ahead of.
const HydrateWorkers = 4

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

// hydrateBatch brings extents [e0, e1) local. It claims the extents no
// one is fetching and not yet local, reads each run of those that hold
// data with one read of the backing, and stores them extent by extent.
// The backing never changes, so it is read without locks (storeExtent
// then takes them).
func (v *Volume) hydrateBatch(src io.ReaderAt, e0, e1, size int64, buf []byte, withData *Bitmap) error {
	h, bs := v.hydr, v.blockSize
	per := max(hydrateExtent/bs, 1)
	nb := nblocksFor(size, bs)
	blocks := func(e int64) (int64, int64) { return e * per, min((e+1)*per, nb) }
	hasData := func(e int64) bool {
		first, end := blocks(e)
		return withData == nil || withData.anySet(first, end)
	}
	// Until every extent is local: another's fetch may fail, and then
	// this one fetches it.
	for {
		var mine []int64             // the extents this call fetches
		var others []<-chan struct{} // fetches under way elsewhere
		dones := map[int64]func(){}
		for e := e0; e < e1; e++ {
			first, end := blocks(e)
			if h.allLocal(first, end) {
				continue
			}
			if ok, wait, done := h.claimFetch(e); ok {
				mine = append(mine, e)
				dones[e] = done
			} else {
				others = append(others, wait)
			}
		}
		if len(mine) == 0 && len(others) == 0 {
			return nil
		}
		err := v.fetchExtents(src, mine, dones, size, buf, hasData)
		for _, done := range dones { // those not stored, on an error
			done()
		}
		if err != nil {
			return err
		}
		for _, wait := range others {
			<-wait
		}
	}
}

// fetchExtents fetches the extents mine (ascending, claimed), each run of
// consecutive ones with one read of the backing, and stores them, calling
// and removing each one's done once it is local.
func (v *Volume) fetchExtents(src io.ReaderAt, mine []int64, dones map[int64]func(), size int64, buf []byte, hasData func(int64) bool) error {
	bs := v.blockSize
	per := max(hydrateExtent/bs, 1)
	nb := nblocksFor(size, bs)
	for i := 0; i < len(mine); {
		// A run: consecutive extents that all hold data (or all do not).
		j, data := i+1, hasData(mine[i])
		for j < len(mine) && mine[j] == mine[j-1]+1 && hasData(mine[j]) == data {
			j++
		}
		first := mine[i] * per
		end := min((mine[j-1]+1)*per, nb)
		start := first * bs
		p := buf[:min(end*bs, size)-start]
		if data {
			if _, err := src.ReadAt(p, start); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("hydrate blocks %d-%d: %w", first, end-1, err)
			}
		}
		for _, e := range mine[i:j] {
			lo, hi := e*per, min((e+1)*per, nb)
			if err := v.storeExtent(lo, hi, p[(lo-first)*bs:min((hi-first)*bs, int64(len(p)))], data, nil); err != nil {
				return err
			}
			dones[e]()
			delete(dones, e)
		}
		i = j
	}
	return nil
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
	written := int64(0)
	flush := func(b int64) error {
		if run < 0 {
			return nil
		}
		lo, hi := (run-first)*bs, min((b-first)*bs, int64(len(p)))
		run = -1
		written += hi - lo
		_, err := v.data.WriteAt(p[lo:hi], start+lo)
		return err
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
	if h.markLocal(first, end, written) {
		v.persistLater()
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
