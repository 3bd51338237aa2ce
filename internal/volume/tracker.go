package volume

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/errs"
)

// The change tracker keeps its state in three files, all mapped MAP_SHARED
// so that a store into the mapping is in the kernel's page cache the moment
// it happens and survives the death of the process:
//
//	cbt.meta  one page of little-endian uint64 words (see meta* below)
//	cbt.0     bitmap slot 0, one bit per tracking block
//	cbt.1     bitmap slot 1
//
// The slot of epoch e is e&1. The other slot is either empty or, when
// metaPending is 1, holds the set of an ended epoch that the consumer has not
// committed yet; those bits count as changed until CommitChanged.
//
// Slots live in separate files so Grow can extend each one and map it again
// without moving the other; the old mapping stays valid (same page cache) so
// a writer holding it is never stalled or broken.
const (
	metaMagic   = 0 // "COFFCBT1"
	metaVersion = 1
	metaBlock   = 2 // tracking block size in bytes
	metaEpoch   = 3 // current epoch; its slot is epoch&1
	metaPending = 4 // 1 if slot (epoch+1)&1 holds uncommitted bits
	metaState   = 5 // stateClean or stateOpen
	metaBootOff = 64
	metaBootLen = 36 // /proc/sys/kernel/random/boot_id without newline

	metaSize = 4096

	stateClean = 0
	stateOpen  = 1

	trackerVersion = 1
)

var magicWord = leUint64([]byte("COFFCBT1"))

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// slot is one mapping of a bitmap file. words aliases mem.
type slot struct {
	mem   []byte
	words []uint64
}

// paddedCount keeps the two in-flight counters on separate cache lines so
// writers in one epoch do not bounce the other's line.
type paddedCount struct {
	n atomic.Int64
	_ [56]byte
}

type tracker struct {
	blockShift uint
	dir        string

	metaFile *os.File
	meta     []byte
	metaw    []uint64

	files [2]*os.File
	slots [2]atomic.Pointer[slot]

	epoch    atomic.Uint64
	_        [56]byte
	inflight [2]paddedCount

	// mu serialises the cold paths: epoch cuts, commits, growth, copies.
	mu      sync.Mutex
	retired [][]byte // superseded mappings, unmapped at close
	nblocks int64    // guarded by mu; writers use the volume size instead
}

func slotName(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("cbt.%d", i)) }

// slotBytes is the mapped length for n blocks: whole pages, never zero.
func slotBytes(nblocks int64) int64 {
	b := wordsFor(nblocks) * 8
	return max((b+metaSize-1)/metaSize*metaSize, metaSize)
}

// createTracker writes fresh, empty tracking files.
func createTracker(dir string, blockSize, nblocks int64) error {
	meta := make([]byte, metaSize)
	put := func(i int, v uint64) {
		for k := 0; k < 8; k++ {
			meta[i*8+k] = byte(v >> (8 * k))
		}
	}
	put(metaMagic, magicWord)
	put(metaVersion, trackerVersion)
	put(metaBlock, uint64(blockSize))
	if err := writeFileSync(filepath.Join(dir, "cbt.meta"), meta); err != nil {
		return err
	}
	for i := range 2 {
		if err := createSparse(slotName(dir, i), slotBytes(nblocks)); err != nil {
			return err
		}
	}
	return nil
}

// createSparse makes path an empty (all holes) file of size bytes, durably:
// written, synced and closed, truncating whatever was there.
func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
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

