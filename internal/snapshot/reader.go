package snapshot

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/volume"
)

// ChunkGetter is what a Reader needs from a chunk store; *chunk.Store is
// one.
type ChunkGetter interface {
	// Get: chunk.Getter.Get. It never returns bytes that do not hash to d.
	Get(ctx context.Context, d chunk.Digest, size int) ([]byte, error)
}

var _ ChunkGetter = (*chunk.Store)(nil)

// ChunkError is a read of a snapshot that met a chunk it cannot read back
// (missing, corrupt, quarantined): disk bytes [Off, Off+Len) are lost
// until a backup stores the chunk again. Its kind is Err's.
type ChunkError struct {
	Off, Len int64
	Digest   chunk.Digest
	Err      error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("bytes %d-%d (chunk %s): %v", e.Off, e.Off+e.Len-1, e.Digest, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// chunkErr places err, from reading chunk i, on the disk.
func (r *Reader) chunkErr(i int, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &ChunkError{Off: int64(i) * r.idx.ChunkSize, Len: int64(r.idx.ChunkLen(i)), Digest: r.idx.Digests[i], Err: err}
}

// DefaultCacheChunks is how many decoded chunks a Reader keeps: enough for
// a client reading a few streams of small sequential requests.
const DefaultCacheChunks = 16

// Reader reads a snapshot as a disk. Safe for concurrent use.
type Reader struct {
	store ChunkGetter
	into  chunkReaderInto // store, if it reads into the caller's buffers
	idx   chunk.Index
	cache *chunkCache
}

var (
	_ io.ReaderAt = (*Reader)(nil)
	_ Source      = (*Reader)(nil)
)

// chunkReaderInto is what a store offers to read chunks into the caller's
// buffers (*chunk.Store does); a restore then allocates nothing per chunk.
type chunkReaderInto interface {
	ReadInto(ctx context.Context, d chunk.Digest, size int, dst []byte) ([]byte, error)
}

var _ chunkReaderInto = (*chunk.Store)(nil)

// ReaderOptions tune a Reader.
type ReaderOptions struct {
	// CacheChunks is how many decoded chunks to keep (LRU); default
	// DefaultCacheChunks, negative for none.
	CacheChunks int
}

// NewReader returns a Reader of idx, whose chunks are in store.
func NewReader(store ChunkGetter, idx chunk.Index, opts ReaderOptions) *Reader {
	n := opts.CacheChunks
	if n == 0 {
		n = DefaultCacheChunks
	}
	into, _ := store.(chunkReaderInto)
	return &Reader{store: store, into: into, idx: idx, cache: newChunkCache(max(n, 0))}
}

// Index returns the index the Reader reads.
func (r *Reader) Index() chunk.Index { return r.idx }

// Size is the disk size.
func (r *Reader) Size() int64 { return r.idx.DiskSize }

// ReadAt implements io.ReaderAt. Zero chunks read as zeros without I/O.
// Decoded chunks are cached; concurrent reads of one chunk fetch it once.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	return r.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt with a context for the chunk store.
func (r *Reader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errs.E(errs.Invalid, "OutOfRange", "negative offset %d", off)
	}
	size, cs := r.idx.DiskSize, r.idx.ChunkSize
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > size-off {
		p = p[:size-off]
	}
	n := 0
	// Whole chunks read straight into p go out together at the end, so a
	// store that reads many at once (chunk.Store.ReadIntoMany: one ranged
	// read for neighbours in a pack) gets them all.
	var batch []chunk.ChunkRead
	var at []int // where each of batch starts in p
	var failAt int
	var failErr error
	for n < len(p) {
		pos := off + int64(n)
		i := pos / cs
		in := pos - i*cs
		d := r.idx.Digests[i]
		seg := p[n:min(len(p), n+int(int64(r.idx.ChunkLen(int(i)))-in))]
		switch {
		case d.IsZero():
			clear(seg)
		case in == 0 && len(seg) == r.idx.ChunkLen(int(i)) && r.into != nil && !r.cache.holds(d):
			// A whole chunk (hydration, a large sequential read): straight
			// into p, no cache entry to allocate and copy from. The cap
			// keeps a failed decrypt from touching p past the chunk.
			batch = append(batch, chunk.ChunkRead{Digest: d, Size: len(seg), Dst: seg[:0:len(seg)]})
			at = append(at, n)
		default:
			b, err := r.cache.get(ctx, d, func(ctx context.Context) ([]byte, error) {
				return r.store.Get(ctx, d, r.idx.ChunkLen(int(i)))
			})
			if err != nil {
				failAt, failErr = n, r.chunkErr(int(i), err)
			} else {
				copy(seg, b[in:])
			}
		}
		if failErr != nil {
			break
		}
		n += len(seg)
	}
	r.readBatch(ctx, batch)
	for j, q := range batch {
		if q.Err != nil && (failErr == nil || at[j] < failAt) {
			failAt, failErr = at[j], r.chunkErr(int((off+int64(at[j]))/cs), q.Err)
			break
		}
	}
	if failErr != nil {
		return failAt, failErr
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

// chunkReaderMany is what a store offers to read many chunks at once
// (*chunk.Store does).
type chunkReaderMany interface {
	ReadIntoMany(ctx context.Context, reqs []chunk.ChunkRead)
}

var _ chunkReaderMany = (*chunk.Store)(nil)

// readBatch reads whole chunks into their requests' Dst, all at once when
// the store can.
func (r *Reader) readBatch(ctx context.Context, batch []chunk.ChunkRead) {
	if m, ok := r.store.(chunkReaderMany); ok && len(batch) > 1 {
		m.ReadIntoMany(ctx, batch)
		return
	}
	for j := range batch {
		q := &batch[j]
		b, err := r.into.ReadInto(ctx, q.Digest, q.Size, q.Dst)
		q.Err = err
		if err == nil && len(b) > 0 && &b[0] != &q.Dst[:1][0] {
			copy(q.Dst[:q.Size], b)
		}
	}
}

// Allocated returns the ranges of the disk whose chunks are not zero, in
// order, adjacent ones joined. What it does not list reads as zeros.
func (r *Reader) Allocated() []volume.Range {
	out := []volume.Range{}
	cs := r.idx.ChunkSize
	for i, d := range r.idx.Digests {
		if d.IsZero() {
			continue
		}
		off := int64(i) * cs
		end := off + int64(r.idx.ChunkLen(i))
		if l := len(out); l > 0 && out[l-1].Off+out[l-1].Len == off {
			out[l-1].Len = end - out[l-1].Off
		} else {
			out = append(out, volume.Range{Off: off, Len: end - off})
		}
	}
	return out
}

// RestoreTo writes the whole disk to dst with workers goroutines (default
// DefaultWorkers()): a full restore, or the hydration of a new disk. Zero
// chunks are skipped, so dst must read as zeros where it is not written (a
// new sparse file or volume of the right size) and stays sparse there. It
// bypasses the cache and returns the bytes written. (It is not WriteTo:
// that name belongs to io.WriterTo.)
func (r *Reader) RestoreTo(ctx context.Context, dst io.WriterAt, workers int) (int64, error) {
	if workers <= 0 {
		workers = DefaultWorkers()
	}
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan int, workers)
	var mu sync.Mutex
	var written int64
	g.Go(func() error {
		defer close(next)
		for i, d := range r.idx.Digests {
			if d.IsZero() {
				continue
			}
			select {
			case next <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	into, reuse := r.into, r.into != nil
	for range workers {
		g.Go(func() error {
			var buf []byte
			if reuse {
				buf = make([]byte, 0, r.idx.ChunkSize)
			}
			for i := range next {
				n := r.idx.ChunkLen(i)
				var b []byte
				var err error
				if reuse {
					b, err = into.ReadInto(gctx, r.idx.Digests[i], n, buf)
				} else {
					b, err = r.store.Get(gctx, r.idx.Digests[i], n)
				}
				if err != nil {
					return r.chunkErr(i, err)
				}
				if _, err := dst.WriteAt(b, int64(i)*r.idx.ChunkSize); err != nil {
					return errs.E(errs.Internal, "RestoreWriteFailed", "writing chunk %d", i).Wrap(err)
				}
				mu.Lock()
				written += int64(n)
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	return written, err
}

// Diff returns the byte ranges where snapshots a and b differ, chunk
// aligned, in order, adjacent ones joined: the changed-block list between
// two snapshots of a family. Both must have the same chunk size. When the
// sizes differ, everything past the smaller size counts as changed.
func Diff(a, b chunk.Index) ([]volume.Range, error) {
	if a.ChunkSize != b.ChunkSize || a.ChunkSize <= 0 {
		return nil, errs.E(errs.Invalid, "ChunkSizeMismatch", "snapshots have chunk sizes %d and %d", a.ChunkSize, b.ChunkSize)
	}
	cs := a.ChunkSize
	small, large := min(a.DiskSize, b.DiskSize), max(a.DiskSize, b.DiskSize)
	out := []volume.Range{}
	add := func(off, end int64) {
		if off >= end {
			return
		}
		if l := len(out); l > 0 && out[l-1].Off+out[l-1].Len == off {
			out[l-1].Len = end - out[l-1].Off
		} else {
			out = append(out, volume.Range{Off: off, Len: end - off})
		}
	}
	common := min(len(a.Digests), len(b.Digests))
	for i := range common {
		if a.Digests[i] != b.Digests[i] {
			add(int64(i)*cs, min(int64(i+1)*cs, small))
		}
	}
	// The tail: from the smaller size, extended back to its chunk start
	// when that chunk differs (already added) or not.
	add(max(small, 0), large)
	return out, nil
}

// chunkCache is an LRU of decoded chunks with one fetch per digest at a
// time.
type chunkCache struct {
	max     int
	mu      sync.Mutex
	entries map[chunk.Digest]*list.Element // of *cacheEntry
	lru     list.List                      // front = most recent
	calls   map[chunk.Digest]*fetchCall
}

type cacheEntry struct {
	d chunk.Digest
	b []byte
}

type fetchCall struct {
	done chan struct{}
	b    []byte
	err  error
}

func newChunkCache(n int) *chunkCache {
	return &chunkCache{max: n, entries: map[chunk.Digest]*list.Element{}, calls: map[chunk.Digest]*fetchCall{}}
}

// get returns chunk d from the cache, or from fetch, which runs once for
// concurrent callers. The returned slice is shared: read it, never write.
func (c *chunkCache) get(ctx context.Context, d chunk.Digest, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[d]; ok {
		c.lru.MoveToFront(e)
		b := e.Value.(*cacheEntry).b
		c.mu.Unlock()
		return b, nil
	}
	if call, ok := c.calls[d]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.b, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	call := &fetchCall{done: make(chan struct{})}
	c.calls[d] = call
	c.mu.Unlock()

	call.b, call.err = fetch(ctx)

	c.mu.Lock()
	delete(c.calls, d)
	if call.err == nil && c.max > 0 {
		c.entries[d] = c.lru.PushFront(&cacheEntry{d: d, b: call.b})
		for c.lru.Len() > c.max {
			old := c.lru.Remove(c.lru.Back()).(*cacheEntry)
			delete(c.entries, old.d)
		}
	}
	c.mu.Unlock()
	close(call.done)
	return call.b, call.err
}

// holds reports whether d is cached or being fetched.
func (c *chunkCache) holds(d chunk.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, cached := c.entries[d]
	_, fetching := c.calls[d]
	return cached || fetching
}

// waiting reports whether a fetch of d is in progress, for tests.
func (c *chunkCache) waiting(d chunk.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.calls[d]
	return ok
}
