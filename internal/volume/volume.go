package volume

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/errs"
)

const (
	// SectorSize is the unit a volume's size must be a multiple of.
	SectorSize = 512
	// DefaultBlockSize is the change-tracking granularity; doc.go says why.
	DefaultBlockSize = 64 << 10
	// MaxSize bounds a volume: Azure's largest managed disk is 32767 GiB
	// for most SKUs and 65536 GiB for Ultra Disk and Premium SSD v2.
	MaxSize = 64 << 40
	// DefaultSegmentSize is the size of each file the volume's bytes are
	// split into; doc.go ("Segments") says why.
	DefaultSegmentSize = 1 << 40
	// MinSegmentSize is the smallest segment size Create accepts: segment
	// boundaries then fall on hydration extents and O_DIRECT alignment.
	MinSegmentSize = 1 << 20

	headerName = "volume.json"
	dataName   = "data"
	formatName = "coffer-volume"
	// formatVersion is written for a volume whose bytes fit in its first
	// segment: one data file, as the first format had. segmentedVersion is
	// written once they do not, so a reader that knows only one data file
	// refuses the volume instead of reading zeros where segments 1... are.
	formatVersion    = 1
	segmentedVersion = 2
)

// Options are the choices made when a volume is created; Open reads them
// back from the volume. The zero value means the defaults.
type Options struct {
	// SegmentSize is the size of each data file: a power of two, at least
	// MinSegmentSize and the block size; 0 means DefaultSegmentSize.
	SegmentSize int64
}

// Range is a byte range of a volume.
type Range struct{ Off, Len int64 }

// header is volume.json, the volume's identity. It changes only on Create
// and Grow and is replaced atomically (write, fsync, rename, fsync dir).
type header struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	Size      int64  `json:"size"`
	BlockSize int64  `json:"blockSize"`
	// SegmentSize is the size of each data file. A header without it was
	// written before volumes had segments: its one data file is segment 0
	// of legacySegmentSize.
	SegmentSize int64 `json:"segmentSize,omitempty"`
	// Backing names the image a volume made by CreateBacked still reads
	// its unwritten blocks from, until Hydrate has copied them.
	Backing string `json:"backing,omitempty"`
}

// Volume is a thin block device backed by a directory. ReadAt, WriteAt,
// Zero, ZeroFill, Flush and the change-tracking calls are safe for
// concurrent use; Close must not race with them.
type Volume struct {
	dir         string
	data        *segmented
	size        atomic.Int64
	blockSize   int64
	segmentSize int64
	cbt         *tracker

	growMu sync.Mutex
	closed atomic.Bool

	// frozen is the live point-in-time view, nil when none (snapshot.go).
	frozen atomic.Pointer[Snapshot]
	// hydr is set for a volume still filling from a backing (hydrate.go).
	hydr   *hydration
	snapMu sync.Mutex
	// backingMap caches where the backing holds data (extents.go).
	backingMap atomic.Pointer[backingMap]
}

// Create makes a new empty volume of size bytes in dir, creating dir if
// needed. It refuses a dir that already holds a volume.
func Create(dir string, size int64) (*Volume, error) {
	return CreateWith(dir, size, Options{})
}

// CreateWith is Create with options other than the defaults.
func CreateWith(dir string, size int64, o Options) (*Volume, error) {
	return create(dir, size, DefaultBlockSize, o.SegmentSize)
}

// create takes the tracking block size so benchmarks can compare sizes.
func create(dir string, size, blockSize, segmentSize int64) (*Volume, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	if blockSize < SectorSize || blockSize&(blockSize-1) != 0 {
		return nil, errs.E(errs.Invalid, "InvalidBlockSize", "tracking block size %d is not a power of two >= 512", blockSize)
	}
	if segmentSize == 0 {
		segmentSize = DefaultSegmentSize
	}
	if !validSegmentSize(segmentSize, blockSize) {
		return nil, errs.E(errs.Invalid, "InvalidSegmentSize", "segment size %d is not a power of two of at least %d and the block size %d", segmentSize, int64(MinSegmentSize), blockSize)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, headerName)); err == nil {
		return nil, errs.E(errs.Conflict, "VolumeExists", "a volume already exists in %s", dir)
	}
	shift := uint(log2(segmentSize))
	if err := removeSegments(dir, dataName, 0); err != nil { // a crashed Create's
		return nil, err
	}
	if err := createSegments(dir, dataName, size, shift); err != nil {
		return nil, err
	}
	if err := createTracker(dir, blockSize, nblocksFor(size, blockSize)); err != nil {
		return nil, err
	}
	// The header is written last: a directory without it is not a volume,
	// so a crash during Create leaves nothing half-made that Open accepts.
	if err := writeHeader(dir, header{Size: size, BlockSize: blockSize, SegmentSize: segmentSize}); err != nil {
		return nil, err
	}
	return Open(dir)
}