func openTracker(dir string, blockSize, nblocks int64) (t *tracker, err error) {
	t = &tracker{dir: dir, blockShift: uint(log2(blockSize)), nblocks: nblocks}
	defer func() {
		if err != nil {
			t.unmapAll()
		}
	}()
	t.metaFile, err = os.OpenFile(filepath.Join(dir, "cbt.meta"), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	t.meta, err = unix.Mmap(int(t.metaFile.Fd()), 0, metaSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map cbt.meta: %w", err)
	}
	t.metaw = unsafe.Slice((*uint64)(unsafe.Pointer(&t.meta[0])), metaSize/8)
	if t.load(metaMagic) != magicWord || t.load(metaVersion) != trackerVersion || t.load(metaBlock) != uint64(blockSize) {
		return nil, errs.E(errs.Internal, "VolumeCorrupt", "change tracking header in %s does not match the volume", dir)
	}
	for i := range 2 {
		t.files[i], err = os.OpenFile(slotName(dir, i), os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		s, err := t.mapSlot(i, nblocks)
		if err != nil {
			return nil, err
		}
		t.slots[i].Store(s)
	}
	t.epoch.Store(t.load(metaEpoch))

	// A page-cache store survives the death of the process but not of the
	// machine. If the volume was not closed cleanly and the kernel has
	// rebooted since, data pages may have reached the disk while the bitmap
	// pages holding their bits did not, so the bitmap can no longer be
	// trusted: count every block as changed. "Larger than the truth" is
	// allowed, "smaller" never is.
	boot := bootID()
	if t.load(metaState) != stateClean && (boot == nil || !bytes.Equal(boot, t.meta[metaBootOff:metaBootOff+metaBootLen])) {
		s := t.slots[t.epoch.Load()&1].Load()
		for b := int64(0); b < nblocks; b += 64 {
			atomic.OrUint64(&s.words[b>>6], maskOf(0, min(64, nblocks-b)))
		}
		if err := unix.Msync(s.mem, unix.MS_SYNC); err != nil {
			return nil, fmt.Errorf("msync cbt: %w", err)
		}
	}
	copy(t.meta[metaBootOff:metaBootOff+metaBootLen], boot)
	t.store(metaState, stateOpen)
	if err := unix.Msync(t.meta, unix.MS_SYNC); err != nil {
		return nil, fmt.Errorf("msync cbt.meta: %w", err)
	}
	return t, nil
}

// bootID identifies the running kernel; nil if unknown (then every unclean
// open is treated as a reboot).
func bootID() []byte {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || len(b) < metaBootLen {
		return nil
	}
	return b[:metaBootLen]
}

func (t *tracker) load(i int) uint64     { return atomic.LoadUint64(&t.metaw[i]) }
func (t *tracker) store(i int, v uint64) { atomic.StoreUint64(&t.metaw[i], v) }

func (t *tracker) mapSlot(i int, nblocks int64) (*slot, error) {
	n := slotBytes(nblocks)
	fi, err := t.files[i].Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < n {
		if err := t.files[i].Truncate(n); err != nil {
			return nil, err
		}
	}
	mem, err := unix.Mmap(int(t.files[i].Fd()), 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", slotName(t.dir, i), err)
	}
	return &slot{mem: mem, words: unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n/8)}, nil
}

// enter registers an in-flight mutation and returns its epoch. The epoch is
// re-read after the counter is raised: if a cut happened in between, the
// mutation moves to the new epoch, so a cut that has seen the old counter
// drain knows no mutation can still land in the old set.
func (t *tracker) enter() uint64 {
	for {
		e := t.epoch.Load()
		c := &t.inflight[e&1].n
		c.Add(1)
		if t.epoch.Load() == e {
			return e
		}
		c.Add(-1)
	}
}

func (t *tracker) leave(e uint64) { t.inflight[e&1].n.Add(-1) }

// mark sets the bits of the blocks covering [off, off+n) in the set of epoch
// e. A plain load first skips the locked instruction when the bits are
// already set, the common case for a hot block.
func (t *tracker) mark(e uint64, off, n int64) {
	if n <= 0 {
		return
	}
	words := t.slots[e&1].Load().words
	first, last := off>>t.blockShift, (off+n-1)>>t.blockShift
	for b := first; b <= last; {
		bit := uint(b) & 63
		span := min(last-b+1, 64-int64(bit))
		mask := maskOf(bit, span)
		w := &words[b>>6]
		if atomic.LoadUint64(w)&mask != mask {
			atomic.OrUint64(w, mask)
		}
		b += span
	}
}

// cut ends the current epoch: see Volume.SwapChanged.
func (t *tracker) cut() (*Bitmap, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.epoch.Load()
	cur, other := t.slots[e&1].Load(), t.slots[(e+1)&1].Load()
	nw := wordsFor(t.nblocks)

	// Fold uncommitted bits of an earlier cut into the live set, so the new
	// cut reports everything since the last commit, then empty the other
	// slot to become the fresh set. Each step leaves every bit in at least
	// one slot the metadata says is live, so a crash between steps loses
	// nothing.
	if t.load(metaPending) == 1 {
		for i := range nw {
			if w := atomic.LoadUint64(&other.words[i]); w != 0 {
				atomic.OrUint64(&cur.words[i], w)
			}
		}
	}
	if err := t.clearSlot((e+1)&1, other); err != nil {
		return nil, 0, err
	}
	// Pending first, then the epoch: a crash between the two leaves an
	// empty slot marked pending, which is harmless; the other order could
	// orphan the ended set.
	t.store(metaPending, 1)
	t.store(metaEpoch, e+1)
	t.epoch.Store(e + 1)

	// Wait for mutations that entered the old epoch. They are pwrite calls
	// that are already running, so this is short.
	for spins := 0; t.inflight[e&1].n.Load() != 0; spins++ {
		if spins < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
	return t.copyWords(cur, nil), e, nil
}

// commit forgets the set of ended epoch e.
func (t *tracker) commit(e uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.epoch.Load() != e+1 || t.load(metaPending) != 1 {
		return errs.E(errs.Conflict, "ChangeEpochStale", "change epoch %d is not the last uncommitted cut", e)
	}
	if err := t.clearSlot(e&1, t.slots[e&1].Load()); err != nil {
		return err
	}
	t.store(metaPending, 0)
	return unix.Msync(t.meta, unix.MS_SYNC)
}

// clearSlot zeroes a slot nobody writes to. Punching the file releases its
// pages and drops them from every mapping; memclr is the fallback.
func (t *tracker) clearSlot(i uint64, s *slot) error {
	err := unix.Fallocate(int(t.files[i].Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, int64(len(s.mem)))
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("clear cbt slot: %w", err)
	}
	for i := range s.words {
		atomic.StoreUint64(&s.words[i], 0)
	}
	return nil
}

// changed returns the live set plus any uncommitted ended set.
func (t *tracker) changed() *Bitmap {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.epoch.Load()
	bm := t.copyWords(t.slots[e&1].Load(), nil)
	if t.load(metaPending) == 1 {
		t.copyWords(t.slots[(e+1)&1].Load(), bm)
	}
	return bm
}

// copyWords ORs slot s into dst (a new bitmap if nil). Caller holds mu.
func (t *tracker) copyWords(s *slot, dst *Bitmap) *Bitmap {
	if dst == nil {
		dst = NewBitmap(t.nblocks)
	}
	for i := range dst.words {
		dst.words[i] |= atomic.LoadUint64(&s.words[i])
	}
	return dst
}

// grow maps both slots again for nblocks. Old mappings stay valid until
// close because a writer may still hold one.
func (t *tracker) grow(nblocks int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if nblocks <= t.nblocks {
		return nil
	}
	for i := range 2 {
		if slotBytes(nblocks) == int64(len(t.slots[i].Load().mem)) {
			continue
		}
		s, err := t.mapSlot(i, nblocks)
		if err != nil {
			return err
		}
		t.retired = append(t.retired, t.slots[i].Swap(s).mem)
	}
	t.nblocks = nblocks
	return nil
}

// sync makes the tracking state durable on disk (for power loss; process
// death needs nothing).
func (t *tracker) sync() error {
	for i := range 2 {
		if err := unix.Msync(t.slots[i].Load().mem, unix.MS_SYNC); err != nil {
			return fmt.Errorf("msync cbt: %w", err)
		}
	}
	return unix.Msync(t.meta, unix.MS_SYNC)
}

// close marks the state clean and releases the mappings. The caller must
// have stopped all I/O.
func (t *tracker) close() error {
	err := t.sync()
	if err == nil {
		t.store(metaState, stateClean)
		err = unix.Msync(t.meta, unix.MS_SYNC)
	}
	t.unmapAll()
	return err
}

func (t *tracker) unmapAll() {
	for i := range 2 {
		if s := t.slots[i].Swap(nil); s != nil {
			_ = unix.Munmap(s.mem)
		}
		if t.files[i] != nil {
			_ = t.files[i].Close()
		}
	}
	for _, m := range t.retired {
		_ = unix.Munmap(m)
	}
	t.retired = nil
	if t.meta != nil {
		_ = unix.Munmap(t.meta)
		t.meta, t.metaw = nil, nil
	}
	if t.metaFile != nil {
		_ = t.metaFile.Close()
	}
}

func log2(v int64) int {
	n := 0
	for v > 1 {
		v >>= 1
		n++
	}
	return n
}
