package chunk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/directio"
)

// Direct I/O for directory buckets. A backup writes each chunk once and
// nothing reads it back soon; a restore reads each chunk once. Through the
// page cache both cost a copy of every byte and a fresh page-cache page
// for it, and on the virtual machines we measured the page allocation,
// not the copy, was the larger part: writing chunks into the cache took
// half of a full backup's CPU (perf: copy_folio_from_iter_atomic). With
// O_DIRECT the device moves the bytes to or from coffer's own reused
// buffers and the cache is left to the data that is read again.
//
// fileblob hands its temporary file to WriterOptions.BeforeWrite and its
// open file to ReaderOptions.BeforeRead (the documented As hook for
// *os.File), so the directory backend stays gocloud's. The block-aligned
// prefix of a body goes with O_DIRECT (set with fcntl, then cleared);
// the tail of under 4 KiB goes through the cache. Direct and cached
// writes to different blocks of one file are coherent. A file system that
// refuses O_DIRECT (EINVAL) gets the cached path. Durability is unchanged:
// the data is on the device when the write returns, and the syncfs before
// an index commits the metadata (sizes, extents, renames) and flushes the
// device's cache.

// writeDirect writes body to the empty file f: the aligned prefix with
// O_DIRECT when body's memory is aligned, the rest through the cache.
func writeDirect(f *os.File, body []byte) error {
	if n := len(body) &^ (directio.Align - 1); n > 0 && directio.IsAligned(body) && directio.Set(f, true) == nil {
		_, err := f.Write(body[:n])
		if offErr := directio.Set(f, false); err == nil {
			err = offErr
		}
		switch {
		case err == nil:
			body = body[n:]
		case errors.Is(err, unix.EINVAL):
			// The file system took the flag but not the write: start
			// over through the cache.
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			if err := f.Truncate(0); err != nil {
				return err
			}
		default:
			return err
		}
	}
	_, err := f.Write(body)
	return err
}

// readDirect reads all size bytes of f into buf (capacity at least size
// rounded up to directio.Align, aligned), with O_DIRECT when it can, and
// returns them.
func readDirect(f *os.File, size int, buf []byte) ([]byte, error) {
	padded := (size + directio.Align - 1) &^ (directio.Align - 1)
	if size > 0 && cap(buf) >= padded && directio.IsAligned(buf[:1]) && directio.Set(f, true) == nil {
		// One pread of the padded length: it stops at end of file. (A
		// second call at the unaligned end, as os.File.ReadAt would make,
		// is EINVAL on some file systems.)
		n, err := unix.Pread(int(f.Fd()), buf[:padded], 0)
		if offErr := directio.Set(f, false); offErr != nil && err == nil {
			err = offErr
		}
		if err == nil && n == size {
			return buf[:size], nil
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return nil, err
		}
		// Refused, short, or the file is not the size it was: read it
		// plainly.
	}
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	n, err := f.ReadAt(buf[:size], 0)
	if n == size {
		return buf[:size], nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

// readRangeDirect reads bytes [off, off+n) of f: the aligned span around
// them with one O_DIRECT pread into buf when buf is aligned and has room,
// through the cache otherwise.
func readRangeDirect(f *os.File, off, n int64, buf []byte) ([]byte, error) {
	const a = directio.Align
	start := off &^ (a - 1)
	end := (off + n + a - 1) &^ (a - 1)
	if n > 0 && int64(cap(buf)) >= end-start && directio.IsAligned(buf[:1]) && directio.Set(f, true) == nil {
		got, err := unix.Pread(int(f.Fd()), buf[:end-start], start)
		if offErr := directio.Set(f, false); offErr != nil && err == nil {
			err = offErr
		}
		if err == nil && int64(got) >= off+n-start {
			return buf[off-start : off-start+n], nil
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return nil, err
		}
		// Refused or short: read plainly, which tells a short file apart.
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	got, err := f.ReadAt(buf[:n], off)
	if int64(got) == n {
		return buf[:n], nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("%s: %d of %d bytes at %d: %w", f.Name(), got, n, off, err)
}
