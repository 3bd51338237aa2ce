package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	serve "github.com/coffer-backup/coffer/internal/server"
)

// TestDiskFromSnapshotIsUsableAtOnce: a disk made from a snapshot is
// Succeeded and readable over NBD before it has hydrated, reads
// not-yet-local blocks from the chunk store, keeps writes made while it
// hydrates, survives a kill -9 mid-hydration, and ends byte-identical and
// standalone. The first server holds hydration back, so "before" is a
// state the test sees rather than a race it hopes to win.
func TestDiskFromSnapshotIsUsableAtOnce(t *testing.T) {
	requireTool(t, "qemu-io")
	t.Setenv(serve.HoldHydrationEnv, "1")
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	dir := t.TempDir()
	const size = 1 << 30
	img := writeImage(t, dir, "src.raw", size, map[int64]int64{0: 96 * mib, 500 * mib: 96 * mib, size - 8*mib: 8 * mib})
	if out, err := s.run("disk", "import", img, "-g", "rg", "--name", "src", "--subscription", sub); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	srcID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/src"
	snap := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s"
	s.mustSnapshot(admin, srcID, snap)

	copyID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/copy"
	h, _ := s.mustDo("PUT", copyID+computeAPI, admin, `{"location":"westus","properties":{"creationData":{"createOption":"Copy","sourceResourceId":"`+snap+`"}}}`, 202)
	if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
		t.Fatalf("copy: %v", st)
	}
	var shown struct {
		Properties struct{ UniqueID string } `json:"properties"`
	}
	_, body := s.mustDo("GET", copyID+computeAPI, admin, "", 200)
	if err := json.Unmarshal([]byte(body), &shown); err != nil || shown.Properties.UniqueID == "" {
		t.Fatalf("no uniqueId in %s: %v", body, err)
	}
	vol := s.volumeDir(shown.Properties.UniqueID)
	uri, _ := s.attach(admin, copyID)
	// Read a stretch that is in the middle of the data, and write into it.
	got := run(t, "qemu-io", "-f", "raw", "-c", "read -v 520M 512", uri)
	want, _ := os.ReadFile(img)
	if !strings.Contains(got, hexLine(want[520*mib:520*mib+16])) {
		t.Fatalf("first read of the new disk is not the snapshot's bytes:\n%s", got)
	}
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x77 510M 4k", "-c", "flush", uri)
	copy(want[510*mib:510*mib+4096], bytes.Repeat([]byte{0x77}, 4096))
	if backing(t, vol) == "" {
		t.Fatal("the disk hydrated although hydration was held: the read and write above did not show a disk in use before hydrating")
	}
	// Block status over NBD: what the snapshot holds as zeros reads as
	// zeros without a fetch, so nbdinfo and nbdcopy skip it on a disk that
	// has not hydrated a byte of it.
	zeros := zeroRanges(t, run(t, "nbdinfo", "--map", "--json", uri))
	wantZeros := [][2]int64{{96 * mib, 500 * mib}, {596 * mib, size - 8*mib}}
	if fmt.Sprint(zeros) != fmt.Sprint(wantZeros) {
		t.Fatalf("block status of the hydrating disk: zero ranges %v, want %v", zeros, wantZeros)
	}
	sparse := filepath.Join(dir, "sparse.raw")
	run(t, "nbdcopy", uri, sparse)
	if b, _ := os.ReadFile(sparse); !bytes.Equal(b, want) {
		t.Fatal("nbdcopy of the hydrating disk differs from the snapshot plus the write")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sparse, &st); err != nil || st.Blocks*512 > 2*(96+96+8)*mib {
		t.Fatalf("nbdcopy wrote %d bytes for 200 MiB of data: the zeros were not skipped (%v)", st.Blocks*512, err)
	}

	// Clients see how far it is: completionPercent, below 100 while held.
	_, body = s.mustDo("GET", copyID+computeAPI, admin, "", 200)
	if pct, ok := at(jsonOf(t, body), "properties", "completionPercent").(float64); !ok || pct >= 100 {
		t.Fatalf("completionPercent of a hydrating disk: %s", body)
	}

	// kill -9 mid-hydration; after a restart that lets it hydrate, it finishes.
	s.kill9()
	// The read above made its chunk local (copy on read), before any
	// hydration, and the kill did not lose it: the volume's own file holds it.
	local := make([]byte, mib)
	f, err := os.Open(filepath.Join(vol, "data"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(local, 520*mib)
	f.Close()
	if err != nil || !bytes.Equal(local, want[520*mib:521*mib]) {
		t.Fatalf("the chunk read at 520 MiB is not in the volume's data file after a kill -9 (%v)", err)
	}
	os.Unsetenv(serve.HoldHydrationEnv)
	s.start()
	admin = s.token()
	// Generous: 200 MiB to fetch, on a machine other tests load too.
	deadline := time.Now().Add(3 * time.Minute)
	for backing(t, vol) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the disk never finished hydrating")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, body = s.mustDo("GET", copyID+computeAPI, admin, "", 200)
	if strings.Contains(body, "completionPercent") {
		t.Fatalf("a hydrated disk still shows progress: %s", body)
	}
	s.mustDo("POST", copyID+"/detach"+computeAPI, admin, "{}", 200)
	out := filepath.Join(dir, "copy.raw")
	if o, err := s.run("disk", "export", copyID, out); err != nil {
		t.Fatalf("export: %v\n%s", err, o)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, want) {
		t.Fatal("the hydrated disk differs from the snapshot plus the write made while hydrating")
	}
	// Standalone: deleting the snapshot does not touch it.
	h, _ = s.mustDo("DELETE", snap+computeAPI, admin, "", 202)
	s.waitOperation(admin, h.Get("Azure-AsyncOperation"))
	out2 := filepath.Join(dir, "copy2.raw")
	if o, err := s.run("disk", "export", copyID, out2); err != nil {
		t.Fatalf("export after the snapshot went: %v\n%s", err, o)
	}
	cmpFiles(t, out, out2)
}

// zeroRanges is where `nbdinfo --map --json` reports zeros, adjacent
// extents merged.
func zeroRanges(t *testing.T, mapJSON string) [][2]int64 {
	t.Helper()
	var extents []struct {
		Offset, Length int64
		Type           int
	}
	if err := json.Unmarshal([]byte(mapJSON), &extents); err != nil {
		t.Fatalf("nbdinfo --map: %v\n%s", err, mapJSON)
	}
	var out [][2]int64
	for _, e := range extents {
		if e.Type&2 == 0 {
			continue
		}
		if n := len(out); n > 0 && out[n-1][1] == e.Offset {
			out[n-1][1] += e.Length
			continue
		}
		out = append(out, [2]int64{e.Offset, e.Offset + e.Length})
	}
	return out
}

// backing is what the volume in dir still reads its missing blocks from;
// volume.json names it until hydration has made every block local
// (docs/volume-format.md).
func backing(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "volume.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Backing string `json:"backing"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("volume.json: %v", err)
	}
	return h.Backing
}

// hexLine is how qemu-io -v prints the first 16 bytes of a read.
func hexLine(p []byte) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for i, c := range p {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}
