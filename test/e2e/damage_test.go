package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// damageChunk flips one byte in the middle of a stored chunk object.
func damageChunk(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0x40
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
	victim := firstChunkFile(t, s.dataDir)
	digest := filepath.Base(victim)
	damageChunk(t, victim)
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
	if _, err := os.Stat(victim); !os.IsNotExist(err) {
		t.Fatalf("the damaged chunk is still where dedup finds it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.dataDir, "blobs", "quarantine", digest[:4], digest)); err != nil {
		t.Fatalf("the damaged chunk is not in quarantine: %v", err)
	}

	// The next snapshot of the unchanged disk stores the chunk again.
	if st := s.waitOperation(admin, s.snapshotNow(admin, second, snapID("s3"))); st["status"] != "Succeeded" {
		t.Fatalf("snapshot s3: %v", st)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Fatalf("s3 did not store the quarantined chunk again: %v", err)
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
