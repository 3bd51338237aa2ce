package e2e

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/testenv"
)

func requireTool(t *testing.T, name string) { t.Helper(); testenv.Tool(t, name) }

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

const computeAPI = "?api-version=2025-01-02"

// attach attaches a disk and returns its NBD URI and attachment id.
func (s *server) attach(token, diskID string) (string, string) {
	s.t.Helper()
	_, body := s.mustDo("POST", diskID+"/attach"+computeAPI, token, "{}", 200)
	var a struct{ AttachmentID, NbdURI string }
	json.Unmarshal([]byte(body), &a)
	if !strings.HasPrefix(a.NbdURI, "nbd://127.0.0.1:") || a.AttachmentID == "" {
		s.t.Fatalf("attach: %s", body)
	}
	return a.NbdURI, a.AttachmentID
}

// snapshotNow takes an incremental snapshot and returns once the PUT has
// answered, with the status monitor URL.
func (s *server) snapshotNow(token, diskID, snapID string) string {
	s.t.Helper()
	h, _ := s.mustDo("PUT", snapID+computeAPI, token, `{"location":"westus","properties":{"incremental":true,
		"creationData":{"createOption":"Copy","sourceResourceId":"`+diskID+`"}}}`, 202)
	return h.Get("Azure-AsyncOperation")
}

// mustSnapshot takes an incremental snapshot of diskID as snapID and
// fails the test unless it succeeds.
func (s *server) mustSnapshot(token, diskID, snapID string) {
	s.t.Helper()
	if st := s.waitOperation(token, s.snapshotNow(token, diskID, snapID)); st["status"] != "Succeeded" {
		s.t.Fatalf("snapshot %s of %s: %v", snapID, diskID, st)
	}
}

func (s *server) waitOperation(token, monitor string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		_, body := s.mustDo("GET", monitor, token, "", 200)
		m := jsonOf(s.t, body)
		if m["status"] != "InProgress" {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("operation still running: %s", body)
		}
		time.Sleep(wait)
	}
}

// restoreAndExport makes a disk from a snapshot and exports it to a file.
func (s *server) restoreAndExport(token, sub, snapID, name, file string) {
	s.t.Helper()
	diskID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/" + name
	h, _ := s.mustDo("PUT", diskID+computeAPI, token, `{"location":"westus","properties":{"creationData":{"createOption":"Copy","sourceResourceId":"`+snapID+`"}}}`, 202)
	if st := s.waitOperation(token, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
		s.t.Fatalf("restore %s: %v", name, st)
	}
	if out, err := s.run("disk", "export", diskID, file); err != nil {
		s.t.Fatalf("export: %v\n%s", err, out)
	}
}

// TestNBDAttach: a disk attached over NBD works with the real peers, one
// writer at a time, and stops working when detached.
func TestNBDAttach(t *testing.T) {
	for _, tool := range []string{"qemu-img", "nbdinfo", "nbdcopy", "qemu-io"} {
		requireTool(t, tool)
	}
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	diskID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/nbd1"
	s.createDisk(admin, diskID, "westus", 1)
	uri, attachment := s.attach(admin, diskID)
	_, body := s.mustDo("GET", diskID+computeAPI, admin, "", 200)
	if at(jsonOf(t, body), "properties", "diskState") != "Attached" {
		t.Fatalf("after attach: %s", body)
	}
	if info := run(t, "nbdinfo", "--json", uri); !strings.Contains(info, `"export-size": 1073741824`) {
		t.Fatalf("nbdinfo: %s", info)
	}
	dir := t.TempDir()
	img := writeImage(t, dir, "in.raw", 1<<30, map[int64]int64{0: 2 * mib, 300 * mib: 5 * mib, 1<<30 - 4096: 4096})
	run(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", img, uri)
	out := filepath.Join(dir, "out.raw")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out)
	cmpFiles(t, img, out)
	copyOut := filepath.Join(dir, "copy.raw")
	run(t, "nbdcopy", "--connections=4", uri, copyOut)
	cmpFiles(t, img, copyOut)
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 64k", "-c", "flush", uri)
	if got := run(t, "qemu-io", "-f", "raw", "-c", "read -P 0xab 1M 64k", uri); !strings.Contains(got, "read 65536/65536") {
		t.Fatalf("qemu-io read back: %s", got)
	}
	// One writer: a second attachment of a maxShares 1 disk is refused.
	if code, _, body := s.do("POST", diskID+"/attach"+computeAPI, admin, "{}"); code != 409 || !strings.Contains(body, "maxShares") {
		t.Fatalf("second attach: %d %s", code, body)
	}
	// An export name that no attachment has is refused.
	bogus := uri[:strings.LastIndex(uri, "/")+1] + strings.Repeat("0", 32)
	if o, err := exec.Command("nbdinfo", bogus).CombinedOutput(); err == nil {
		t.Fatalf("unknown export served: %s", o)
	}
	if code, _, body := s.do("DELETE", diskID+computeAPI, admin, ""); code != 409 {
		t.Fatalf("delete while attached: %d %s", code, body)
	}
	s.mustDo("POST", diskID+"/detach"+computeAPI, admin, `{"attachmentId":"`+attachment+`"}`, 200)
	if o, err := exec.Command("nbdinfo", uri).CombinedOutput(); err == nil {
		t.Fatalf("detached export still served: %s", o)
	}
	_, body = s.mustDo("GET", diskID+computeAPI, admin, "", 200)
	if at(jsonOf(t, body), "properties", "diskState") != "Unattached" {
		t.Fatalf("after detach: %s", body)
	}
	// A shared disk takes two attachments.
	shared := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/shared"
	s.mustDo("PUT", shared+computeAPI, admin, `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1,"maxShares":2}}`, 202)
	s.createDisk(admin, shared, "westus", 1)
	u1, _ := s.attach(admin, shared)
	u2, _ := s.attach(admin, shared)
	if u1 == u2 {
		t.Fatal("two attachments share an export name")
	}
	if code, _, _ := s.do("POST", shared+"/attach"+computeAPI, admin, "{}"); code != 409 {
		t.Fatalf("third attach of maxShares 2: %d", code)
	}
}

