package volume

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

func TestBackedVolumeReadsWritesAndHydrates(t *testing.T) {
	const size = 8 << 20
	image := randomBytes(t, size)
	clear(image[2<<20 : 3<<20]) // a zero stretch
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateBacked(dir, size, "snapshots/x")
	if err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "snapshots/x" {
		t.Fatalf("Backing() = %q", v.Backing())
	}
	// Before the backing is connected, reads wait on it: a transient error.
	if _, err := v.ReadAt(make([]byte, 10), 0); !errs.Is(err, errs.Transient) {
		t.Fatalf("read without backing: %v", err)
	}
	v.SetBacking(bytes.NewReader(image))
	if got := readAll(t, v, size); !bytes.Equal(got, image) {
		t.Fatal("a backed volume does not read as its backing")
	}
	// A partial write to a block not yet local keeps the rest of the block.
	want := append([]byte(nil), image...)
	patch := randomBytes(t, 1000)
	if _, err := v.WriteAt(patch, 5<<20+123); err != nil {
		t.Fatal(err)
	}
	copy(want[5<<20+123:], patch)
	if got := readAll(t, v, size); !bytes.Equal(got, want) {
		t.Fatal("a partial write lost the block's backing bytes")
	}
	// A snapshot of a hydrating volume is its logical contents.
	s, err := v.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(randomBytes(t, 4096), 7<<20); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, size); !bytes.Equal(got, want) {
		t.Fatal("a snapshot of a hydrating volume is wrong")
	}
	s.Release()
	if _, err := v.ReadAt(want[7<<20:7<<20+4096], 7<<20); err != nil {
		t.Fatal(err)
	}

	// A cancelled hydration stops; a reopen (as after a crash, some blocks
	// local and some not) reconnects and finishes.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Hydrate(ctx, nil); err == nil {
		t.Fatal("a cancelled hydration reported success")
	}
	v.Close()
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v.Backing() == "" {
		t.Fatal("a half-hydrated volume forgot its backing")
	}
	v.SetBacking(bytes.NewReader(image))
	if err := v.Hydrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "" {
		t.Fatal("hydrated volume still names a backing")
	}
	got := readAll(t, v, size)
	v.Close()
	if !bytes.Equal(got, want) {
		t.Fatal("hydrated contents differ")
	}
	// Standalone now: it opens and reads without any backing.
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Backing() != "" || !bytes.Equal(readAll(t, v, size), want) {
		t.Fatal("the hydrated volume is not standalone")
	}
	// Zero ranges stayed holes.
	rs, _ := v.Allocated()
	for _, r := range rs {
		if r.Off <= 2<<20+4096 && r.Off+r.Len >= 3<<20-4096 {
			t.Fatalf("the zero stretch was written: %v", rs)
		}
	}
}

// TestCreateBackedFinishesACrashedCreate: a plain volume left by a
// CreateBacked that died before naming its backing is finished on retry;
// a volume of another size or backing is refused.
func TestCreateBackedFinishesACrashedCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := Create(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	v, err = CreateBacked(dir, 1<<20, "idx")
	if err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "idx" {
		t.Fatalf("backing %q", v.Backing())
	}
	v.Close()
	if v, err = CreateBacked(dir, 1<<20, "idx"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	v.Close()
	if _, err := CreateBacked(dir, 1<<20, "other"); !errs.Is(err, errs.Conflict) {
		t.Fatalf("another backing: %v", err)
	}
}