func validSegmentSize(segmentSize, blockSize int64) bool {
	return segmentSize >= MinSegmentSize && segmentSize >= blockSize && segmentSize <= MaxSize && segmentSize&(segmentSize-1) == 0
}

// legacySegmentSize is the segment size of a volume made before segments:
// the default, or the next power of two when its one data file is larger,
// so that file is segment 0 whole and a Grow adds segments after it.
func legacySegmentSize(size int64) int64 {
	s := int64(DefaultSegmentSize)
	for s < size {
		s <<= 1
	}
	return s
}

func checkSize(size int64) error {
	if size <= 0 || size%SectorSize != 0 {
		return errs.E(errs.Invalid, "InvalidVolumeSize", "volume size %d is not a positive multiple of %d", size, SectorSize)
	}
	if size > MaxSize {
		return errs.E(errs.Invalid, "InvalidVolumeSize", "volume size %d exceeds the maximum %d", size, int64(MaxSize))
	}
	return nil
}

func nblocksFor(size, blockSize int64) int64 { return (size + blockSize - 1) / blockSize }

// Open opens the volume in dir. Only one Volume may have a directory open at
// a time, across processes; a second Open gets errs.Conflict.
func Open(dir string) (_ *Volume, err error) {
	h, err := readHeader(dir)
	if err != nil {
		return nil, err
	}
	shift := uint(log2(h.SegmentSize))
	data, err := openSegments(dir, dataName, h.Size, shift, false)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = data.close()
		}
	}()
	if err := unix.Flock(int(data.first().Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errs.E(errs.Conflict, "VolumeInUse", "volume %s is open elsewhere", dir)
		}
		return nil, fmt.Errorf("lock volume: %w", err)
	}
	// The header is the authority on size: a crash inside Grow can leave the
	// last segment at either length and segment files it does not count.
	if err := repairSegments(dir, dataName, h.Size, shift); err != nil {
		return nil, err
	}
	cbt, err := openTracker(dir, h.BlockSize, nblocksFor(h.Size, h.BlockSize))
	if err != nil {
		return nil, err
	}
	// A snapshot does not outlive its process: drop a crashed one's
	// pre-images. Its changes were never committed, so none are lost.
	if err := removeSegments(dir, cowName, 0); err != nil {
		cbt.close()
		return nil, err
	}
	v := &Volume{dir: dir, data: data, blockSize: h.BlockSize, segmentSize: h.SegmentSize, cbt: cbt}
	v.size.Store(h.Size)
	if h.Backing != "" {
		if v.hydr, err = openHydration(dir, h); err != nil {
			cbt.close()
			return nil, err
		}
	} else {
		os.Remove(filepath.Join(dir, hydratedName)) // left by a finished hydration
	}
	return v, nil
}

// Close flushes the volume, marks its tracking state clean and releases it.
func (v *Volume) Close() error {
	if v.closed.Swap(true) {
		return nil
	}
	if s := v.frozen.Load(); s != nil {
		s.Release()
	}
	err := v.Flush()
	if cerr := v.cbt.close(); err == nil {
		err = cerr
	}
	if v.hydr != nil {
		if cerr := v.hydr.close(); err == nil {
			err = cerr
		}
	}
	if cerr := v.data.close(); err == nil {
		err = cerr
	}
	return err
}

