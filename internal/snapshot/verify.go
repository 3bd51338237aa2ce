package snapshot

import (
	"context"
	"errors"
	"runtime"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/volume"
)

// VerifyStore is what Verify needs; *chunk.Store is one. Verify reads;
// the only thing it changes is what the store's Get does with a chunk that
// fails its check (moves it to quarantine), so it may run while uploads
// and GC do.
type VerifyStore interface {
	IndexLister
	ChunkGetter
	// ListQuarantine: chunk.Store.ListQuarantine.
	ListQuarantine(ctx context.Context, fn func(chunk.Info) error) error
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
	Indexes    int           // indexes read
	Checked    int           // distinct chunks read and re-hashed
	Bad        []BadChunk    // chunks missing or corrupt, in the order indexes name them
	BadIndexes []BadIndex    // indexes that could not be read
	Healed     []HealedChunk // quarantined chunks that a later backup stored again
}

// OK reports whether nothing was found wrong.
func (r Report) OK() bool { return len(r.Bad) == 0 && len(r.BadIndexes) == 0 }

// BadChunk is a chunk that cannot be read back, and the snapshots that
// therefore cannot be restored whole.
type BadChunk struct {
	Digest  chunk.Digest
	Err     error    // errs.NotFound "ChunkNotFound", errs.Internal "ChunkCorrupt", ...
	Indexes []string // the indexes naming it, sorted
	// Ranges are, for each index in Indexes, the byte ranges of its disk
	// that read this chunk.
	Ranges map[string][]volume.Range
	// Quarantined: the chunk failed its check and is in quarantine (moved
	// there by this Verify or before), so the next backup holding its
	// data stores it afresh and heals every index in Indexes.
	Quarantined bool
}

// HealedChunk is a chunk once quarantined that is stored and good again:
// a backup made after the quarantine held its data and stored it afresh.
type HealedChunk struct {
	Digest        chunk.Digest
	QuarantinedAt time.Time
	// By are the indexes naming it written after it was quarantined: the
	// backups that stored it again (or deduplicated onto the one that
	// did). Sorted.
	By []string
	// Indexes are all the indexes naming it, sorted; each restores again.
	Indexes []string
}

// BadIndex is an index that cannot be read.
type BadIndex struct {
	Name string
	Err  error
}

// Verify reads every chunk the indexes under opts.Prefix name, once per
// digest, with Get, which re-hashes it (and quarantines it if it is
// corrupt, so the next backup holding its data stores it afresh). It
// returns a Report naming each bad chunk, the indexes it breaks and where,
// and each quarantined chunk that reads back good again with the backups
// that healed it; the error is for Verify itself failing (listing, a
// cancelled context). An index or chunk deleted while Verify runs
// (retention, GC) is not reported.
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

	// Quarantined chunks that read back good now were stored again.
	healed := map[chunk.Digest]time.Time{}
	err = store.ListQuarantine(ctx, func(i chunk.Info) error {
		if _, used := sizes[i.Digest]; used {
			if _, isBad := bad[i.Digest]; !isBad {
				healed[i.Digest] = i.ModTime
			}
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	if len(bad) == 0 && len(healed) == 0 {
		return rep, nil
	}

	// Second pass, only when something is bad or healed: which indexes,
	// still present, name each such chunk, and where. A chunk no current
	// index names was freed by GC during the run and is not reported.
	users := map[chunk.Digest][]string{}
	ranges := map[chunk.Digest]map[string][]volume.Range{}
	healers := map[chunk.Digest][]string{}
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
		for i, d := range idx.Digests {
			_, isBad := bad[d]
			at, isHealed := healed[d]
			if !isBad && !isHealed {
				continue
			}
			if !seen[d] {
				seen[d] = true
				users[d] = append(users[d], name)
				if isHealed && idx.CreatedAt.After(at) {
					healers[d] = append(healers[d], name)
				}
			}
			if isBad {
				if ranges[d] == nil {
					ranges[d] = map[string][]volume.Range{}
				}
				off := int64(i) * idx.ChunkSize
				rs := ranges[d][name]
				if l := len(rs); l > 0 && rs[l-1].Off+rs[l-1].Len == off {
					rs[l-1].Len += int64(idx.ChunkLen(i))
				} else {
					rs = append(rs, volume.Range{Off: off, Len: int64(idx.ChunkLen(i))})
				}
				ranges[d][name] = rs
			}
		}
	}
	for _, d := range order {
		if len(users[d]) == 0 {
			continue
		}
		sort.Strings(users[d])
		if err, ok := bad[d]; ok {
			rep.Bad = append(rep.Bad, BadChunk{Digest: d, Err: err, Indexes: users[d], Ranges: ranges[d],
				Quarantined: errors.Is(err, chunk.ErrQuarantined)})
		} else if at, ok := healed[d]; ok {
			sort.Strings(healers[d])
			rep.Healed = append(rep.Healed, HealedChunk{Digest: d, QuarantinedAt: at, By: healers[d], Indexes: users[d]})
		}
	}
	return rep, nil
}
