package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/google/uuid"
)

func TestVolumesShareOneOpenVolume(t *testing.T) {
	vs := NewVolumes(t.TempDir())
	id := uuid.NewString()
	if _, err := vs.Open(id); !errs.Is(err, errs.NotFound) {
		t.Fatalf("open before create: %v", err)
	}
	if err := vs.Ensure(id, 1<<20); err != nil {
		t.Fatal(err)
	}
	// Ensure again is a no-op, and grows a smaller volume.
	if err := vs.Ensure(id, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := vs.Ensure(id, 2<<20); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := vs.Open(id)
			if err != nil {
				t.Error(err)
				return
			}
			defer vs.Release(id)
			if _, err := v.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 512), int64(i)*512); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := vs.InUse(id); n != 0 {
		t.Fatalf("%d references left", n)
	}

	a, err := vs.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := vs.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || vs.InUse(id) != 2 {
		t.Fatalf("two opens gave different volumes or %d references", vs.InUse(id))
	}
	if a.Size() != 2<<20 {
		t.Fatalf("size %d after Ensure grew it", a.Size())
	}
	p := make([]byte, 512)
	if _, err := a.ReadAt(p, 7*512); err != nil || p[0] != 8 {
		t.Fatalf("read back %d, %v", p[0], err)
	}
	// In use: Remove refuses with a transient error the operation retries.
	if err := vs.Remove(id); !errs.Is(err, errs.Transient) {
		t.Fatalf("remove while open: %v", err)
	}
	vs.Release(id)
	vs.Release(id)
	if err := vs.Release(id); err == nil {
		t.Fatal("release of a closed volume succeeded")
	}
	if err := vs.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vs.Dir(id)); !os.IsNotExist(err) {
		t.Fatalf("volume dir after remove: %v", err)
	}
	if err := vs.Remove(id); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := vs.Open("../escape"); err == nil {
		t.Fatal("a non-GUID id was accepted")
	}
}

func TestVolumesCloseAll(t *testing.T) {
	vs := NewVolumes(t.TempDir())
	id := uuid.NewString()
	if err := vs.Ensure(id, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := vs.Open(id); err != nil {
		t.Fatal(err)
	}
	if err := vs.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed means unlocked: a fresh registry (a restarted process) opens it.
	other := NewVolumes(vs.Root)
	if _, err := other.Open(id); err != nil {
		t.Fatal(err)
	}
	other.Close()
}

func TestSASKeyIsCreatedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "sas.key")
	k1, err := LoadOrCreateSASKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrCreateSASKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 || !bytes.Equal(k1, k2) {
		t.Fatalf("keys %x and %x", k1, k2)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSASKey(path); err == nil {
		t.Fatal("a short key was accepted")
	}
}

// TestEnsureConcurrently: operations that provision one disk at once (a PUT
// and its update) all succeed; none finds the volume locked by the other's
// create.
func TestEnsureConcurrently(t *testing.T) {
	for round := 0; round < 20; round++ {
		vs := NewVolumes(t.TempDir())
		id := uuid.NewString()
		var wg sync.WaitGroup
		errc := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := vs.Ensure(id, 1<<20); err != nil {
					errc <- err
					return
				}
				vol, err := vs.Open(id)
				if err != nil {
					errc <- err
					return
				}
				errc <- vs.Release(id)
				_ = vol
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		vs.Close()
	}
}