// readHeader reads and checks volume.json. A header from before segments
// comes back with its legacy segment size filled in.
func readHeader(dir string) (header, error) {
	var h header
	b, err := os.ReadFile(filepath.Join(dir, headerName))
	if errors.Is(err, fs.ErrNotExist) {
		return h, errs.E(errs.NotFound, "VolumeNotFound", "no volume in %s", dir).Wrap(err)
	}
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(b, &h); err != nil || h.Format != formatName {
		return h, errs.E(errs.Internal, "VolumeCorrupt", "bad volume header in %s", dir).Wrap(err)
	}
	if h.Version != formatVersion && h.Version != segmentedVersion {
		return h, errs.E(errs.Internal, "VolumeVersion", "volume format version %d is not supported", h.Version)
	}
	if checkSize(h.Size) != nil || h.BlockSize < SectorSize || h.BlockSize&(h.BlockSize-1) != 0 {
		return h, errs.E(errs.Internal, "VolumeCorrupt", "bad size or block size in %s", dir)
	}
	if h.SegmentSize == 0 && h.Version == formatVersion {
		h.SegmentSize = legacySegmentSize(h.Size)
	}
	if !validSegmentSize(h.SegmentSize, h.BlockSize) {
		return h, errs.E(errs.Internal, "VolumeCorrupt", "bad segment size %d in %s", h.SegmentSize, dir)
	}
	return h, nil
}

// header is the volume's header as it stands, for a rewrite.
func (v *Volume) header(size int64, backing string) header {
	return header{Size: size, BlockSize: v.blockSize, SegmentSize: v.segmentSize, Backing: backing}
}

// SegmentSize is the size of each file the volume's bytes are kept in.
func (v *Volume) SegmentSize() int64 { return v.segmentSize }

// Size is the volume's size in bytes.
func (v *Volume) Size() int64 { return v.size.Load() }

// BlockSize is the change-tracking granularity in bytes.
func (v *Volume) BlockSize() int64 { return v.blockSize }

// ReadOnly reports false: a Volume is always writable. It exists so a Volume
// is an nbd.Export; wrap it to export it read-only.
func (v *Volume) ReadOnly() bool { return false }

// checkRange refuses anything not wholly inside the volume. Unlike a file,
// a disk has no short read at the end: a request past it is the caller's
// mistake.
func (v *Volume) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > v.size.Load()-n {
		return errs.E(errs.Invalid, "OutOfRange", "range [%d, +%d) is outside the volume of %d bytes", off, n, v.size.Load())
	}
	return nil
}

// ReadAt reads len(p) bytes at off. Unwritten ranges read as zeros.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	return v.readLogical(p, off)
}

// Resident reports whether ReadAt of [off, off+n) would be served from
// memory, without waiting for a device or a backing store. It is a cheap
// hint (one system call), for a server that runs such reads on the thread
// that received them instead of handing them to another; it can be wrong
// the moment it returns, and is false where it cannot tell.
func (v *Volume) Resident(off, n int64) bool {
	if off < 0 || n <= 0 || off > v.size.Load()-n || v.hydrating() {
		return false
	}
	return v.data.cached(off, n)
}

// WriteAt writes p at off. The blocks are marked changed before the data is
// written, so a crash can only leave the changed set larger than the truth.
func (v *Volume) WriteAt(p []byte, off int64) (int, error) {
	if err := v.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := v.fill(off, int64(len(p))); err != nil {
		return 0, err
	}
	e := v.cbt.enter()
	defer v.cbt.leave(e)
	if s := v.frozen.Load(); s != nil {
		if err := s.preserve(off, int64(len(p))); err != nil {
			return 0, err
		}
	}
	v.cbt.mark(e, off, int64(len(p)))
	return v.data.WriteAt(p, off)
}

// Zero makes [off, off+length) read as zeros and releases its space (punches
// a hole). Partial filesystem blocks at the edges are zeroed in place.
func (v *Volume) Zero(off, length int64) error {
	return v.zero(off, length, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE)
}

// ZeroFill makes [off, off+length) read as zeros but keeps it allocated, for
// a client that asks for no holes (NBD_CMD_FLAG_NO_HOLE).
func (v *Volume) ZeroFill(off, length int64) error {
	return v.zero(off, length, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE)
}

func (v *Volume) zero(off, length int64, mode uint32) error {
	if err := v.checkRange(off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if err := v.fill(off, length); err != nil {
		return err
	}
	e := v.cbt.enter()
	defer v.cbt.leave(e)
	if s := v.frozen.Load(); s != nil {
		if err := s.preserve(off, length); err != nil {
			return err
		}
	}
	v.cbt.mark(e, off, length)
	err := v.data.fallocate(mode, off, length)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return v.writeZeros(off, length)
	}
	if err != nil {
		return fmt.Errorf("zero volume range: %w", err)
	}
	return nil
}

