package snapshot

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
)

// countingGetter serves chunks from memory, counts Gets, and holds every
// Get until release is closed.
type countingGetter struct {
	chunks  map[chunk.Digest][]byte
	gets    atomic.Int64
	started chan struct{}
	release chan struct{}
}

func (g *countingGetter) Get(ctx context.Context, d chunk.Digest, size int) ([]byte, error) {
	if g.gets.Add(1) == 1 {
		close(g.started)
	}
	<-g.release
	return bytes.Clone(g.chunks[d]), nil
}

// TestReaderCache: concurrent reads of one chunk fetch it once; the LRU
// keeps at most CacheChunks chunks; zero chunks cost no Get.
func TestReaderCache(t *testing.T) {
	const cs = 4096
	g := &countingGetter{chunks: map[chunk.Digest][]byte{}, started: make(chan struct{}), release: make(chan struct{})}
	idx := chunk.Index{DiskSize: 4 * cs, ChunkSize: cs}
	for i := range 3 {
		b := bytes.Repeat([]byte{byte(i + 1)}, cs)
		d := chunk.Sum(b)
		g.chunks[d] = b
		idx.Digests = append(idx.Digests, d)
	}
	idx.Digests = append(idx.Digests, chunk.ZeroDigest)
	r := NewReader(g, idx, ReaderOptions{CacheChunks: 2})

	// The first reader's Get is held; the others join it while it is.
	var wg sync.WaitGroup
	first := make(chan struct{})
	wg.Go(func() {
		close(first)
		p := make([]byte, 10)
		if _, err := r.ReadAt(p, 5); err != nil || p[0] != 1 {
			t.Errorf("ReadAt: %v %v", p, err)
		}
	})
	<-g.started
	joined := 0
	for range 8 {
		wg.Go(func() {
			p := make([]byte, 10)
			if _, err := r.ReadAt(p, 100); err != nil || p[9] != 1 {
				t.Errorf("ReadAt: %v %v", p, err)
			}
		})
		joined++
	}
	// Every joiner is either waiting on the held call or has not reached
	// the cache yet; either way one Get serves them all once released.
	for r.cache.waiting(idx.Digests[0]) == false {
	}
	close(g.release)
	wg.Wait()
	if n := g.gets.Load(); n != 1 {
		t.Errorf("%d Gets for one chunk read by %d readers", n, joined+1)
	}
	p := make([]byte, 4*cs)
	if _, err := r.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if g.gets.Load() != 3 || !bytes.Equal(p[3*cs:], make([]byte, cs)) || p[2*cs] != 3 {
		t.Errorf("full read: %d Gets, want 3 (zero chunk free)", g.gets.Load())
	}
	if n := r.cache.lru.Len(); n != 2 {
		t.Errorf("cache holds %d chunks, want 2", n)
	}
}