// TestSnapshotPointInTimeOverNBD: a write issued right after the snapshot
// PUT returns is not in the snapshot; a chain of ten incremental snapshots
// with 4 KiB and 4 MiB writes between them each restores exactly.
func TestSnapshotPointInTimeOverNBD(t *testing.T) {
	requireTool(t, "qemu-io")
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	const size = 64 * mib
	diskID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/live"
	s.mustDo("PUT", diskID+computeAPI, admin, `{"location":"westus","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":`+itoa(size)+`}}}`, 202)
	dir := t.TempDir()
	img := writeImage(t, dir, "base.raw", size, map[int64]int64{0: 8 * mib})
	if out, err := s.run("disk", "import", img, "-g", "rg", "--name", "live2", "--subscription", sub); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	diskID = "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/live2"
	uri, _ := s.attach(admin, diskID)

	// expected is what the disk holds, kept beside it.
	expected, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	var recent [][2]int64 // writes since the last snapshot
	write := func(off, n int64) {
		t.Helper()
		recent = append(recent, [2]int64{off, n})
		pattern := byte(rand.Intn(255) + 1)
		run(t, "qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P %d %d %d", pattern, off, n), uri)
		copy(expected[off:off+n], bytes.Repeat([]byte{pattern}, int(n)))
	}

	// Point in time: the write after the PUT's answer is not in it.
	write(1*mib, 64*1024)
	want := append([]byte(nil), expected...)
	snap0 := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/pit"
	monitor := s.snapshotNow(admin, diskID, snap0)
	write(1*mib, 64*1024) // same place, new pattern
	write(40*mib, 4096)
	if st := s.waitOperation(admin, monitor); st["status"] != "Succeeded" {
		t.Fatalf("snapshot: %v", st)
	}
	got := filepath.Join(dir, "pit.raw")
	s.restoreAndExport(admin, sub, snap0, "pit-disk", got)
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
		t.Fatal("a write issued after the snapshot PUT returned is in the snapshot")
	}

	// A chain of ten, each restored and compared.
	rng := rand.New(rand.NewSource(7))
	for i := 1; i <= 10; i++ {
		recent = nil
		for w := 0; w < 3; w++ {
			write(rng.Int63n(size/4096)*4096, 4096)
		}
		write(rng.Int63n(size/(4*mib))*4*mib, 4*mib)
		want := append([]byte(nil), expected...)
		snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/chain%d", sub, i)
		if st := s.waitOperation(admin, s.snapshotNow(admin, diskID, snap)); st["status"] != "Succeeded" {
			t.Fatalf("snapshot %d: %v", i, st)
		}
		if i%3 == 1 || i == 10 { // restore a spread of them; all are compared below after deletes
			got := filepath.Join(dir, fmt.Sprintf("chain%d.raw", i))
			s.restoreAndExport(admin, sub, snap, fmt.Sprintf("chain%d-disk", i), got)
			if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
				t.Fatalf("snapshot %d does not restore to the disk as it was", i)
			}
		}
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("want%d.raw", i)), want, 0o600)
	}
	// The changed-block API between snapshots 9 and 10 lists exactly the
	// chunks written in between.
	sas := func(i int) string {
		snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/chain%d", sub, i)
		h, _ := s.mustDo("POST", snap+"/beginGetAccess"+computeAPI, admin, `{"access":"Read","durationInSeconds":600}`, 202)
		s.waitOperation(admin, h.Get("Azure-AsyncOperation"))
		_, body := s.mustDo("GET", h.Get("Location"), admin, "", 200)
		return at(jsonOf(t, body), "accessSAS").(string)
	}
	sas9, sas10 := sas(9), sas(10)
	req, _ := http.NewRequest("GET", sas10+"&comp=pagelist", nil)
	req.Header.Set("x-ms-previous-snapshot-url", sas9)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var diff struct {
		Ranges []struct{ Start, End int64 } `xml:"PageRange"`
	}
	err = xml.NewDecoder(resp.Body).Decode(&diff)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || len(diff.Ranges) == 0 {
		t.Fatalf("diff: %d %v %+v", resp.StatusCode, err, diff)
	}
	const chunkSize = 1 << 20
	for _, w := range recent {
		for c := w[0] / chunkSize; c <= (w[0]+w[1]-1)/chunkSize; c++ {
			found := false
			for _, r := range diff.Ranges {
				found = found || (r.Start <= c*chunkSize && r.End >= (c+1)*chunkSize-1)
			}
			if !found {
				t.Fatalf("diff %+v misses chunk %d written at %d+%d", diff.Ranges, c, w[0], w[1])
			}
		}
	}
	for _, r := range diff.Ranges {
		for c := r.Start / chunkSize; c <= r.End/chunkSize; c++ {
			hit := false
			for _, w := range recent {
				hit = hit || (w[0] < (c+1)*chunkSize && w[0]+w[1] > c*chunkSize)
			}
			if !hit {
				t.Fatalf("diff lists chunk %d, which nothing wrote between the snapshots", c)
			}
		}
	}
	for _, i := range []int{9, 10} {
		snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/chain%d", sub, i)
		s.mustDo("POST", snap+"/endGetAccess"+computeAPI, admin, "", 200)
	}

	// Deleting the first snapshots leaves the later ones whole.
	for i := 1; i <= 5; i++ {
		h, _ := s.mustDo("DELETE", fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/chain%d", sub, i)+computeAPI, admin, "", 202)
		s.waitOperation(admin, h.Get("Azure-AsyncOperation"))
	}
	for _, i := range []int{6, 8, 10} {
		snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg/providers/Microsoft.Compute/snapshots/chain%d", sub, i)
		got := filepath.Join(dir, fmt.Sprintf("late%d.raw", i))
		s.restoreAndExport(admin, sub, snap, fmt.Sprintf("late%d-disk", i), got)
		cmpFiles(t, filepath.Join(dir, fmt.Sprintf("want%d.raw", i)), got)
	}
}