// writeZeros is the fallback for filesystems without fallocate modes.
func (v *Volume) writeZeros(off, length int64) error {
	buf := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(buf)))
		if _, err := v.data.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// Flush makes every completed write durable: data first, then the tracking
// state.
func (v *Volume) Flush() error {
	sync := v.data.sync
	if v.hydrating() {
		// The blocks hydrated since the last persist: a write that went to
		// one of them is durable only once the block is marked local in
		// the persisted bitmap, else a restart would read it from the
		// backing again.
		sync = v.persist
	}
	if err := sync(); err != nil {
		return fmt.Errorf("sync volume data: %w", err)
	}
	if v.hydrating() {
		if err := unix.Msync(v.hydr.mem, unix.MS_SYNC); err != nil {
			return fmt.Errorf("sync hydration bitmap: %w", err)
		}
	}
	return v.cbt.sync()
}

// Grow extends the volume to newSize. The new range reads as zeros and is
// not marked changed: a reader of an increment knows the new size and that
// unwritten space is zero. Shrinking is refused.
func (v *Volume) Grow(newSize int64) error {
	if err := checkSize(newSize); err != nil {
		return err
	}
	v.growMu.Lock()
	defer v.growMu.Unlock()
	old := v.size.Load()
	if newSize < old {
		return errs.E(errs.Invalid, "VolumeShrinkRefused", "volume size %d is smaller than the current %d; volumes only grow", newSize, old)
	}
	if newSize == old {
		return nil
	}
	// The hydration bitmap is sized for the volume it was made for, and a
	// header without the backing would read the missing blocks as zeros.
	if v.hydrating() {
		return errs.E(errs.Conflict, "VolumeHydrating", "the volume is still filling from %s; it can grow once that is done", v.hydr.name)
	}
	// Order matters: tracking slots first so a writer that sees the new
	// size finds room for its bits, then the data file's segments, then the
	// header (the commit point), then the size writers check against.
	if err := v.cbt.grow(nblocksFor(newSize, v.blockSize)); err != nil {
		return err
	}
	if err := v.data.grow(old, newSize); err != nil {
		return err
	}
	if err := writeHeader(v.dir, v.header(newSize, "")); err != nil {
		return err
	}
	v.size.Store(newSize)
	return nil
}

// Allocated returns the ranges of the volume that hold data, in order. A
// range not listed reads as zeros. Ranges are as the filesystem reports them
// (usually 4 KiB granular) and may include written zeros.
func (v *Volume) Allocated() ([]Range, error) {
	size := v.size.Load()
	if v.hydrating() { // the backing's blocks are not in the data file yet
		return []Range{{Off: 0, Len: size}}, nil
	}
	return v.data.allocated(size)
}

// Changed returns a copy of the set of tracking blocks written or zeroed
// since the last committed cut (see SwapChanged). Bit i covers bytes
// [i*BlockSize, (i+1)*BlockSize).
func (v *Volume) Changed() *Bitmap { return v.cbt.changed() }

// SwapChanged atomically ends the current change epoch and starts an empty
// one. It returns the blocks changed since the last committed cut and the
// number of the epoch it ended. A write that returned before SwapChanged was
// called is in the returned set; a write that starts after it returns is
// only in the new one; a write in flight during the call is in the returned
// set, and SwapChanged returns only once it has completed.
//
// The returned bits stay durable on disk, and in Changed, until
// CommitChanged(epoch): if the consumer (a snapshot) fails or the process
// dies first, the next SwapChanged reports them again.
func (v *Volume) SwapChanged() (*Bitmap, uint64, error) { return v.cbt.cut() }

// CommitChanged tells the volume that the set returned for epoch has been
// stored elsewhere and can be forgotten. Committing anything but the most
// recent cut is errs.Conflict (the later cut already includes its bits).
func (v *Volume) CommitChanged(epoch uint64) error { return v.cbt.commit(epoch) }

// writeHeader replaces volume.json atomically and durably. It sets the
// format and the version, which the size and segment size decide.
func writeHeader(dir string, h header) error {
	h.Format, h.Version = formatName, formatVersion
	if h.Size > h.SegmentSize {
		h.Version = segmentedVersion
	}
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, headerName+".tmp")
	if err := writeFileSync(tmp, append(b, '\n')); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, headerName)); err != nil {
		return err
	}
	return syncDir(dir)
}

func writeFileSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
