package snapshot

import (
	"context"
	"io"
	"runtime"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/volume"
)

// Source is a frozen view of a disk: what a snapshot is taken of. Nothing
// may change its bytes while Upload reads them. A *volume.Volume that no
// one writes to is one; internal/volume's point-in-time view is the one to
// use while a disk is in use.
type Source interface {
	// Size is the disk's size in bytes; it does not change.
	Size() int64
	// ReadAt follows io.ReaderAt. Upload reads whole chunks inside
	// [0, Size) and accepts io.EOF only with a full read.
	ReadAt(p []byte, off int64) (int, error)
}

// Allocator is a Source that can list the ranges that may hold data;
// volume.Volume and volume.Snapshot are.
type Allocator interface {
	Allocated() ([]volume.Range, error)
}

// UploadStore is what Upload needs from a chunk store; *chunk.Store is
// one. Each method keeps the contract of the chunk interface it comes from.
type UploadStore interface {
	// Put: chunk.Putter.
	chunk.Putter
	// Has: chunk.Getter.Has.
	Has(ctx context.Context, d chunk.Digest) (bool, error)
	// PutIndex: chunk.Indexes.PutIndex; called once, after every Put.
	PutIndex(ctx context.Context, name string, idx chunk.Index) error
	// GetIndex: chunk.Indexes.GetIndex; used to refuse a used name early
	// and to confirm the previous snapshot still exists.
	GetIndex(ctx context.Context, name string) (chunk.Index, error)
	// ListQuarantine: chunk.Store.ListQuarantine; the chunks of the
	// previous snapshot found damaged since are stored afresh.
	ListQuarantine(ctx context.Context, fn func(chunk.Info) error) error
}

var _ UploadStore = (*chunk.Store)(nil)

// UploadRequest says what to upload and how.
type UploadRequest struct {
	// Name is the index name (see chunk.Indexes); it must be unused.
	Name string
	// Source is the frozen view to read.
	Source Source
	// ChunkSize defaults to chunk.DefaultChunkSize. It should be a multiple
	// of ChangedBlockSize, or every chunk a changed block touches is read.
	ChunkSize int64

	// Changed is the set of blocks of ChangedBlockSize bytes written since
	// Previous was cut; nil means unknown: read every chunk. A chunk is
	// read when any block it overlaps is set.
	Changed *volume.Bitmap
	// ChangedBlockSize defaults to volume.DefaultBlockSize (64 KiB).
	ChangedBlockSize int64
	// Previous is the last snapshot of the same disk family: the chunks
	// Changed does not mark are copied from it. Ignored (a full read) when
	// nil, when Changed is nil, when its chunk size differs or when it is
	// larger than Source. A smaller Previous (the disk grew) is fine:
	// grown space reads as zeros unless Changed marks it, as
	// volume.Volume.Grow promises.
	Previous *chunk.Index
	// PreviousName is the name Previous was read under. If set, Upload
	// confirms, after protecting Previous's digests from GC, that the
	// index still exists, which proves its chunks do. If empty, or the
	// index is gone, Upload checks every copied chunk with Has and reads
	// the missing ones from Source.
	PreviousName string
	// Allocated, if not nil, lists the ranges of Source that may hold
	// data (volume.Volume.Allocated of the same frozen view); chunks
	// outside them are zero and not read. Nil means: ask Source, if it is
	// an Allocator, when the upload reads the whole disk, and otherwise
	// read every chunk. (An incremental reads only changed chunks, which
	// were written, so listing a large disk's extents would be wasted.)
	// An empty non-nil slice means the disk is all zeros.
	Allocated []volume.Range

	// InFlight is the registry shared with the Collector of this store.
	// Nil gives the upload no protection against a concurrent GC.
	InFlight *InFlight
	// Progress, if set, is called from one goroutine with the bytes read
	// and stored so far and the bytes to read.
	Progress func(done, total int64)
	// Workers is how many chunks are hashed, compressed, encrypted and
	// written at once; default DefaultWorkers().
	Workers int
	// Clock stamps the index; default clock.Real.
	Clock clock.Clock
}

// Stats counts what an Upload did. Every chunk of the disk is exactly one
// of: Reused, ZeroChunks, ChunksStored, Deduplicated, or (read and zero)
// counted in both ChunksRead and ZeroChunks.
type Stats struct {
	Chunks       int64 // chunks in the index
	ChunksRead   int64 // chunks read from Source
	ChunksStored int64 // read chunks written to the store
	Deduplicated int64 // read chunks that were already stored
	ZeroChunks   int64 // chunks that are zero: read as zeros, or not allocated
	Reused       int64 // chunks whose digest was copied from Previous
	BytesRead    int64 // bytes read from Source
	BytesStored  int64 // bytes added to the store (object sizes)
	Full         bool  // whether this was a full read (no usable Previous)
}

