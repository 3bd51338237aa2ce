package chunk

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/coffer-backup/coffer/internal/directio"
	"github.com/coffer-backup/coffer/internal/errs"
)

// Putter stores chunks.
type Putter interface {
	// Put stores plain (at most MaxChunkSize bytes) and returns its digest
	// and the bytes it added to the backend. An all-zero plain is not
	// stored: Put returns ZeroDigest and 0. A chunk already present is not
	// written again: Put returns 0. Once Put returns without error the
	// chunk reads back, but it is durable only after the next PutIndex (or
	// Sync): in the pack layout it waits in a pack in memory until the pack
	// fills or a flush writes it, and on a file backend a write survives a
	// power loss only after a sync. An error may come from writing a pack
	// the chunk filled, whose chunks stay to be written by the next flush.
	// Safe for concurrent use.
	Put(ctx context.Context, plain []byte) (d Digest, stored int64, err error)
}

// Getter reads chunks.
type Getter interface {
	// Get returns the plaintext of chunk d, which is size bytes long (the
	// index knows the size; every chunk but a disk's last is ChunkSize).
	// ZeroDigest returns size zeros without I/O. A missing chunk is
	// errs.NotFound "ChunkNotFound"; one whose bytes do not hash to d, or
	// fail to authenticate, is errs.Internal "ChunkCorrupt". Get never
	// returns bytes that do not hash to d.
	Get(ctx context.Context, d Digest, size int) ([]byte, error)
	// Has reports whether chunk d is stored. ZeroDigest is always present.
	Has(ctx context.Context, d Digest) (bool, error)
}

// Sweeper enumerates and removes chunks; garbage collection and verify use
// it.
type Sweeper interface {
	// List calls fn for every stored chunk, in no particular order, and
	// stops at the first error fn returns, returning it. Objects under
	// chunks/ whose names are not chunk names (a crashed writer's
	// temporary file) are skipped.
	List(ctx context.Context, fn func(Info) error) error
	// Delete removes chunk d. Deleting a chunk that is absent, or
	// ZeroDigest, is not an error.
	Delete(ctx context.Context, d Digest) error
}

// Indexes stores snapshot indexes.
type Indexes interface {
	// PutIndex makes the chunks written so far durable, then writes idx
	// as indexes/<name> and makes that durable. Callers Put every chunk
	// idx names first: an index is visible only once its chunks are.
	// Writing the same index again is a no-op; a different index under a
	// used name is errs.Conflict "IndexExists".
	PutIndex(ctx context.Context, name string, idx Index) error
	// GetIndex reads and checks an index: errs.NotFound "IndexNotFound",
	// errs.Internal "IndexCorrupt".
	GetIndex(ctx context.Context, name string) (Index, error)
	// DeleteIndex removes an index; its chunks stay until GC. Deleting an
	// absent index is not an error.
	DeleteIndex(ctx context.Context, name string) error
	// ListIndexes returns the names of the indexes under prefix, sorted;
	// an empty list, never nil, if there are none.
	ListIndexes(ctx context.Context, prefix string) ([]string, error)
}

// Info describes a stored chunk.
type Info struct {
	Digest  Digest
	Stored  int64     // object size in bytes
	ModTime time.Time // when the object was last written
}

// Options configure a Store.
type Options struct {
	// Key is the 32-byte AES-256-GCM key that seals every chunk. Required
	// unless Plaintext is set.
	Key []byte
	// Plaintext stores chunks unencrypted. Meant for benchmarks; a store
	// reads plaintext chunks either way, since the digest check still
	// guarantees their content.
	Plaintext bool
	// Sync makes every object written so far durable. Nil means a write
	// is durable when it returns (S3, Azure). Open sets it for file
	// buckets, which write through the page cache.
	Sync func(ctx context.Context) error
	// Wrap, if set, wraps the backend the store uses: NewRetry, say, or
	// a fault injector in tests.
	Wrap func(Backend) Backend
	// PackSize is the size at which a pack of chunks is written; 0 means
	// DefaultPackSize, at most MaxPackSize. Negative writes the
	// version-1 layout instead, one object per chunk (benchmarks, and
	// the comparison with it). Either layout reads both.
	PackSize int64
}

