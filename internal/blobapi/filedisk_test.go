package blobapi

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
)

// fileDisk is a real sparse disk: a file read and written with pread and
// pwrite, zeroed by punching holes and listed with SEEK_DATA/SEEK_HOLE, so
// the handler is tested against the same system calls a volume makes.
type fileDisk struct {
	f     *os.File
	size  int64
	sync  bool // Flush calls fdatasync; off only to measure what that costs
	clock clock.Clock

	mu       sync.Mutex
	gen      uint64
	modified time.Time
}

var (
	_ Disk      = (*fileDisk)(nil)
	_ Versioned = (*fileDisk)(nil)
)

func newFileDisk(tb testing.TB, size int64, c clock.Clock) *fileDisk {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(tb.TempDir(), "disk"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	return &fileDisk{f: f, size: size, sync: true, clock: c, modified: c.Now()}
}

func (d *fileDisk) Size() int64 { return d.size }

func (d *fileDisk) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }

func (d *fileDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, fmt.Errorf("write [%d,+%d) outside disk of %d", off, len(p), d.size)
	}
	n, err := d.f.WriteAt(p, off)
	d.touch()
	return n, err
}

func (d *fileDisk) Zero(off, n int64) error {
	err := unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	d.touch()
	return err
}

func (d *fileDisk) Flush() error {
	if !d.sync {
		return nil
	}
	return unix.Fdatasync(int(d.f.Fd()))
}

func (d *fileDisk) Allocated() ([]Range, error) {
	fd := int(d.f.Fd())
	var out []Range
	for off := int64(0); off < d.size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data at or after off
		}
		if err != nil {
			return nil, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, Range{Off: data, Len: hole - data})
		off = hole
	}
	return out, nil
}

func (d *fileDisk) Version() (string, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fmt.Sprintf("0x%016X", d.gen), d.modified
}

func (d *fileDisk) touch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	d.modified = d.clock.Now()
}

// diffDisk is a fileDisk that can answer Get Page Ranges with prevsnapshot by
// comparing itself, page by page, with a copy of its earlier content.
type diffDisk struct {
	*fileDisk
	snapshots map[string][]byte
}

var _ Differ = (*diffDisk)(nil)

func (d *diffDisk) snapshot(tb testing.TB, name string) {
	tb.Helper()
	b := make([]byte, d.size)
	if _, err := d.ReadAt(b, 0); err != nil {
		tb.Fatal(err)
	}
	d.snapshots[name] = b
}

func (d *diffDisk) ChangedSince(prev string) ([]Range, error) {
	old, ok := d.snapshots[prev]
	if !ok {
		return nil, errs.E(errs.Conflict, codePreviousSnapshotNotFound, "The previous snapshot is not found.")
	}
	cur := make([]byte, d.size)
	if _, err := d.ReadAt(cur, 0); err != nil {
		return nil, err
	}
	var out []Range
	for off := int64(0); off < d.size; off += PageSize {
		if !bytes.Equal(old[off:off+PageSize], cur[off:off+PageSize]) {
			out = append(out, Range{Off: off, Len: PageSize})
		}
	}
	return out, nil
}

// plainDisk hides the optional interfaces of the disk it wraps.
type plainDisk struct{ Disk }
