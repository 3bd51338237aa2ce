package nbd

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// These tests drive the server with real NBD clients from Debian
// (qemu-utils, libnbd-bin, fio). See requireTool for when they skip.

// randomImage writes a file of size bytes: random data with zero runs in
// between, so clients exercise both WRITE and WRITE_ZEROES/TRIM.
func randomImage(t *testing.T, size int64) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), 99))
	for off := int64(0); off < size; off += MiB {
		if rng.IntN(3) == 0 {
			continue // leave a zero MiB
		}
		for i := off; i < off+MiB; i += 8 {
			v := rng.Uint64()
			for k := range int64(8) {
				b[i+k] = byte(v >> (8 * k))
			}
		}
	}
	name := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, b
}

func sameFile(t *testing.T, name string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s (%d bytes) differs from the source (%d bytes)", name, len(got), len(want))
	}
}

func sameVolume(t *testing.T, ts *testServer, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := ts.vol.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("volume content differs from the source")
	}
}

func TestQemuImgConvertRoundTrip(t *testing.T) {
	requireTool(t, "qemu-img")
	const size = 48 * MiB
	ts := startServer(t, size)
	src, want := randomImage(t, size)
	mustRun(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, ts.uri("disk"))
	sameVolume(t, ts, want)
	out := filepath.Join(t.TempDir(), "out.raw")
	mustRun(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", ts.uri("disk"), out)
	sameFile(t, out, want)
	// Blocks the copy wrote are tracked.
	if ts.vol.Changed().Count() == 0 {
		t.Fatal("no changed blocks after a full copy")
	}
}

func TestNbdcopyBothWays(t *testing.T) {
	requireTool(t, "nbdcopy")
	for _, conns := range []int{1, 4} {
		t.Run("connections="+strconv.Itoa(conns), func(t *testing.T) {
			const size = 64 * MiB
			ts := startServer(t, size)
			src, want := randomImage(t, size)
			c := "--connections=" + strconv.Itoa(conns)
			mustRun(t, "nbdcopy", c, "--requests=16", src, ts.uri("disk"))
			sameVolume(t, ts, want)
			out := filepath.Join(t.TempDir(), "out.raw")
			mustRun(t, "nbdcopy", c, "--requests=16", ts.uri("disk"), out)
			sameFile(t, out, want)
		})
	}
}

func TestNbdinfo(t *testing.T) {
	requireTool(t, "nbdinfo")
	const size = 40 * MiB
	ts := startServer(t, size)

	var info struct {
		Exports []struct {
			Name       string `json:"export-name"`
			Size       int64  `json:"export-size"`
			MultiConn  bool   `json:"can_multi_conn"`
			Flush      bool   `json:"can_flush"`
			FUA        bool   `json:"can_fua"`
			Trim       bool   `json:"can_trim"`
			Zero       bool   `json:"can_zero"`
			ReadOnly   bool   `json:"is_read_only"`
			MaxBlock   int64  `json:"block_size_maximum"`
			Preferred  int64  `json:"block_size_preferred"`
			Structured bool   `json:"structured"`
		} `json:"exports"`
	}
	out := mustRun(t, "nbdinfo", "--json", ts.uri("disk"))
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	if len(info.Exports) != 1 {
		t.Fatalf("nbdinfo: %s", out)
	}
	e := info.Exports[0]
	if e.Size != size || !e.MultiConn || !e.Flush || !e.FUA || !e.Trim || !e.Zero || e.ReadOnly || e.MaxBlock != 32*MiB || e.Preferred != 4096 {
		t.Fatalf("nbdinfo reports %+v\n%s", e, out)
	}

	out = mustRun(t, "nbdinfo", "--json", ts.uri("ro"))
	if err := json.Unmarshal(out, &info); err != nil || !info.Exports[0].ReadOnly {
		t.Fatalf("read-only export: %v\n%s", err, out)
	}

	out = mustRun(t, "nbdinfo", "--list", "--json", "nbd://"+ts.addr)
	if err := json.Unmarshal(out, &info); err != nil || len(info.Exports) != 1 || info.Exports[0].Name != "disk" {
		t.Fatalf("nbdinfo --list: %v\n%s", err, out)
	}

	if out, err := run(t, "nbdinfo", ts.uri("no-such-disk")); err == nil {
		t.Fatalf("nbdinfo accepted an unknown export:\n%s", out)
	}
}

func TestQemuIoWrite(t *testing.T) {
	requireTool(t, "qemu-io")
	ts := startServer(t, 16*MiB)
	mustRun(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 64k", ts.uri("disk"))
	got := make([]byte, 64<<10+2)
	if _, err := ts.vol.ReadAt(got, MiB-1); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0 || got[len(got)-1] != 0 || !bytes.Equal(got[1:len(got)-1], bytes.Repeat([]byte{0xab}, 64<<10)) {
		t.Fatal("qemu-io write is not in the volume")
	}
	if !ts.vol.Changed().Test(MiB / ts.vol.BlockSize()) {
		t.Fatal("qemu-io write not tracked")
	}
	mustRun(t, "qemu-io", "-f", "raw", "-c", "read -P 0xab 1M 64k", "-c", "read -P 0 2M 64k", ts.uri("disk"))
	// Discard and write-zeroes through qemu.
	mustRun(t, "qemu-io", "-f", "raw", "-c", "discard 1M 32k", "-c", "write -z 1056k 32k", "-c", "read -P 0 1M 64k", ts.uri("disk"))
}

func TestFioRandomWriteVerify(t *testing.T) {
	requireTool(t, "fio")
	ts := startServer(t, 128*MiB)
	out := mustRun(t, "fio", "--name=coffer", "--ioengine=nbd", "--uri="+ts.uri("disk"),
		"--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=64m",
		"--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--output-format=json")
	var res struct {
		Jobs []struct {
			Error int `json:"error"`
			Write struct {
				IOPS  float64 `json:"iops"`
				Bytes int64   `json:"io_bytes"`
			} `json:"write"`
			Read struct {
				Bytes int64 `json:"io_bytes"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:] // fio may print notes before the JSON
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) != 1 {
		t.Fatalf("fio output: %v\n%s", err, out)
	}
	j := res.Jobs[0]
	if j.Error != 0 || j.Write.Bytes == 0 || j.Read.Bytes == 0 {
		t.Fatalf("fio job: %+v", j)
	}
	t.Logf("fio randwrite 4k iodepth 16 with crc32c verify: %.0f IOPS, %d MiB written, %d MiB verified",
		j.Write.IOPS, j.Write.Bytes>>20, j.Read.Bytes>>20)
}

// sparseServer serves a volume of size bytes with data only in the given
// ranges (filled with a pattern), and returns the expected bytes.
func sparseServer(t *testing.T, size int64, data ...[2]int64) (*testServer, []byte) {
	t.Helper()
	ts := startServer(t, size)
	want := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	for _, r := range data {
		p := want[r[0] : r[0]+r[1]]
		for i := range p {
			p[i] = byte(rng.Uint32()) | 1 // never zero, so the range stays data
		}
		if _, err := ts.vol.WriteAt(p, r[0]); err != nil {
			t.Fatal(err)
		}
	}
	return ts, want
}

func TestNbdinfoMap(t *testing.T) {
	requireTool(t, "nbdinfo")
	ts, _ := sparseServer(t, 64*MiB, [2]int64{5 * MiB, 2 * MiB}, [2]int64{40 * MiB, 64 << 10})
	type ext struct {
		Offset, Length int64
		Type           int
	}
	want := []ext{{0, 5 * MiB, 3}, {5 * MiB, 2 * MiB, 0}, {7 * MiB, 33 * MiB, 3}, {40 * MiB, 64 << 10, 0}, {40*MiB + 64<<10, 24*MiB - 64<<10, 3}}
	for _, export := range []string{"disk", "ro"} {
		out := mustRun(t, "nbdinfo", "--map", "--json", ts.uri(export))
		var got []ext
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("nbdinfo --map --json: %v\n%s", err, out)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: map %+v, want %+v", export, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: map %+v, want %+v", export, got, want)
			}
		}
	}
}

func TestQemuImgMap(t *testing.T) {
	requireTool(t, "qemu-img")
	ts, _ := sparseServer(t, 32*MiB, [2]int64{MiB, MiB})
	out := mustRun(t, "qemu-img", "map", "--output=json", "-f", "raw", ts.uri("disk"))
	var got []struct {
		Start, Length int64
		Zero, Data    bool
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	if len(got) != 3 || got[0].Length != MiB || !got[0].Zero || got[0].Data ||
		got[1].Start != MiB || got[1].Length != MiB || got[1].Zero || !got[1].Data ||
		got[2].Start != 2*MiB || !got[2].Zero || got[2].Data {
		t.Fatalf("qemu-img map:\n%s", out)
	}
}

// allocated is how many bytes of a file's blocks are on disk.
func allocated(t *testing.T, name string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestSparseCopies copies a 1 GiB export holding 6 MiB of data with
// nbdcopy and qemu-img convert: the copies must have the same bytes, stay
// sparse, and the clients must have read only the data (they learn where
// it is from block status; without it they read the whole GiB).
func TestSparseCopies(t *testing.T) {
	requireTool(t, "nbdcopy", "qemu-img")
	const size = 1 << 30
	ts, want := sparseServer(t, size, [2]int64{0, MiB}, [2]int64{300 * MiB, 4 * MiB}, [2]int64{size - MiB, MiB})
	const data = 6 * MiB
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cmd  func(out string) []string
	}{
		{"nbdcopy", func(out string) []string { return []string{"nbdcopy", ts.uri("disk"), out} }},
		{"qemu-img convert", func(out string) []string {
			return []string{"qemu-img", "convert", "-f", "raw", "-O", "raw", ts.uri("disk"), out}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.raw")
			before := ts.read.Load()
			args := tc.cmd(out)
			mustRun(t, args[0], args[1:]...)
			read := ts.read.Load() - before
			sameFile(t, out, want)
			a := allocated(t, out)
			t.Logf("read %d MiB through the export; the copy has %d MiB allocated", read>>20, a>>20)
			if a > 2*data || read > 2*data {
				t.Fatalf("read %d MiB and allocated %d MiB for %d MiB of data", read>>20, a>>20, data>>20)
			}
			if err := os.Remove(out); err != nil {
				t.Fatal(err)
			}
		})
	}
}
