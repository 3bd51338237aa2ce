package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

const mib = 1 << 20

// openStore opens an encrypted chunk store on a directory bucket, the way
// coffer serve does (key in <dir>/keys, chunks in <dir>/blobs).
func openStore(t testing.TB, dir string) *chunk.Store {
	t.Helper()
	s, err := chunk.Open(t.Context(), "", dir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fillRandom fills p from a deterministic stream.
func fillRandom(p []byte, seed uint64) {
	r := rand.New(rand.NewChaCha8(seedBytes(seed)))
	var w [8]byte
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, r.Uint64())
		p = p[8:]
	}
	binary.LittleEndian.PutUint64(w[:], r.Uint64())
	copy(p, w[:])
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return s
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	fillRandom(b, seed)
	return b
}

// laterClock is a fake clock two hours ahead, so every chunk written by
// the test is older than the default grace period.
func laterClock() clock.Clock { return clock.NewFake(time.Now().Add(2 * time.Hour)) }

// memDisk is an io.WriterAt over a byte slice.
type memDisk struct {
	mu sync.Mutex
	b  []byte
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}

// restore restores idx into memory and returns the bytes.
func restore(t *testing.T, store snapshot.ChunkGetter, idx chunk.Index) []byte {
	t.Helper()
	m := &memDisk{b: make([]byte, idx.DiskSize)}
	if _, err := snapshot.NewReader(store, idx, snapshot.ReaderOptions{}).RestoreTo(t.Context(), m, 3); err != nil {
		t.Fatal(err)
	}
	return m.b
}

// restoreFile restores idx into a new sparse file and returns its sha256.
func restoreFile(t *testing.T, store snapshot.ChunkGetter, idx chunk.Index) [32]byte {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "restored.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(idx.DiskSize); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.NewReader(store, idx, snapshot.ReaderOptions{}).RestoreTo(t.Context(), f, 0); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := bytes.NewBuffer(nil).ReadFrom(teeHash{f, h}); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

type teeHash struct {
	f *os.File
	h interface{ Write([]byte) (int, error) }
}

func (t teeHash) Read(p []byte) (int, error) {
	n, err := t.f.Read(p)
	t.h.Write(p[:n])
	return n, err
}

// storedBytes is the total object size of every stored chunk, and their
// count: version-1 chunk objects and chunks in durable packs.
func storedBytes(t *testing.T, store *chunk.Store) (int64, int) {
	t.Helper()
	var total int64
	var n int
	if err := store.List(t.Context(), func(i chunk.Info) error {
		total += i.Stored
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := store.ListPacks(t.Context(), func(p chunk.PackInfo) error {
		for _, c := range p.Chunks {
			total += c.Stored
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return total, n
}

// openStoreV1 is openStore writing the version-1 layout, one object per
// chunk: an old store.
func openStoreV1(t testing.TB, dir string) *chunk.Store {
	t.Helper()
	s, err := chunk.Open(t.Context(), "", dir, chunk.Options{PackSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// flipByte flips one byte in the middle of chunk d's stored object, in
// its pack or its own object.
func flipByte(t *testing.T, store *chunk.Store, d chunk.Digest) {
	t.Helper()
	loc, err := store.Locate(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := store.Bucket().ReadAll(t.Context(), loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	obj[loc.Off+loc.Len/2] ^= 0x40
	if err := store.Bucket().WriteAll(t.Context(), loc.Key, obj, nil); err != nil {
		t.Fatal(err)
	}
}

// removeChunk deletes chunk d from the store, whatever its layout: the
// damage a lost object does.
func removeChunk(t *testing.T, store *chunk.Store, d chunk.Digest) {
	t.Helper()
	loc, err := store.Locate(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc.Key, "packs/") {
		if err := store.Delete(t.Context(), d); err != nil {
			t.Fatal(err)
		}
		return
	}
	err = store.ListPacks(t.Context(), func(p chunk.PackInfo) error {
		if chunk.PackKey(p.ID) != loc.Key {
			return nil
		}
		_, err := store.RewritePack(t.Context(), p.ID, []chunk.Digest{d})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// digestSet is the non-zero digests of some indexes.
func digestSet(idxs ...chunk.Index) map[chunk.Digest]bool {
	s := map[chunk.Digest]bool{}
	for _, x := range idxs {
		for _, d := range x.Digests {
			if !d.IsZero() {
				s[d] = true
			}
		}
	}
	return s
}

// mustVerify runs Verify and fails on anything bad.
func mustVerify(t *testing.T, store snapshot.VerifyStore) snapshot.Report {
	t.Helper()
	rep, err := snapshot.Verify(t.Context(), store, snapshot.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		for _, b := range rep.Bad {
			t.Errorf("bad chunk %s in %v: %v", b.Digest, b.Indexes, b.Err)
		}
		for _, b := range rep.BadIndexes {
			t.Errorf("bad index %s: %v", b.Name, b.Err)
		}
		t.FailNow()
	}
	return rep
}

// hookStore wraps a chunk store with callbacks at the points where an
// upload and a collector interleave.
type hookStore struct {
	*chunk.Store
	afterPut      func(ctx context.Context, d chunk.Digest, stored int64)
	beforeHas     func(ctx context.Context, d chunk.Digest)
	afterList     func(ctx context.Context)
	beforePutIdx  func(ctx context.Context, name string)
	beforeDeleteC func(ctx context.Context, d chunk.Digest)
}

func (h *hookStore) Put(ctx context.Context, plain []byte) (chunk.Digest, int64, error) {
	d, n, err := h.Store.Put(ctx, plain)
	if err == nil && h.afterPut != nil {
		h.afterPut(ctx, d, n)
	}
	return d, n, err
}

func (h *hookStore) Has(ctx context.Context, d chunk.Digest) (bool, error) {
	if h.beforeHas != nil {
		h.beforeHas(ctx, d)
	}
	return h.Store.Has(ctx, d)
}

func (h *hookStore) ListIndexes(ctx context.Context, prefix string) ([]string, error) {
	names, err := h.Store.ListIndexes(ctx, prefix)
	if err == nil && h.afterList != nil {
		h.afterList(ctx)
	}
	return names, err
}

func (h *hookStore) PutIndex(ctx context.Context, name string, idx chunk.Index) error {
	if h.beforePutIdx != nil {
		h.beforePutIdx(ctx, name)
	}
	return h.Store.PutIndex(ctx, name, idx)
}

func (h *hookStore) Delete(ctx context.Context, d chunk.Digest) error {
	if h.beforeDeleteC != nil {
		h.beforeDeleteC(ctx, d)
	}
	return h.Store.Delete(ctx, d)
}
