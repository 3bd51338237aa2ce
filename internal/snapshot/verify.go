package snapshot

import (
	"context"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
)

// VerifyStore is what Verify needs; *chunk.Store is one. Verify only
// reads, so it may run while uploads and GC do.
type VerifyStore interface {
	IndexLister
	ChunkGetter
}

var _ VerifyStore = (*chunk.Store)(nil)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Prefix limits Verify to the indexes under it; "" is all.
	Prefix string
	// Workers is how many chunks are read and checked at once; default
	// runtime.NumCPU().
	Workers int
	// Progress, if set, is called from one goroutine with the chunks
	// checked so far and the total.
	Progress func(done, total int64)
}

// Report is what Verify found.
type Report struct {
	Indexes    int        // indexes read
	Checked    int        // distinct chunks read and re-hashed
	Bad        []BadChunk // chunks missing or corrupt, in the order indexes name them
	BadIndexes []BadIndex // indexes that could not be read
}

// OK reports whether nothing was found wrong.
func (r Report) OK() bool { return len(r.Bad) == 0 && len(r.BadIndexes) == 0 }

// BadChunk is a chunk that cannot be read back, and the snapshots that
// therefore cannot be restored whole.
type BadChunk struct {
	Digest  chunk.Digest
	Err     error    // errs.NotFound "ChunkNotFound", errs.Internal "ChunkCorrupt", ...
	Indexes []string // the indexes naming it, sorted
}

// BadIndex is an index that cannot be read.
type BadIndex struct {
	Name string
	Err  error
}

// Verify reads every chunk the indexes under opts.Prefix name, once per
// digest, with Get, which re-hashes it. It returns a Report naming each
// bad chunk and the indexes it breaks; the error is for Verify itself
// failing (listing, a cancelled context). An index or chunk deleted while
// Verify runs (retention, GC) is not reported.
func Verify(ctx context.Context, store VerifyStore, opts VerifyOptions) (Report, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	var rep Report
	names, err := store.ListIndexes(ctx, opts.Prefix)
	if err != nil {
		return rep, err
	}
	// One pass collects the distinct digests and their lengths; indexes
	// are not kept, so memory is per distinct chunk, not per snapshot.
	sizes := map[chunk.Digest]int{}
	var order []chunk.Digest
	for _, name := range names {
		idx, err := store.GetIndex(ctx, name)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.BadIndexes = append(rep.BadIndexes, BadIndex{Name: name, Err: err})
			continue
		}
		rep.Indexes++
		for i, d := range idx.Digests {
			if d.IsZero() {
				continue
			}
			if _, ok := sizes[d]; !ok {
				sizes[d] = idx.ChunkLen(i)
				order = append(order, d)
			}
		}
	}

	total := int64(len(order))
	if opts.Progress != nil {
		opts.Progress(0, total)
	}
	var mu sync.Mutex
	var done int64
	bad := map[chunk.Digest]error{}
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan chunk.Digest)
	g.Go(func() error {
		defer close(next)
		for _, d := range order {
			select {
			case next <- d:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range opts.Workers {
		g.Go(func() error {
			for d := range next {
				_, err := store.Get(gctx, d, sizes[d])
				if err != nil && gctx.Err() != nil {
					return gctx.Err()
				}
				mu.Lock()
				if err != nil {
					bad[d] = err
				}
				done++
				if opts.Progress != nil {
					opts.Progress(done, total)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, err
	}
	rep.Checked = len(order)
	if len(bad) == 0 {
		return rep, nil
	}

	// Second pass, only when something is bad: which indexes, still
	// present, name each bad chunk. A chunk no current index names was
	// freed by GC during the run and is not reported.
	users := map[chunk.Digest][]string{}
	names, err = store.ListIndexes(ctx, opts.Prefix)
	if err != nil {
		return rep, err
	}
	for _, name := range names {
		idx, err := store.GetIndex(ctx, name)
		if err != nil {
			continue // gone, or already reported
		}
		seen := map[chunk.Digest]bool{}
		for _, d := range idx.Digests {
			if _, ok := bad[d]; ok && !seen[d] {
				seen[d] = true
				users[d] = append(users[d], name)
			}
		}
	}
	for _, d := range order {
		if err, ok := bad[d]; ok && len(users[d]) > 0 {
			sort.Strings(users[d])
			rep.Bad = append(rep.Bad, BadChunk{Digest: d, Err: err, Indexes: users[d]})
		}
	}
	return rep, nil
}