// span is a run of chunk numbers [first, end).
type span struct{ first, end int64 }

// Upload reads req.Source, stores its chunks and writes the index
// req.Name, chunks first and index last. It returns the index and what it
// did. On error no index is written; chunks already stored stay for GC.
func Upload(ctx context.Context, store UploadStore, req UploadRequest) (chunk.Index, Stats, error) {
	if err := req.defaults(); err != nil {
		return chunk.Index{}, Stats{}, err
	}
	if _, err := store.GetIndex(ctx, req.Name); err == nil {
		return chunk.Index{}, Stats{}, errs.E(errs.Conflict, "IndexExists", "snapshot %q exists", req.Name).WithTarget(req.Name)
	} else if !errs.Is(err, errs.NotFound) {
		return chunk.Index{}, Stats{}, err
	}
	size, cs := req.Source.Size(), req.ChunkSize
	n := chunk.NumChunks(size, cs)
	u := &upload{store: store, req: req, size: size, cs: cs}
	u.idx = chunk.Index{DiskSize: size, ChunkSize: cs, Digests: make([]chunk.Digest, n)}
	inflight := req.InFlight
	if inflight == nil {
		inflight = NewInFlight()
	}
	u.lease = inflight.Lease()
	defer u.lease.Release() // after PutIndex on success: see doc.go

	read, err := u.plan(ctx)
	if err != nil {
		return chunk.Index{}, Stats{}, err
	}
	if err := u.run(ctx, read); err != nil {
		return chunk.Index{}, Stats{}, err
	}
	u.idx.CreatedAt = req.Clock.Now().UTC()
	if err := store.PutIndex(ctx, req.Name, u.idx); err != nil {
		return chunk.Index{}, Stats{}, err
	}
	// Every chunk neither copied nor read is zero: unallocated, or grown
	// space the change set does not mark.
	u.stats.Chunks = n
	u.stats.ZeroChunks += n - u.stats.Reused - u.stats.ChunksRead
	return u.idx, u.stats, nil
}

func (r *UploadRequest) defaults() error {
	if r.Source == nil {
		return errs.E(errs.Invalid, "InvalidUpload", "no source")
	}
	if r.Source.Size() < 0 {
		return errs.E(errs.Invalid, "InvalidUpload", "source size %d is negative", r.Source.Size())
	}
	if r.ChunkSize == 0 {
		r.ChunkSize = chunk.DefaultChunkSize
	}
	if r.ChunkSize < 0 || r.ChunkSize > chunk.MaxChunkSize {
		return errs.E(errs.Invalid, "InvalidUpload", "chunk size %d is outside (0, %d]", r.ChunkSize, chunk.MaxChunkSize)
	}
	if r.ChangedBlockSize == 0 {
		r.ChangedBlockSize = volume.DefaultBlockSize
	}
	if r.ChangedBlockSize < 0 {
		return errs.E(errs.Invalid, "InvalidUpload", "change block size %d is negative", r.ChangedBlockSize)
	}
	if r.Workers <= 0 {
		r.Workers = DefaultWorkers()
	}
	if r.Clock == nil {
		r.Clock = clock.Real{}
	}
	return nil
}

type upload struct {
	store    UploadStore
	req      UploadRequest
	size, cs int64
	idx      chunk.Index
	lease    *Lease
	stats    Stats
}

// plan fills u.idx.Digests with what needs no read (copies from Previous,
// zeros) and returns the chunks to read, as sorted disjoint spans.
func (u *upload) plan(ctx context.Context) ([]span, error) {
	n := int64(len(u.idx.Digests))
	prev := u.req.Previous
	if prev == nil || u.req.Changed == nil || prev.ChunkSize != u.cs || prev.DiskSize > u.size ||
		int64(len(prev.Digests)) != chunk.NumChunks(prev.DiskSize, prev.ChunkSize) {
		u.stats.Full = true
		if a, ok := u.req.Source.(Allocator); ok && u.req.Allocated == nil {
			alloc, err := a.Allocated()
			if err != nil {
				return nil, errs.E(errs.Internal, "SourceReadFailed", "listing the source's allocated ranges").Wrap(err)
			}
			u.req.Allocated = alloc
		}
		return u.allocatedOnly([]span{{0, n}}), nil
	}

	// Chunks of Previous are copied unless changed. If the disk grew, a
	// short last chunk of Previous is now longer and is read, and chunks
	// past Previous are zero unless changed.
	copied := int64(len(prev.Digests))
	changed := u.changedSpans(n)
	if prev.DiskSize < u.size && prev.DiskSize%u.cs != 0 {
		copied--
		changed = mergeSpans(append(changed, span{copied, copied + 1}))
	}
	copy(u.idx.Digests, prev.Digests[:copied])
	// Protect the copies before checking they exist: doc.go.
	u.lease.Add(prev.Digests[:copied]...)
	missing, err := u.checkCopied(ctx, complement(changed, copied))
	if err != nil {
		return nil, err
	}
	want := mergeSpans(append(changed, missing...))
	// A copied chunk that turned out to be missing is read, not reused.
	u.stats.Reused = copied - overlap(want, copied)
	return u.allocatedOnly(want), nil
}

