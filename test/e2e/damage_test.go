package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
)

// damageChunk flips one byte in the middle of chunk d's stored object,
// in its pack or its own file.
func damageChunk(t *testing.T, dataDir string, d chunk.Digest) {
	t.Helper()
	store := openChunks(t, dataDir)
	loc, err := store.Locate(t.Context(), d)
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dataDir, "blobs", filepath.FromSlash(loc.Key))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[loc.Off+loc.Len/2] ^= 0x40
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// verify runs coffer verify and returns its output and whether it passed.
func (s *server) verify() (string, bool) {
	out, err := exec.Command(binary, "verify", "--data-dir", s.dataDir).CombinedOutput()
	return string(out), err == nil
}

// TestDamagedChunkIsQuarantinedAndHealed: a backup of data whose chunk is
// damaged deduplicates onto it and is broken from birth; verify reports
// the damage and quarantines the chunk; the next snapshot, an incremental
// of the unchanged disk, stores it again; verify names that snapshot as
// the one that healed it; and a disk made from it is the data.
func TestDamagedChunkIsQuarantinedAndHealed(t *testing.T) {
	s := startServer(t, "", "--gc-interval", "0")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	dir := t.TempDir()
	img := writeImage(t, dir, "v.raw", 24*mib, map[int64]int64{0: 4 * mib})
	first := s.importDisk(sub, "rg", "first", img)
	snapID := func(name string) string {
		return "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/" + name
	}
	if st := s.waitOperation(admin, s.snapshotNow(admin, first, snapID("s1"))); st["status"] != "Succeeded" {
		t.Fatalf("snapshot s1: %v", st)
	}
	victim := firstChunk(t, s.dataDir)
	digest := victim.String()
	damageChunk(t, s.dataDir, victim)
	stored := chunkObjects(t, s.dataDir)

	// The same data on another disk: deduplicated onto the damage.
	second := s.importDisk(sub, "rg", "second", img)
	if st := s.waitOperation(admin, s.snapshotNow(admin, second, snapID("s2"))); st["status"] != "Succeeded" {
		t.Fatalf("snapshot s2: %v", st)
	}
	if n := chunkObjects(t, s.dataDir); n != stored {
		t.Fatalf("s2 stored %d new chunks; the reproduction expects it to deduplicate onto the damaged one", n-stored)
	}

	out, ok := s.verify()
	if ok || !strings.Contains(out, "BAD CHUNK "+digest+" (quarantined") ||
		!strings.Contains(out, "breaks "+snapID("s1")) || !strings.Contains(out, "breaks "+snapID("s2")) {
		t.Fatalf("verify after the damage does not report the chunk, quarantined, breaking s1 and s2:\n%s", out)
	}
	if chunkStored(t, s.dataDir, victim) {
		t.Fatal("the damaged chunk is still where dedup finds it")
	}
	if _, err := os.Stat(filepath.Join(s.dataDir, "blobs", "quarantine", digest[:4], digest)); err != nil {
		t.Fatalf("the damaged chunk is not in quarantine: %v", err)
	}

	// The next snapshot of the unchanged disk stores the chunk again.
	if st := s.waitOperation(admin, s.snapshotNow(admin, second, snapID("s3"))); st["status"] != "Succeeded" {
		t.Fatalf("snapshot s3: %v", st)
	}
	if !chunkStored(t, s.dataDir, victim) {
		t.Fatal("s3 did not store the quarantined chunk again")
	}
	out, ok = s.verify()
	if !ok || !strings.Contains(out, "HEALED CHUNK "+digest) || !strings.Contains(out, "stored again by "+snapID("s3")) {
		t.Fatalf("verify after s3 does not name s3 as the healer:\n%s", out)
	}

	// A disk made from s3 (and from s1, healed with it) is the data.
	for _, snap := range []string{"s3", "s1"} {
		diskID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/from-" + snap
		h, _ := s.mustDo("PUT", diskID+computeAPI, admin, `{"location":"westus","properties":{"creationData":{"createOption":"Copy","sourceResourceId":"`+snapID(snap)+`"}}}`, 202)
		if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
			t.Fatalf("disk from %s: %v", snap, st)
		}
		restored := filepath.Join(dir, snap+".raw")
		if o, err := s.run("disk", "export", diskID, restored); err != nil {
			t.Fatalf("export: %v\n%s", err, o)
		}
		cmpFiles(t, img, restored)
	}
}

