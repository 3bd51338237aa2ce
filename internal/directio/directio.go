// Package directio holds what O_DIRECT I/O needs: buffers aligned to the
// block size and switching the flag on an open file. Chunk files and the
// hydration of new disks bypass the page cache with it: each byte is
// written once and not read again soon, and on the virtual machines we
// measured, allocating a fresh page-cache page for every byte cost more
// than the copy into it.
//
// The rules O_DIRECT imposes (open(2)): the buffer's address, the file
// offset and the length must all be multiples of the logical block size.
// Align, 4096, is a multiple of every logical block size in use. A file
// system that does not do direct I/O refuses the flag or the I/O with
// EINVAL; callers then fall back to the page cache.
package directio

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is the alignment of memory, offsets and lengths for O_DIRECT.
const Align = 4096

// AlignedBuf returns a slice of length 0 and capacity at least n whose first
// byte is Align-aligned.
func AlignedBuf(n int) []byte {
	b := make([]byte, n+Align)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) & (Align - 1)); r != 0 {
		off = Align - r
	}
	return b[off:off:len(b)]
}

// IsAligned reports whether p is non-empty and starts at an Align
// boundary.
func IsAligned(p []byte) bool {
	return len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))&(Align-1) == 0
}

// Usable reports whether a write or read of p at off may go with O_DIRECT.
func Usable(p []byte, off int64) bool {
	return IsAligned(p) && len(p)%Align == 0 && off%Align == 0
}

// Set turns O_DIRECT on or off for f.
func Set(f *os.File, on bool) error {
	fd := f.Fd()
	flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		flags |= unix.O_DIRECT
	} else {
		flags &^= unix.O_DIRECT
	}
	_, err = unix.FcntlInt(fd, unix.F_SETFL, flags)
	return err
}

// Open opens path read-write with O_DIRECT, or returns nil if the file
// system does not do direct I/O.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if err == nil {
		return f, nil
	}
	if pe, ok := err.(*os.PathError); ok && pe.Err == unix.EINVAL {
		return nil, nil
	}
	return nil, err
}