// changedSpans converts the change set to chunk spans.
func (u *upload) changedSpans(n int64) []span {
	bs := u.req.ChangedBlockSize
	var out []span
	u.req.Changed.ForEach(func(start, k int64) bool {
		first := start * bs / u.cs
		end := min(((start+k)*bs+u.cs-1)/u.cs, n)
		if first >= end {
			return first < n
		}
		if l := len(out); l > 0 && out[l-1].end >= first {
			out[l-1].end = max(out[l-1].end, end)
		} else {
			out = append(out, span{first, end})
		}
		return true
	})
	return out
}

// checkCopied makes sure the chunks copied from Previous (those in spans
// copies) are stored, now that the lease protects them, and returns the
// ones that are not.
func (u *upload) checkCopied(ctx context.Context, copies []span) ([]span, error) {
	var suspect map[chunk.Digest]bool // nil: every copied chunk
	if name := u.req.PreviousName; name != "" {
		cur, err := u.store.GetIndex(ctx, name)
		if err != nil && !errs.Is(err, errs.NotFound) {
			return nil, err
		}
		if err == nil && cur.ChunkSize == u.req.Previous.ChunkSize && slices.Equal(cur.Digests, u.req.Previous.Digests) {
			// The index exists, so its chunks were stored; those found
			// damaged since are in quarantine, and are stored again
			// unless another backup already has.
			suspect = map[chunk.Digest]bool{}
			if err := u.store.ListQuarantine(ctx, func(i chunk.Info) error { suspect[i.Digest] = true; return nil }); err != nil {
				return nil, err
			}
			if len(suspect) == 0 {
				return nil, nil
			}
		}
	}
	// Check each distinct digest once.
	seen := map[chunk.Digest]bool{}
	var todo []chunk.Digest
	for _, s := range copies {
		for i := s.first; i < s.end; i++ {
			if d := u.idx.Digests[i]; !d.IsZero() && !seen[d] && (suspect == nil || suspect[d]) {
				seen[d] = true
				todo = append(todo, d)
			}
		}
	}
	present := make([]bool, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.req.Workers * 4) // a stat or a HEAD each: I/O bound
	for k, d := range todo {
		g.Go(func() error {
			ok, err := u.store.Has(gctx, d)
			present[k] = ok
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	gone := map[chunk.Digest]bool{}
	for k, d := range todo {
		if !present[k] {
			gone[d] = true
		}
	}
	var missing []span
	for _, s := range copies {
		for i := s.first; i < s.end; i++ {
			if gone[u.idx.Digests[i]] {
				missing = append(missing, span{i, i + 1})
			}
		}
	}
	return missing, nil
}

// allocatedOnly drops from spans the chunks outside req.Allocated, marking
// them zero, and returns the rest.
func (u *upload) allocatedOnly(spans []span) []span {
	if u.req.Allocated == nil {
		return spans
	}
	var alloc []span
	for _, r := range u.req.Allocated {
		if r.Len <= 0 {
			continue
		}
		alloc = append(alloc, span{r.Off / u.cs, (r.Off + r.Len + u.cs - 1) / u.cs})
	}
	slices.SortFunc(alloc, func(a, b span) int { return int(a.first - b.first) })
	alloc = mergeSpans(alloc)
	read := intersect(spans, alloc)
	for _, s := range unallocated(spans, read) {
		for i := s.first; i < s.end; i++ {
			u.idx.Digests[i] = chunk.ZeroDigest
		}
	}
	return read
}

type result struct {
	i      int64
	d      chunk.Digest
	n      int
	stored int64
	dedup  bool
}

// run reads the chunks in spans and Puts them with Workers goroutines.
// Each worker reads its own chunks: reading is a large part of the work
// (the copy out of the page cache, and the kernel zeroing the holes its
// readahead lands on), and one reader feeding the others kept a core busy
// on its own while the device waited.
func (u *upload) run(ctx context.Context, spans []span) error {
	var total int64
	for _, s := range spans {
		total += min(s.end*u.cs, u.size) - s.first*u.cs
	}
	progress := u.req.Progress
	if progress != nil {
		progress(0, total)
	}
	if total == 0 {
		return nil
	}
	workers := u.req.Workers
	next := make(chan int64, workers)
	results := make(chan result, workers)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(next)
		for _, s := range spans {
			for i := s.first; i < s.end; i++ {
				select {
				case next <- i:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		return nil
	})
	wg := make(chan struct{}, workers)
	for range workers {
		g.Go(func() error {
			defer func() { wg <- struct{}{} }()
			buf := make([]byte, u.cs)
			for i := range next {
				r, err := u.readAndStore(gctx, i, buf)
				if err != nil {
					return err
				}
				select {
				case results <- r:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	}
	go func() {
		for range workers {
			<-wg
		}
		close(results)
	}()
	var done int64
	for r := range results {
		u.idx.Digests[r.i] = r.d
		u.stats.ChunksRead++
		u.stats.BytesRead += int64(r.n)
		u.stats.BytesStored += r.stored
		switch {
		case r.d.IsZero():
			u.stats.ZeroChunks++
		case r.dedup:
			u.stats.Deduplicated++
		default:
			u.stats.ChunksStored++
		}
		done += int64(r.n)
		if progress != nil {
			progress(done, total)
		}
	}
	return g.Wait()
}

// readAndStore reads chunk i into buf and stores it.
func (u *upload) readAndStore(ctx context.Context, i int64, buf []byte) (result, error) {
	off := i * u.cs
	n := int(min(u.cs, u.size-off))
	got, err := u.req.Source.ReadAt(buf[:n], off)
	if got == n && err == io.EOF {
		err = nil
	}
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return result{}, errs.E(errs.Internal, "SourceReadFailed", "reading %d bytes at %d", n, off).Wrap(err)
	}
	return u.store1(ctx, i, buf[:n])
}

// store1 stores one chunk and registers its digest. Put's own existence
// check may be a dedup hit on a chunk GC is about to delete, so the chunk
// is checked again once the lease holds it, and written again if it went.
func (u *upload) store1(ctx context.Context, i int64, plain []byte) (result, error) {
	d, stored, err := u.store.Put(ctx, plain)
	if err != nil {
		return result{}, err
	}
	r := result{i: i, d: d, n: len(plain), stored: stored}
	if d.IsZero() {
		return r, nil
	}
	u.lease.Add(d)
	ok, err := u.store.Has(ctx, d)
	if err != nil {
		return result{}, err
	}
	if !ok {
		_, again, err := u.store.Put(ctx, plain)
		if err != nil {
			return result{}, err
		}
		r.stored += again
	}
	r.dedup = r.stored == 0
	return r, nil
}

// mergeSpans sorts spans and joins overlapping or adjacent ones.
func mergeSpans(s []span) []span {
	if len(s) == 0 {
		return s
	}
	slices.SortFunc(s, func(a, b span) int { return int(a.first - b.first) })
	out := s[:1]
	for _, x := range s[1:] {
		if x.first >= x.end {
			continue
		}
		if l := &out[len(out)-1]; x.first <= l.end {
			l.end = max(l.end, x.end)
		} else {
			out = append(out, x)
		}
	}
	return out
}

// intersect returns the chunks in both sorted disjoint span lists.
func intersect(a, b []span) []span {
	var out []span
	for i, j := 0, 0; i < len(a) && j < len(b); {
		lo, hi := max(a[i].first, b[j].first), min(a[i].end, b[j].end)
		if lo < hi {
			out = append(out, span{lo, hi})
		}
		if a[i].end < b[j].end {
			i++
		} else {
			j++
		}
	}
	return out
}

// unallocated returns the chunks in spans that are not in read (a subset
// of spans).
func unallocated(spans, read []span) []span {
	var out []span
	j := 0
	for _, s := range spans {
		at := s.first
		for ; j < len(read) && read[j].first < s.end; j++ {
			if read[j].first > at {
				out = append(out, span{at, read[j].first})
			}
			at = read[j].end
		}
		if at < s.end {
			out = append(out, span{at, s.end})
		}
	}
	return out
}

// complement returns [0, n) minus spans.
func complement(spans []span, n int64) []span {
	return unallocated([]span{{0, n}}, intersect(spans, []span{{0, n}}))
}

// overlap counts the chunks of spans below n.
func overlap(spans []span, n int64) int64 {
	var c int64
	for _, s := range spans {
		if s.first < n {
			c += min(s.end, n) - s.first
		}
	}
	return c
}

// DefaultWorkers is how many chunks an upload or restore handles at once:
// a few per CPU, because each also waits on the disk or the network.
// Measured on 2 CPUs with a 4 GiB image (bench/backup harness): a first
// snapshot took 8.1 s with 2 workers and 6.3-6.7 s with 8 or 16, a restore
// 6.9 s with 2 and 5.8 s with 16.
func DefaultWorkers() int { return 4 * runtime.NumCPU() }
