package volume

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ext4MaxFile is the largest file ext4 holds with 4 KiB blocks: 2^32-1
// blocks.
const ext4MaxFile = (1<<32 - 1) * 4096

// TestAzureMaximumSizes creates volumes of Azure's largest disk sizes in the
// test's temporary directory (sparse: they cost a few blocks), writes their
// first and last 4 KiB, flushes, reopens and reads them back. On ext4 a
// single data file cannot reach 16 TiB, so before the data file was split
// into segments Create failed here with "file too large"; on any file
// system, no file of the volume may pass ext4's limit.
func TestAzureMaximumSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"16384GiB", 16384 << 30},
		{"32767GiB", 32767 << 30}, // most SKUs' maximum
		{"65536GiB", 65536 << 30}, // Ultra and Premium SSD v2
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "v")
			v, err := Create(dir, tc.size)
			if err != nil {
				t.Fatalf("Create(%d GiB): %v", tc.size>>30, err)
			}
			first, last := bytes.Repeat([]byte{0xf1}, 4096), bytes.Repeat([]byte{0x1a}, 4096)
			if _, err := v.WriteAt(last, tc.size-4096); err != nil {
				t.Fatalf("write last 4 KiB: %v", err)
			}
			if _, err := v.WriteAt(first, 0); err != nil {
				t.Fatalf("write first 4 KiB: %v", err)
			}
			if err := v.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			v, err = Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if v.Size() != tc.size {
				t.Fatalf("Size after reopen = %d, want %d", v.Size(), tc.size)
			}
			got := make([]byte, 4096)
			for _, c := range []struct {
				off  int64
				want []byte
			}{{0, first}, {tc.size - 4096, last}, {tc.size - 8192, make([]byte, 4096)}, {tc.size / 2, make([]byte, 4096)}} {
				if _, err := v.ReadAt(got, c.off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, c.want) {
					t.Fatalf("bytes at %d differ after reopen", c.off)
				}
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > ext4MaxFile {
					t.Errorf("%s is %d bytes, more than ext4 holds", e.Name(), fi.Size())
				}
				if strings.HasPrefix(e.Name(), dataName) && fi.Size() > DefaultSegmentSize {
					t.Errorf("%s is %d bytes, more than a segment", e.Name(), fi.Size())
				}
			}
		})
	}
}