// Store is the chunk store over a gocloud blob bucket. Safe for concurrent
// use.
type Store struct {
	backend Backend
	bucket  *blob.Bucket // the bucket under backend, for Bucket
	codec   *codec
	key     []byte // nil for a plaintext store
	sync    func(ctx context.Context) error
	closer  func() error // closes what Open opened; nil for New
	pk      *packState   // the pack layout; nil writes version 1
	runBufs sync.Pool    // of *[]byte, ReadIntoMany's read buffers

	mu       sync.Mutex
	inflight map[Digest]*putCall // one writer per digest at a time

	// Background write-back (see wrote).
	unsynced atomic.Int64
	flushing atomic.Bool
	flushes  sync.WaitGroup
}

// flushEvery is how many bytes a file bucket's Puts write before a
// background Sync starts writing them back. The kernel would otherwise
// hold a backup's chunks in the page cache (up to a fifth of memory) and
// write them only when PutIndex syncs, so the disk would sit idle while
// the backup reads and then make the backup wait while it writes; with
// write-back running alongside, PutIndex's Sync finds little left to do.
const flushEvery = 256 << 20

type putCall struct {
	done chan struct{}
	err  error
}

var (
	_ Putter  = (*Store)(nil)
	_ Getter  = (*Store)(nil)
	_ Sweeper = (*Store)(nil)
	_ Indexes = (*Store)(nil)
)

const (
	chunkPrefix = "chunks/"
	indexPrefix = "indexes/"
	contentType = "application/octet-stream"
)

// New returns a Store over bucket. The caller keeps ownership of bucket;
// Close does not close it.
func New(bucket *blob.Bucket, opts Options) (*Store, error) {
	s, err := NewOnBackend(&BucketBackend{Bucket: bucket}, opts)
	if err != nil {
		return nil, err
	}
	s.bucket = bucket
	return s, nil
}

// NewOnBackend returns a Store over backend (wrapped by opts.Wrap). The
// caller keeps ownership of backend; Close does not close it.
func NewOnBackend(backend Backend, opts Options) (*Store, error) {
	if opts.Key == nil && !opts.Plaintext {
		return nil, errs.E(errs.Invalid, "ChunkKeyRequired", "chunk encryption needs a key; set Plaintext to store chunks in the clear")
	}
	key := opts.Key
	if opts.Plaintext {
		key = nil
	}
	c, err := newCodec(key)
	if err != nil {
		return nil, err
	}
	if opts.Wrap != nil {
		backend = opts.Wrap(backend)
	}
	if opts.PackSize > MaxPackSize {
		return nil, errs.E(errs.Invalid, "InvalidPackSize", "pack size %d exceeds %d", opts.PackSize, MaxPackSize)
	}
	s := &Store{backend: backend, codec: c, key: slices.Clone(key), sync: opts.Sync, inflight: map[Digest]*putCall{}}
	switch {
	case opts.PackSize == 0:
		s.pk = newPackState(DefaultPackSize)
	case opts.PackSize > 0:
		s.pk = newPackState(opts.PackSize)
	}
	return s, nil
}

// Packed reports whether the store writes packs (format version 2).
func (s *Store) Packed() bool { return s.pk != nil }

// Close releases the codec, and the bucket if Open opened it.
func (s *Store) Close() error {
	s.flushes.Wait()
	s.codec.close()
	if s.closer != nil {
		return s.closer()
	}
	return nil
}

// Bucket returns the underlying bucket, for tests and tools; nil for a
// store made by NewOnBackend.
func (s *Store) Bucket() *blob.Bucket { return s.bucket }

// ChunkKey is the object key of chunk d: chunks/<first 4 hex>/<hex>. The
// 65536 fan-out directories keep a file backend's directories small.
func ChunkKey(d Digest) string {
	h := d.String()
	return chunkPrefix + h[:4] + "/" + h
}

// Put implements Putter.
func (s *Store) Put(ctx context.Context, plain []byte) (Digest, int64, error) {
	if len(plain) > MaxChunkSize {
		return Digest{}, 0, errs.E(errs.Invalid, "ChunkTooLarge", "chunk of %d bytes exceeds %d", len(plain), MaxChunkSize)
	}
	if allZero(plain) {
		return ZeroDigest, 0, nil
	}
	d := Sum(plain)
	for {
		call, leader := s.join(d)
		if !leader {
			select {
			case <-call.done:
			case <-ctx.Done():
				return Digest{}, 0, ctx.Err()
			}
			if call.err == nil {
				return d, 0, nil // the other writer stored it
			}
			continue // it failed; try ourselves
		}
		stored, err := s.put(ctx, d, plain)
		s.leave(d, call, err)
		return d, stored, err
	}
}

