package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// syncBuffer is a log sink the hydration goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(s.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestHydrationFromDamagedSnapshot: a disk made from a snapshot with a
// damaged chunk says so (its record, the JSON log, verify all name the
// disk and the byte range), keeps reading its undamaged ranges, and fails
// reads of the damaged range rather than returning zeros.
func TestHydrationFromDamagedSnapshot(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t)
	logs := &syncBuffer{}
	e.Log = slog.New(slog.NewJSONHandler(logs, nil))
	const mib = 1 << 20
	data, snap, idx := randomSnapshot(t, e, 4*mib)
	bad := idx.Digests[2]                 // bytes [2 MiB, 3 MiB)
	loc, err := e.Chunks.Locate(ctx, bad) // in a pack, or its own object
	if err != nil {
		t.Fatal(err)
	}
	obj, err := e.Chunks.Bucket().ReadAll(ctx, loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	obj[loc.Off+loc.Len/2] ^= 1
	if err := e.Chunks.Bucket().WriteAll(ctx, loc.Key, obj, nil); err != nil {
		t.Fatal(err)
	}

	d, err := e.CreateFromSnapshot(ctx, FromSnapshotRequest{ID: DiskID(testSub, "rg", "copy"), SnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitHydration() // it stops at the damage
	d, err = LoadByID(ctx, e.Store, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	he := d.Properties.HydrationError
	if he == nil || he.Offset != 2*mib || he.Length != mib || he.ChunkDigest != bad.String() || d.Hydrating == "" {
		t.Fatalf("disk after hydrating from damage: error %+v, hydrating %q; want bytes [2 MiB, 3 MiB) of chunk %s, still reading its index", he, d.Hydrating, bad)
	}
	var body struct {
		Properties map[string]any `json:"properties"`
	}
	raw, _ := json.Marshal(d.Disk)
	if json.Unmarshal(raw, &body); body.Properties["cofferHydrationError"] == nil {
		t.Fatalf("the disk's document does not show the damage: %s", raw)
	}

	logged := false
	for _, l := range logs.lines() {
		if l["level"] == "ERROR" && l["disk"] == d.ID && l["offset"] == float64(2*mib) && l["chunk"] == bad.String() {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("no JSON log line names the disk and the offset:\n%s", logs.b.String())
	}

	rep, err := snapshot.Verify(ctx, e.Chunks, snapshot.VerifyOptions{})
	if err != nil || len(rep.Bad) != 1 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	names, err := IndexNames(ctx, e.Store)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, idx := range rep.Bad[0].Indexes {
		if names[idx] == d.ID {
			found = true
			if r := rep.Bad[0].Ranges[idx]; len(r) != 1 || r[0].Off != 2*mib || r[0].Len != mib {
				t.Fatalf("verify's range for the disk: %v", r)
			}
		}
	}
	if !found {
		t.Fatalf("verify's report %v does not lead to the disk %s (names %v)", rep.Bad[0].Indexes, d.ID, names)
	}

	vol, err := e.Volumes.Open(d.Properties.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Volumes.Release(d.Properties.UniqueID)
	got := make([]byte, mib)
	for _, off := range []int64{0, mib, 3 * mib} {
		if _, err := vol.ReadAt(got, off); err != nil || !bytes.Equal(got, data[off:off+mib]) {
			t.Fatalf("read of the undamaged range at %d: %v", off, err)
		}
	}
	n, err := vol.ReadAt(got[:4096], 2*mib+8192)
	var ce *snapshot.ChunkError
	if err == nil || !errs.Is(err, errs.Internal) || !errors.As(err, &ce) || ce.Off != 2*mib {
		t.Fatalf("read of the damaged range: %d bytes, %v; want an error at the damaged chunk", n, err)
	}

	// A backup stores the chunk again (it was quarantined); the hydration,
	// resumed, completes and the disk forgets its damage.
	if _, stored, err := e.Chunks.Put(ctx, data[2*mib:3*mib]); err != nil || stored == 0 {
		t.Fatalf("storing the chunk again: %d bytes, %v", stored, err)
	}
	if err := e.ResumeHydration(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitHydration()
	d, _ = LoadByID(ctx, e.Store, d.ID)
	if d.Properties.HydrationError != nil || d.Hydrating != "" {
		t.Fatalf("after the heal: error %+v, hydrating %q", d.Properties.HydrationError, d.Hydrating)
	}
	all := make([]byte, 4*mib)
	if _, err := vol.ReadAt(all, 0); err != nil || !bytes.Equal(all, data) {
		t.Fatalf("the healed disk reads %v", err)
	}
}

// randomSnapshot writes size random bytes to a new disk "src" and
// snapshots it as "s1"; it returns the bytes, the snapshot and its index.
func randomSnapshot(t *testing.T, e *Engine, size int64) ([]byte, SnapshotRecord, chunk.Index) {
	t.Helper()
	ctx := context.Background()
	src := newDisk(t, e, "src", size)
	data := make([]byte, size)
	rand.Read(data)
	write(t, e, src, data, 0)
	snap, err := e.TakeSnapshot(ctx, SnapshotRequest{ID: SnapshotID(testSub, "snaps", "s1"), DiskID: src.ID})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := e.Chunks.GetIndex(ctx, snap.Index)
	if err != nil {
		t.Fatal(err)
	}
	return data, snap, idx
}

// countingBackend counts the reads of the chunk store's objects, whole or
// a range of a pack: how the test sees what a disk fetched.
type countingBackend struct {
	chunk.Backend
	mu     sync.Mutex
	reads  map[string]int
	ranges map[string][][2]int64 // ranged reads by key: offset, length
}

func (c *countingBackend) count(key string) {
	c.mu.Lock()
	c.reads[key]++
	c.mu.Unlock()
}

func (c *countingBackend) Read(ctx context.Context, key string, buf []byte) ([]byte, error) {
	c.count(key)
	return c.Backend.Read(ctx, key, buf)
}

// ReadRange counts a ranged read, which may cover several chunks of a
// pack (chunk.Store.ReadIntoMany).
func (c *countingBackend) ReadRange(ctx context.Context, key string, off, n int64, buf []byte) ([]byte, error) {
	c.mu.Lock()
	if c.ranges == nil {
		c.ranges = map[string][][2]int64{}
	}
	c.ranges[key] = append(c.ranges[key], [2]int64{off, n})
	c.mu.Unlock()
	return c.Backend.ReadRange(ctx, key, off, n, buf)
}

// chunkReads returns how often each chunk of idx was read since the last
// call, and the total.
func (c *countingBackend) chunkReads(t *testing.T, store *chunk.Store, idx chunk.Index) (map[chunk.Digest]int, int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	got, total := map[chunk.Digest]int{}, 0
	for _, d := range idx.Digests {
		loc, err := store.Locate(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		n := c.reads[loc.Key]
		for _, r := range c.ranges[loc.Key] {
			if r[0] <= loc.Off && loc.Off+loc.Len <= r[0]+r[1] {
				n++
			}
		}
		if n > 0 {
			got[d], total = n, total+n
		}
	}
	clear(c.reads)
	clear(c.ranges)
	return got, total
}

// TestReadsMakeBlocksLocal: a chunk a reader of a hydrating disk fetched
// is fetched once: the reader's blocks become local (copy on read), so
// reading them again and the hydration that follows leave the store
// alone. The disk has more chunks than the reader's cache holds, so the
// cache cannot be what spares the second fetch.
func TestReadsMakeBlocksLocal(t *testing.T) {
	ctx := context.Background()
	counter := &countingBackend{reads: map[string]int{}}
	e := newEngineWith(t, chunk.Options{Wrap: func(b chunk.Backend) chunk.Backend { counter.Backend = b; return counter }})
	const mib, chunks = 1 << 20, 80
	data, snap, idx := randomSnapshot(t, e, chunks*mib)
	// Hydration is held (its context has ended) so the reader goes first.
	held, cancel := context.WithCancel(ctx)
	cancel()
	e.Background = held
	d, err := e.CreateFromSnapshot(ctx, FromSnapshotRequest{ID: DiskID(testSub, "rg", "copy"), SnapshotID: snap.ID})
	if err != nil {
		t.Fatal(err)
	}
	e.WaitHydration()
	vol, err := e.Volumes.Open(d.Properties.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Volumes.Release(d.Properties.UniqueID)
	counter.chunkReads(t, e.Chunks, idx)

	got := make([]byte, 64<<10)
	readEach := func(pass string) {
		t.Helper()
		for i := range int64(chunks) {
			off := i*mib + 300<<10
			if _, err := vol.ReadAt(got, off); err != nil || !bytes.Equal(got, data[off:off+int64(len(got))]) {
				t.Fatalf("%s read at %d: %v", pass, off, err)
			}
		}
	}
	readEach("first")
	// Most chunks are fetched here (the counter sees packed reads). A
	// ranged read may carry a chunk along between two it wants (the
	// chunk store joins runs over small gaps) without making it local, so
	// a few are counted twice; a copy on read that failed would count
	// most.
	if reads, total := counter.chunkReads(t, e.Chunks, idx); total > len(reads)+len(reads)/4 || len(reads) < chunks/2 {
		t.Fatalf("the first reads of %d chunks made %d chunk reads of %d chunks", chunks, total, len(reads))
	}
	readEach("second")
	if _, total := counter.chunkReads(t, e.Chunks, idx); total != 0 {
		t.Fatalf("reading the same bytes again fetched %d chunks; they should be local", total)
	}

	e.Background = ctx
	if err := e.ResumeHydration(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitHydration()
	if _, total := counter.chunkReads(t, e.Chunks, idx); total != 0 {
		t.Fatalf("the hydration fetched %d chunks the reader had made local", total)
	}
	d, err = LoadByID(ctx, e.Store, d.ID)
	if err != nil || d.Hydrating != "" {
		t.Fatalf("after hydration: still hydrating from %q (%v)", d.Hydrating, err)
	}
	all := make([]byte, chunks*mib)
	if _, err := vol.ReadAt(all, 0); err != nil || !bytes.Equal(all, data) {
		t.Fatalf("the hydrated disk reads other bytes (%v)", err)
	}
}
