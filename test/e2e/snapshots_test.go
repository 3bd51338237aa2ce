package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/coffer-backup/coffer/internal/chunk"
)

// writeImage makes a sparse image of size with random data at the given
// ranges and returns its path.
func writeImage(t *testing.T, dir, name string, size int64, data map[int64]int64) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, n := range data {
		if _, err := f.WriteAt(randomBytes(t, int(n)), off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func cmpFiles(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cmp %s %s: %v\n%s", filepath.Base(a), filepath.Base(b), err, out)
	}
}

func chunkObjects(t *testing.T, dataDir string) int {
	t.Helper()
	n := 0
	store := openChunks(t, dataDir)
	defer store.Close()
	count := func(chunk.Info) error { n++; return nil }
	if err := store.List(t.Context(), count); err != nil {
		t.Fatal(err)
	}
	if err := store.ListPacks(t.Context(), func(p chunk.PackInfo) error { n += len(p.Chunks); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// openChunks opens the chunk store of a data directory beside the server
// that writes it, as coffer verify does, to find chunks in packs.
func openChunks(t *testing.T, dataDir string) *chunk.Store {
	t.Helper()
	store, err := chunk.Open(t.Context(), "", dataDir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// TestSnapshotsSDK: incremental snapshots of a disk through the official
// armcompute client, disks made from them byte-identical, the changed-block
// list between two snapshots, deletion and garbage collection, verify.
func TestSnapshotsSDK(t *testing.T) {
	s := startServer(t, "", "--gc-interval", "300ms", "--gc-grace", "1ms")
	ctx := context.Background()
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "disks")
	s.createGroup(admin, sub, "snaps")
	dir := t.TempDir()
	const size = 48 * mib
	img := writeImage(t, dir, "a.raw", size, map[int64]int64{0: 3 * mib, 9*mib + 4096: 70000, 30 * mib: 5 * mib})
	if out, err := s.run("disk", "import", img, "-g", "disks", "--name", "src", "--subscription", sub); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	diskID := "/subscriptions/" + sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/src"
	cred, opts := s.sdk(admin)
	snaps, err := armcompute.NewSnapshotsClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	disks, _ := armcompute.NewDisksClient(sub, cred, opts)
	take := func(name string, incremental bool) armcompute.Snapshot {
		t.Helper()
		p, err := snaps.BeginCreateOrUpdate(ctx, "snaps", name, armcompute.Snapshot{
			Location: to.Ptr("westus"),
			Properties: &armcompute.SnapshotProperties{
				CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(diskID)},
				Incremental:  to.Ptr(incremental),
			},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.PollUntilDone(ctx, fastPoll)
		if err != nil {
			t.Fatal(err)
		}
		return res.Snapshot
	}
	first := take("snap1", true)
	src, err := disks.Get(ctx, "disks", "src", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := first.Properties
	if !*p.Incremental || p.IncrementalSnapshotFamilyID == nil || *p.CreationData.SourceUniqueID != *src.Properties.UniqueID ||
		*p.CreationData.SourceResourceID != diskID || *p.CompletionPercent != 100 || *p.DiskSizeBytes != size ||
		*p.ProvisioningState != "Succeeded" || p.TimeCreated == nil {
		t.Fatalf("snapshot: %+v", p)
	}
	up, err := snaps.BeginUpdate(ctx, "snaps", "snap1", armcompute.SnapshotUpdate{Tags: map[string]*string{"keep": to.Ptr("yes")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := up.PollUntilDone(ctx, fastPoll)
	if err != nil || tagged.Tags["keep"] == nil || *tagged.Tags["keep"] != "yes" || *tagged.Properties.Incremental != true {
		t.Fatalf("tag update: %+v %v", tagged.Snapshot, err)
	}
	full := take("full1", false)
	if *full.Properties.Incremental || full.Properties.IncrementalSnapshotFamilyID != nil {
		t.Fatalf("full snapshot: %+v", full.Properties)
	}

	// A disk made from the snapshot equals the source byte for byte.
	restore := func(disk, snap string) string {
		t.Helper()
		p, err := disks.BeginCreateOrUpdate(ctx, "disks", disk, armcompute.Disk{
			Location: to.Ptr("westus"),
			Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
				CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr("/subscriptions/" + sub + "/resourceGroups/snaps/providers/Microsoft.Compute/snapshots/" + snap)}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := p.PollUntilDone(ctx, fastPoll)
		if err != nil {
			t.Fatal(err)
		}
		if *d.Properties.CreationData.CreateOption != armcompute.DiskCreateOptionCopy || *d.Properties.DiskSizeBytes != size {
			t.Fatalf("restored disk: %+v", d.Properties)
		}
		out := filepath.Join(dir, disk+".raw")
		if o, err := s.run("disk", "export", "/subscriptions/"+sub+"/resourceGroups/disks/providers/Microsoft.Compute/disks/"+disk, out); err != nil {
			t.Fatalf("export: %v\n%s", err, o)
		}
		return out
	}
	cmpFiles(t, img, restore("from-snap1", "snap1"))
	cmpFiles(t, img, restore("from-full1", "full1"))

	// A second image of the same size, changed in a few places, is
	// uploaded as another disk; snapshots of each disk form their own family.
	if _, err := snaps.BeginCreateOrUpdate(ctx, "snaps", "bad", armcompute.Snapshot{Location: to.Ptr("eastus"),
		Properties: &armcompute.SnapshotProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(diskID)}}}, nil); !hasStatus(err, 400, "InvalidParameter") {
		t.Fatalf("snapshot in another region: %v", err)
	}

	// The changed-block API: a Read SAS on the later snapshot, with the
	// earlier one's SAS as x-ms-previous-snapshot-url. Same bytes: no ranges.
	second := take("snap2", true)
	if *second.Properties.IncrementalSnapshotFamilyID != *first.Properties.IncrementalSnapshotFamilyID {
		t.Fatal("two snapshots of one disk are in different families")
	}
	sas := func(name string) string {
		t.Helper()
		p, err := snaps.BeginGrantAccess(ctx, "snaps", name, armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr[int32](600)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.PollUntilDone(ctx, fastPoll)
		if err != nil {
			t.Fatal(err)
		}
		return *res.AccessSAS
	}
	sas1, sas2 := sas("snap1"), sas("snap2")
	pc := s.pageClient(t, sas2)
	pager := pc.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: to.Ptr(sas1)})
	changed := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		changed += len(page.PageRange)
	}
	if changed != 0 {
		t.Fatalf("snapshots of unchanged bytes differ in %d ranges", changed)
	}
	// Every other form of the diff gets an answer, never a dropped
	// connection; a previous-snapshot URL is checked like a SAS.
	u1, _ := url.Parse(sas1)
	q1 := u1.Query()
	q1.Set("rid", *second.ID) // another snapshot's id under snap1's signature
	u1.RawQuery = q1.Encode()
	for _, tc := range []struct {
		name, query, header string
		status              int
		code                string
	}{
		{"an Azure blob snapshot time", "&prevsnapshot=2021-01-01T00:00:00.0000000Z", "", 409, "PreviousSnapshotNotFound"},
		{"a garbage prevsnapshot", "&prevsnapshot=garbage", "", 409, "PreviousSnapshotNotFound"},
		{"a garbage previous-snapshot URL", "", "garbage", 400, "InvalidHeaderValue"},
		{"a forged previous-snapshot URL", "", u1.String(), 403, "CannotVerifyCopySource"},
	} {
		req, _ := http.NewRequest(http.MethodGet, sas2+"&comp=pagelist"+tc.query, nil)
		if tc.header != "" {
			req.Header.Set("x-ms-previous-snapshot-url", tc.header)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), "<Code>"+tc.code+"</Code>") {
			t.Fatalf("%s: %d %s, want %d %s", tc.name, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	// Reading the snapshot through its SAS gives the image's bytes.
	code, _, body := s.do(http.MethodGet, sas2, "", "")
	want, _ := os.ReadFile(img)
	if code != 200 || body != string(want) {
		t.Fatalf("snapshot SAS read: %d, %d bytes", code, len(body))
	}
	if _, err := snaps.BeginDelete(ctx, "snaps", "snap1", nil); !hasStatus(err, 409, "OperationNotAllowed") {
		t.Fatalf("deleting a snapshot with an active SAS: %v", err)
	}
	for _, n := range []string{"snap1", "snap2"} {
		p, err := snaps.BeginRevokeAccess(ctx, "snaps", n, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, fastPoll); err != nil {
			t.Fatal(err)
		}
	}

	// Verify finds nothing wrong while the server runs.
	if out, err := exec.Command(binary, "verify", "--data-dir", s.dataDir).CombinedOutput(); err != nil || !strings.Contains(string(out), "no damage found") {
		t.Fatalf("verify: %v\n%s", err, out)
	}

	// Deleting every snapshot and the disks made from them frees the chunks.
	before := chunkObjects(t, s.dataDir)
	if before == 0 {
		t.Fatal("no chunks stored")
	}
	for _, n := range []string{"snap1", "snap2", "full1"} {
		p, err := snaps.BeginDelete(ctx, "snaps", n, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, fastPoll); err != nil {
			t.Fatal(err)
		}
	}
	pager2 := snaps.NewListByResourceGroupPager("snaps", nil)
	page, err := pager2.NextPage(ctx)
	if err != nil || len(page.Value) != 0 {
		t.Fatalf("snapshots left: %d %v", len(page.Value), err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for chunkObjects(t, s.dataDir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("garbage collection left %d of %d chunks", chunkObjects(t, s.dataDir), before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The restored disks do not depend on the deleted snapshots.
	out := filepath.Join(dir, "again.raw")
	if o, err := s.run("disk", "export", "/subscriptions/"+sub+"/resourceGroups/disks/providers/Microsoft.Compute/disks/from-snap1", out); err != nil {
		t.Fatalf("export: %v\n%s", err, o)
	}
	cmpFiles(t, img, out)
}

// TestVerifyFindsDamage: a flipped byte in a stored chunk is reported with
// the snapshots it breaks, and verify exits non-zero.
func TestVerifyFindsDamage(t *testing.T) {
	s := startServer(t, "", "--gc-interval", "0")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	img := writeImage(t, t.TempDir(), "v.raw", 24*mib, map[int64]int64{0: 8 * mib})
	if out, err := s.run("disk", "import", img, "-g", "rg", "--name", "d", "--subscription", sub); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	snapID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s1"
	code, h, body := s.do("PUT", snapID+"?api-version=2025-01-02", admin,
		`{"location":"westus","properties":{"incremental":true,"creationData":{"createOption":"Copy","sourceResourceId":"/subscriptions/`+sub+`/resourceGroups/rg/providers/Microsoft.Compute/disks/d"}}}`)
	if code != 202 {
		t.Fatalf("snapshot: %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, body := s.do("GET", h.Get("Azure-AsyncOperation"), admin, "")
		var st struct{ Status string }
		json.Unmarshal([]byte(body), &st)
		if st.Status == "Succeeded" {
			break
		}
		if st.Status == "Failed" || time.Now().After(deadline) {
			t.Fatalf("snapshot operation: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Flip one byte in the middle of one stored chunk.
	victim := firstChunk(t, s.dataDir)
	damageChunk(t, s.dataDir, victim)
	out, err := exec.Command(binary, "verify", "--data-dir", s.dataDir).CombinedOutput()
	if err == nil {
		t.Fatalf("verify passed over a damaged chunk:\n%s", out)
	}
	if !strings.Contains(string(out), "BAD CHUNK "+victim.String()) || !strings.Contains(string(out), "breaks "+snapID) {
		t.Fatalf("verify output does not name the chunk and the snapshot:\n%s", out)
	}
}

// TestGroupDeleteFreesSnapshots: deleting a resource group deletes its
// disks' volumes and its snapshots' indexes, so their chunks are collected.
func TestGroupDeleteFreesSnapshots(t *testing.T) {
	s := startServer(t, "", "--gc-interval", "300ms", "--gc-grace", "1ms")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "doomed")
	img := writeImage(t, t.TempDir(), "g.raw", 24*mib, map[int64]int64{0: 4 * mib})
	disk := s.importDisk(sub, "doomed", "d", img)
	snap := "/subscriptions/" + sub + "/resourceGroups/doomed/providers/Microsoft.Compute/snapshots/s"
	s.mustSnapshot(admin, disk, snap)
	if chunkObjects(t, s.dataDir) == 0 {
		t.Fatal("no chunks stored")
	}
	_, h, _ := s.do("DELETE", "/subscriptions/"+sub+"/resourceGroups/doomed?api-version=2021-04-01", admin, "")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, _ := s.do("GET", h.Get("Location"), admin, "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group delete still running: %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for chunkObjects(t, s.dataDir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks outlived their group", chunkObjects(t, s.dataDir))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.dataDir, "volumes")); len(entries) != 0 {
		t.Fatalf("volumes outlived their group: %d", len(entries))
	}
}

// TestScheduledVerifyReportsDamage: the server's own verify job logs damage.
func TestScheduledVerifyReportsDamage(t *testing.T) {
	s := startServer(t, "", "--verify-interval", "300ms", "--gc-interval", "0")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	img := writeImage(t, t.TempDir(), "v.raw", 24*mib, map[int64]int64{0: 2 * mib})
	disk := s.importDisk(sub, "rg", "d", img)
	s.mustSnapshot(admin, disk, "/subscriptions/"+sub+"/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.logs.String(), `"msg":"verify","component":"maintenance","checked":`) {
		if time.Now().After(deadline) {
			t.Fatal("the scheduled verify never ran")
		}
		time.Sleep(100 * time.Millisecond)
	}
	damageChunk(t, s.dataDir, firstChunk(t, s.dataDir))
	for !strings.Contains(s.logs.String(), `"msg":"verify found damage"`) {
		if time.Now().After(deadline) {
			t.Fatal("the scheduled verify did not report the damaged chunk")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firstChunk returns the digest of one stored chunk.
func firstChunk(t *testing.T, dataDir string) chunk.Digest {
	t.Helper()
	store := openChunks(t, dataDir)
	defer store.Close()
	var victim chunk.Digest
	found := func(d chunk.Digest) error { victim = d; return io.EOF }
	store.List(t.Context(), func(i chunk.Info) error { return found(i.Digest) })
	if victim.IsZero() {
		store.ListPacks(t.Context(), func(p chunk.PackInfo) error {
			if len(p.Chunks) == 0 {
				return nil
			}
			return found(p.Chunks[0].Digest)
		})
	}
	if victim.IsZero() {
		t.Fatal("no chunk stored")
	}
	return victim
}

// chunkStored reports whether a store opened now finds chunk d (a
// quarantined chunk is not found).
func chunkStored(t *testing.T, dataDir string, d chunk.Digest) bool {
	t.Helper()
	store := openChunks(t, dataDir)
	defer store.Close()
	ok, err := store.Has(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// importDisk uploads a raw image as a new disk with the CLI and returns its id.
func (s *server) importDisk(sub, group, name, image string) string {
	s.t.Helper()
	if out, err := s.run("disk", "import", image, "-g", group, "--name", name, "--subscription", sub); err != nil {
		s.t.Fatalf("import: %v\n%s", err, out)
	}
	return "/subscriptions/" + sub + "/resourceGroups/" + group + "/providers/Microsoft.Compute/disks/" + name
}

// TestIncrementalSnapshotLimit takes a disk to Azure's 500 incremental
// snapshots: the 501st is refused with 409 OperationNotAllowed and nothing
// is created, a full snapshot is still allowed, all 500 list and the newest
// restores, and deleting one makes room for one more.
func TestIncrementalSnapshotLimit(t *testing.T) {
	requireTool(t, "qemu-io")
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	group := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute"
	diskID := group + "/disks/d"
	s.createDisk(admin, diskID, "westus", 1)
	nbdURI, _ := s.attach(admin, diskID)
	snapID := func(i int) string { return group + "/snapshots/s" + itoa(i) }
	start := time.Now()
	for i := range 500 {
		if i%100 == 0 { // change the disk now and then: these are real incrementals
			if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P "+itoa(i%250+1)+" "+itoa(i*4096)+" 4096", nbdURI).CombinedOutput(); err != nil {
				t.Fatalf("qemu-io: %v\n%s", err, out)
			}
		}
		if st := s.waitOperation(admin, s.snapshotNow(admin, diskID, snapID(i))); st["status"] != "Succeeded" {
			t.Fatalf("snapshot %d: %v", i, st)
		}
	}
	t.Logf("500 incremental snapshots in %v", time.Since(start).Round(time.Millisecond))

	code, _, body := s.do("PUT", snapID(500)+computeAPI, admin, `{"location":"westus","properties":{"incremental":true,
		"creationData":{"createOption":"Copy","sourceResourceId":"`+diskID+`"}}}`)
	if code != 409 || at(jsonOf(t, body), "error", "code") != "OperationNotAllowed" || !strings.Contains(body, "500") {
		t.Fatalf("501st incremental snapshot: %d %s", code, body)
	}
	s.mustDo("GET", snapID(500)+computeAPI, admin, "", 404)
	h, _ := s.mustDo("PUT", group+"/snapshots/full"+computeAPI, admin, `{"location":"westus","properties":{"incremental":false,
		"creationData":{"createOption":"Copy","sourceResourceId":"`+diskID+`"}}}`, 202)
	if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
		t.Fatalf("full snapshot beside 500 incrementals: %v", st)
	}

	listed := 0
	for next := group + "/snapshots" + computeAPI; next != ""; {
		_, body := s.mustDo("GET", next, admin, "", 200)
		var page struct {
			Value []struct {
				Properties struct{ Incremental bool }
			}
			NextLink string
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Value {
			if v.Properties.Incremental {
				listed++
			}
		}
		next = page.NextLink
	}
	if listed != 500 {
		t.Fatalf("listed %d incremental snapshots, want 500", listed)
	}

	// The newest holds the last write; room is made by a delete.
	dir := t.TempDir()
	s.restoreAndExport(admin, sub, snapID(499), "r499", filepath.Join(dir, "r499.raw"))
	got, err := os.ReadFile(filepath.Join(dir, "r499.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if got[400*4096] != byte(400%250+1) || got[0] != 1 {
		t.Fatalf("snapshot 499 restored %d at the last write and %d at the first", got[400*4096], got[0])
	}
	h, _ = s.mustDo("DELETE", snapID(0)+computeAPI, admin, "", 202)
	if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
		t.Fatalf("delete: %v", st)
	}
	if st := s.waitOperation(admin, s.snapshotNow(admin, diskID, snapID(500))); st["status"] != "Succeeded" {
		t.Fatalf("snapshot after a delete: %v", st)
	}
}