// TestDiskFromDamagedSnapshot: a disk made from a snapshot with a damaged
// chunk stays Succeeded and usable, but its document, the JSON log and
// verify each name the disk and the damaged byte range; over NBD its
// undamaged ranges read back and the damaged range is an I/O error, not
// zeros.
func TestDiskFromDamagedSnapshot(t *testing.T) {
	requireTool(t, "qemu-io")
	s := startServer(t, "", "--gc-interval", "0")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "rg")
	img := writeImage(t, t.TempDir(), "v.raw", 24*mib, map[int64]int64{0: 4 * mib})
	src := s.importDisk(sub, "rg", "src", img)
	snap := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/snapshots/s1"
	s.mustSnapshot(admin, src, snap)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Damage the chunk of bytes [2 MiB, 3 MiB): its name is the BLAKE3 of
	// those bytes.
	bad := chunk.Sum(data[2*mib : 3*mib])
	damageChunk(t, s.dataDir, bad)

	copyID := "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/copy"
	h, _ := s.mustDo("PUT", copyID+computeAPI, admin, `{"location":"westus","properties":{"creationData":{"createOption":"Copy","sourceResourceId":"`+snap+`"}}}`, 202)
	if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
		t.Fatalf("copy: %v", st)
	}
	var shown struct {
		Properties struct {
			ProvisioningState string
			UniqueID          string
			HydrationError    *struct {
				Offset, Length int64
				ChunkDigest    string
			} `json:"cofferHydrationError"`
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := s.mustDo("GET", copyID+computeAPI, admin, "", 200)
		if err := json.Unmarshal([]byte(body), &shown); err != nil {
			t.Fatal(err)
		}
		if shown.Properties.HydrationError != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the disk never showed its damage: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if he := shown.Properties.HydrationError; he.Offset != 2*mib || he.Length != mib || he.ChunkDigest != bad.String() ||
		shown.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("the disk shows %+v (%s); want bytes [2 MiB, 3 MiB) of chunk %s, Succeeded", he, shown.Properties.ProvisioningState, bad)
	}

	logged := false
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, `"disk":"`+copyID+`"`) &&
			strings.Contains(line, fmt.Sprintf(`"offset":%d`, 2*mib)) {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("no JSON log line names the disk and the offset:\n%s", tail(s.logs.String(), 40))
	}

	out, ok := s.verify()
	want := fmt.Sprintf("breaks %s (hydrate/%s) at bytes %d-%d", copyID, shown.Properties.UniqueID, 2*mib, 3*mib-1)
	if ok || !strings.Contains(out, want) {
		t.Fatalf("verify does not say %q:\n%s", want, out)
	}

	uri, _ := s.attach(admin, copyID)
	got := run(t, "qemu-io", "-f", "raw", "-c", "read -v 1M 512", "-c", "read -v 3M 512", uri)
	if !strings.Contains(got, hexLine(data[mib:mib+16])) || !strings.Contains(got, hexLine(data[3*mib:3*mib+16])) {
		t.Fatalf("undamaged ranges do not read back:\n%s", got)
	}
	o, _ := exec.Command("qemu-io", "-f", "raw", "-c", "read -v 2M 512", uri).CombinedOutput()
	if !strings.Contains(string(o), "Input/output error") {
		t.Fatalf("a read of the damaged range did not fail with an I/O error:\n%s", o)
	}
}