// TestKill9DuringSnapshot: a snapshot whose upload is cut by kill -9 is
// absent after the restart and its operation Failed; flushed NBD writes
// survive, and the next incremental snapshot includes them.
func TestKill9DuringSnapshot(t *testing.T) {
	requireTool(t, "qemu-io")
	s := startServer(t, "", "--debug-operation-delay", "1500ms")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	diskID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/k9"
	s.createDisk(admin, diskID, "westus", 1)
	uri, _ := s.attach(admin, diskID)
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 8M 1M", "-c", "flush", uri)
	snap := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/cut"
	monitor := s.snapshotNow(admin, diskID, snap)
	opPath := monitor[strings.Index(monitor, "/subscriptions/"):]
	time.Sleep(300 * time.Millisecond)
	s.kill9()
	s.extra = nil
	s.start()
	admin = s.token()
	st := s.waitOperation(admin, s.endpoint+opPath)
	if st["status"] != "Failed" || at(st, "error", "code") != "OperationPreempted" {
		t.Fatalf("cut snapshot operation: %v", st)
	}
	s.mustDo("GET", snap+computeAPI, admin, "", 404)
	// The attachment survives the restart; the flushed write is there.
	newURI := "nbd://" + strings.TrimPrefix(s.endpointNBD(admin, diskID), "nbd://")
	if got := run(t, "qemu-io", "-f", "raw", "-c", "read -P 0x5a 8M 1M", newURI); !strings.Contains(got, "read 1048576/1048576") {
		t.Fatalf("flushed write lost: %s", got)
	}
	_ = uri
	// The next snapshot carries the write the cut one never stored.
	snap2 := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/after"
	s.mustSnapshot(admin, diskID, snap2)
	got := filepath.Join(t.TempDir(), "after.raw")
	s.restoreAndExport(admin, sub, snap2, "after-disk", got)
	b, _ := os.ReadFile(got)
	if !bytes.Equal(b[8*mib:9*mib], bytes.Repeat([]byte{0x5a}, mib)) {
		t.Fatal("the write before the crash is missing from the next snapshot")
	}
}

// endpointNBD re-attaches after a restart (the NBD port changed) and
// returns the new URI; the old attachment is detached first.
func (s *server) endpointNBD(token, diskID string) string {
	s.t.Helper()
	s.mustDo("POST", diskID+"/detach"+computeAPI, token, "{}", 200)
	uri, _ := s.attach(token, diskID)
	return uri
}
