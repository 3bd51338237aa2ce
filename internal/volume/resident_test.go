package volume

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// requireCachestat skips on a kernel without cachestat(2), where Resident
// is false everywhere by design.
func requireCachestat(t *testing.T) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Cachestat_t
	err = unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{Len: 4096}, &st, 0)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skip("no cachestat(2) on this kernel")
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestResident: a range is resident once its bytes are in the page cache,
// not while they are a hole or were evicted, and never outside the volume
// or while the volume still reads through its backing.
func TestResident(t *testing.T) {
	requireCachestat(t)
	const size = 8 << 20
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := Create(dir, size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Resident(0, 4096) {
		t.Fatal("an unwritten range (a hole) is resident")
	}
	if _, err := v.WriteAt(bytes.Repeat([]byte{7}, 1<<20), 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Range{{1 << 20, 4096}, {1<<20 + 100, 1000}, {2<<20 - 65536, 65536}, {1 << 20, 1 << 20}} {
		if !v.Resident(r.Off, r.Len) {
			t.Errorf("Resident(%d, %d) after writing it = false", r.Off, r.Len)
		}
	}
	if v.Resident(2<<20-4096, 8192) {
		t.Error("a range half written and half hole is resident")
	}
	for _, r := range []Range{{-4096, 4096}, {size - 4096, 8192}, {0, 0}, {size, 4096}} {
		if v.Resident(r.Off, r.Len) {
			t.Errorf("Resident(%d, %d) outside the volume = true", r.Off, r.Len)
		}
	}

	// Evicted (clean pages dropped), it is not resident until read again.
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, dataName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if v.Resident(1<<20, 4096) {
		t.Skip("the kernel kept the pages after FADV_DONTNEED; cannot test eviction here")
	}
	if _, err := v.ReadAt(make([]byte, 4096), 1<<20); err != nil {
		t.Fatal(err)
	}
	if !v.Resident(1<<20, 4096) {
		t.Error("a range just read is not resident")
	}
}

// TestResidentIsFalseWhileHydrating: a read of a volume with a backing may
// fetch from the store, so none of it is vouched for, local or not.
func TestResidentIsFalseWhileHydrating(t *testing.T) {
	requireCachestat(t)
	const size = 4 << 20
	v, err := CreateBacked(filepath.Join(t.TempDir(), "vol"), size, "snapshots/x")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	v.SetBacking(bytes.NewReader(make([]byte, size)))
	if _, err := v.WriteAt(bytes.Repeat([]byte{1}, 65536), 0); err != nil {
		t.Fatal(err)
	}
	if v.Resident(0, 4096) {
		t.Fatal("Resident is true on a volume still reading through its backing")
	}
}