// join registers the caller as the writer of d, or returns the call of the
// writer already at work.
func (s *Store) join(d Digest) (*putCall, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.inflight[d]; ok {
		return c, false
	}
	c := &putCall{done: make(chan struct{})}
	s.inflight[d] = c
	return c, true
}

func (s *Store) leave(d Digest, c *putCall, err error) {
	s.mu.Lock()
	delete(s.inflight, d)
	s.mu.Unlock()
	c.err = err
	close(c.done)
}

// hasLoose reports whether chunk d is stored as its own (version-1)
// object: a Put of it then writes nothing.
func (s *Store) hasLoose(ctx context.Context, d Digest) (bool, error) {
	key := ChunkKey(d)
	ok, err := s.backend.Exists(ctx, key)
	if err != nil {
		return false, backendErr("ChunkPutFailed", key, err)
	}
	return ok, nil
}

func (s *Store) put(ctx context.Context, d Digest, plain []byte) (int64, error) {
	if s.pk != nil {
		return s.putPacked(ctx, d, plain)
	}
	if ok, err := s.hasLoose(ctx, d); err != nil || ok {
		return 0, err
	}
	key := ChunkKey(d)
	buf := s.codec.getBuf(sealHeaderLen + len(plain) + tagLen)
	defer s.codec.putBuf(buf)
	body := s.codec.seal(d, plain, buf)
	if err := s.backend.Write(ctx, key, body, false); err != nil {
		return 0, backendErr("ChunkPutFailed", key, err)
	}
	s.wrote(len(body))
	return int64(len(body)), nil
}

// wrote counts n bytes written and, every flushEvery bytes, starts a Sync
// in the background (one at a time). Its error is dropped: the Sync before
// an index reports it.
func (s *Store) wrote(n int) {
	if s.sync == nil || s.unsynced.Add(int64(n)) < flushEvery || !s.flushing.CompareAndSwap(false, true) {
		return
	}
	s.unsynced.Store(0)
	s.flushes.Add(1)
	go func() {
		defer s.flushes.Done()
		defer s.flushing.Store(false)
		_ = s.sync(context.Background())
	}()
}

// Get implements Getter.
func (s *Store) Get(ctx context.Context, d Digest, size int) ([]byte, error) {
	if size < 0 || size > MaxChunkSize {
		return nil, errs.E(errs.Invalid, "InvalidChunkSize", "chunk size %d is outside [0, %d]", size, MaxChunkSize)
	}
	if d.IsZero() {
		return make([]byte, size), nil
	}
	body, err := s.readObject(ctx, d, nil)
	if err != nil {
		return nil, err
	}
	plain, err := s.codec.open(d, body, size)
	if err != nil {
		return nil, s.damaged(ctx, d, err)
	}
	return plain, nil
}

// ReadInto reads chunk d of size bytes into dst's storage (which must have
// room for size bytes) and returns it, checked as Get checks; it allocates
// nothing per chunk, for restores that stream many chunks through a few
// buffers.
func (s *Store) ReadInto(ctx context.Context, d Digest, size int, dst []byte) ([]byte, error) {
	if size < 0 || size > MaxChunkSize || cap(dst) < size {
		return nil, errs.E(errs.Invalid, "InvalidChunkSize", "chunk size %d is outside [0, %d] or larger than the buffer", size, MaxChunkSize)
	}
	if d.IsZero() {
		dst = dst[:size]
		clear(dst)
		return dst, nil
	}
	largest := sealHeaderLen + size + tagLen // the largest object a chunk of size bytes makes
	// Room for a ranged read of the aligned span around a chunk in a pack.
	buf := s.codec.getBuf((largest+directio.Align-1)&^(directio.Align-1) + 2*directio.Align)
	defer s.codec.putBuf(buf)
	body, err := s.readObject(ctx, d, *buf)
	var tooLarge *ObjectTooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return nil, s.damaged(ctx, d, corrupt(d, "object of %d bytes", tooLarge.Size))
	case err != nil:
		return nil, err
	case len(body) > largest:
		return nil, s.damaged(ctx, d, corrupt(d, "object of %d bytes", len(body)))
	}
	body = slices.Clip(body) // decrypted in place; must not grow into the pool's buffer
	plain, err := s.codec.openInto(d, body, size, dst[:0])
	if err != nil {
		return nil, s.damaged(ctx, d, err)
	}
	return plain, nil
}

// readObject returns chunk d's sealed object, from a pack or from its
// own version-1 object, read into buf's storage (nil: allocated). A chunk
// stored nowhere is missing's error; other failures are backend errors
// with a code, except an *ObjectTooLargeError.
func (s *Store) readObject(ctx context.Context, d Digest, buf []byte) ([]byte, error) {
	for refreshed := false; ; refreshed = true {
		if s.pk != nil {
			body, loc, ok, err := s.readPacked(ctx, d, buf)
			if ok && !errors.Is(err, ErrObjectNotFound) {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					// The pack is shorter than its index says.
					return nil, s.damaged(ctx, d, corrupt(d, "pack %s ends before the chunk's %d bytes at %d", loc.p.id, loc.n, loc.off))
				}
				if err != nil {
					return nil, backendErr("ChunkGetFailed", PackKey(loc.p.id), err)
				}
				return body, nil
			}
			if err != nil && !ok {
				return nil, err
			}
			// Not in a pack, or its pack is gone (another process's GC):
			// a version-1 object, or a refreshed pack index, may have it.
		}
		key := ChunkKey(d)
		body, err := s.backend.Read(ctx, key, buf)
		if err == nil || !errors.Is(err, ErrObjectNotFound) {
			var tooLarge *ObjectTooLargeError
			if err != nil && !errors.As(err, &tooLarge) {
				return nil, backendErr("ChunkGetFailed", key, err)
			}
			return body, err
		}
		if s.pk == nil || refreshed {
			return nil, s.missing(ctx, d, err)
		}
		// Another process may have stored it since this one loaded its
		// pack index.
		if ok, rerr := s.missingPacked(ctx, d); rerr != nil {
			return nil, rerr
		} else if !ok {
			return nil, s.missing(ctx, d, err)
		}
	}
}

// Has implements Getter. In the pack layout a chunk is present once Put
// has added it to a pack, before the pack is durable: whoever names it in
// an index calls PutIndex or Sync first, which makes it durable.
func (s *Store) Has(ctx context.Context, d Digest) (bool, error) {
	if d.IsZero() {
		return true, nil
	}
	if s.pk != nil {
		if err := s.loadPacks(ctx); err != nil {
			return false, err
		}
		s.pk.mu.Lock()
		_, ok := s.pk.index[d]
		loose := s.pk.loose
		s.pk.mu.Unlock()
		if ok || !loose {
			return ok, nil
		}
	}
	key := ChunkKey(d)
	ok, err := s.backend.Exists(ctx, key)
	if err != nil {
		return false, backendErr("ChunkStatFailed", key, err)
	}
	return ok, nil
}

// Delete implements Sweeper.
func (s *Store) Delete(ctx context.Context, d Digest) error {
	if d.IsZero() {
		return nil
	}
	key := ChunkKey(d)
	if err := s.backend.Delete(ctx, key); err != nil {
		return backendErr("ChunkDeleteFailed", key, err)
	}
	return nil
}

// List implements Sweeper.
func (s *Store) List(ctx context.Context, fn func(Info) error) error {
	var fnErr error
	err := s.backend.List(ctx, chunkPrefix, func(obj Object) error {
		d, ok := parseChunkKey(obj.Key)
		if !ok {
			return nil
		}
		fnErr = fn(Info{Digest: d, Stored: obj.Size, ModTime: obj.ModTime})
		return fnErr
	})
	if err != nil && err != fnErr {
		return backendErr("ChunkListFailed", chunkPrefix, err)
	}
	return err
}

func parseChunkKey(key string) (Digest, bool) {
	rest, ok := strings.CutPrefix(key, chunkPrefix)
	if !ok || len(rest) != 4+1+64 || rest[4] != '/' || rest[:4] != rest[5:9] {
		return Digest{}, false
	}
	d, err := ParseDigest(rest[5:])
	return d, err == nil && !d.IsZero()
}

// Sync makes every chunk Put so far durable: in the pack layout it
// writes the open pack and any not yet written, makes them durable and
// indexes them (flushPacks). PutIndex calls it; a caller that records
// chunk digests elsewhere calls it before doing so.
func (s *Store) Sync(ctx context.Context) error {
	if s.pk != nil {
		_, err := s.flushPacks(ctx)
		return err
	}
	return s.syncRaw(ctx)
}

// backendErr gives a bucket error a kind: throttling and timeouts are
// Transient so callers retry them; the rest, including a backend's
// permission denied, is Internal, since it is coffer's configuration and not
// the client that is at fault.
func backendErr(code, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	kind := errs.Internal
	switch gcerrors.Code(err) {
	case gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded:
		kind = errs.Transient
	}
	return errs.E(kind, code, "blob %s", key).Wrap(err)
}
