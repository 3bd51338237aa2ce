package snapshot

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
)

// DefaultGrace is how old an unreferenced chunk must be before GC deletes
// it. It covers uploads in other processes that have written chunks and
// not yet their index (doc.go, "Limits"); in-process uploads are covered by
// InFlight whatever the grace.
const DefaultGrace = time.Hour

// IndexLister reads the snapshots of a store; *chunk.Store is one.
type IndexLister interface {
	// ListIndexes: chunk.Indexes.ListIndexes.
	ListIndexes(ctx context.Context, prefix string) ([]string, error)
	// GetIndex: chunk.Indexes.GetIndex.
	GetIndex(ctx context.Context, name string) (chunk.Index, error)
}

// GCStore is what a Collector needs; *chunk.Store is one.
type GCStore interface {
	IndexLister
	// List and Delete: chunk.Sweeper.
	chunk.Sweeper
	// ListQuarantine and DeleteQuarantined: chunk.Store's.
	ListQuarantine(ctx context.Context, fn func(chunk.Info) error) error
	DeleteQuarantined(ctx context.Context, d chunk.Digest) error
	// ListPacks, RewritePack and CompactPackIndexes: chunk.Store's, for
	// chunks in packs (format version 2).
	ListPacks(ctx context.Context, fn func(chunk.PackInfo) error) error
	RewritePack(ctx context.Context, id chunk.PackID, drop []chunk.Digest) (int64, error)
	CompactPackIndexes(ctx context.Context) (int, error)
}

var _ GCStore = (*chunk.Store)(nil)

// CollectorOptions tune a Collector.
type CollectorOptions struct {
	// Roots returns indexes that are not in the store but whose chunks
	// must stay: disks still hydrating from a snapshot, say. Called after
	// the store's indexes are listed.
	Roots func(ctx context.Context) ([]chunk.Index, error)
	// Grace defaults to DefaultGrace; negative means none (tests).
	Grace time.Duration
	// Clock tells GC what "old" is; default clock.Real. ModTime comes
	// from the backend, so the two should agree.
	Clock clock.Clock
	// Workers is how many Deletes run at once; default 8.
	Workers int
	// RepackDead is the fraction of a pack's bytes that must be dead
	// (chunks no index names, superseded copies, the table) before the
	// pack is rewritten with only its live chunks; default
	// DefaultRepackDead. Negative repacks any pack with a dead chunk.
	// Below it the dead chunks stay, counted in GCStats.Dead: rewriting a
	// 16 MiB pack to free a few of its chunks costs more than it frees.
	RepackDead float64
}

// DefaultRepackDead: a pack is repacked once more than half of it is
// dead, so repacking copies at most as much as it frees (restic's prune
// repacks at any unused space above a repository-wide 5%, kopia at a
// per-pack fraction).
const DefaultRepackDead = 0.5

// Collector is the garbage collector of one chunk store: it deletes the
// chunks no snapshot, root or in-flight upload names. Run it on one node
// only, in the process whose uploads share its InFlight (doc.go).
type Collector struct {
	store    GCStore
	inflight *InFlight
	opts     CollectorOptions
	running  sync.Mutex
}

// GCStats counts what a Run did.
type GCStats struct {
	Indexes      int   // indexes marked from
	Roots        int   // root indexes marked from
	Marked       int   // distinct digests referenced
	Chunks       int   // stored chunks listed
	StoredBytes  int64 // their total object size
	Young        int   // unreferenced but younger than the grace period: kept
	InFlight     int   // unreferenced but held by an upload: kept
	Deleted      int   // chunks deleted
	DeletedBytes int64 // their object sizes
	// Quarantined objects (chunks found corrupt) kept: a snapshot still
	// names them, or they are younger than the grace period.
	Quarantined int
	// QuarantineDeleted counts quarantined objects deleted: no snapshot
	// names them any more.
	QuarantineDeleted int

	// Packs (format version 2). Chunks, StoredBytes, Young, InFlight,
	// Deleted and DeletedBytes count the chunks in packs too.
	Packs         int   // packs listed
	PacksDeleted  int   // packs deleted: no chunk of theirs was live
	PacksRepacked int   // packs rewritten with their live chunks only
	CopiedBytes   int64 // bytes of live chunks copied by repacking
	FreedBytes    int64 // bytes by which deleting and repacking shrank the packs
	// Dead counts unreferenced chunks left in packs whose dead part is
	// below RepackDead.
	Dead int
	// PackIndexesCompacted counts pack index objects replaced by one.
	PackIndexesCompacted int
}

// NewCollector returns a Collector of store. inflight must be the registry
// the uploads to store use; nil only when no upload runs meanwhile (an
// offline GC).
func NewCollector(store GCStore, inflight *InFlight, opts CollectorOptions) *Collector {
	if inflight == nil {
		inflight = NewInFlight()
	}
	if opts.Grace == 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	if opts.RepackDead == 0 {
		opts.RepackDead = DefaultRepackDead
	}
	return &Collector{store: store, inflight: inflight, opts: opts}
}

// Run collects once: mark every digest of every index and root, then
// delete every other chunk older than the grace period that no upload
// holds, and every quarantined object no index or root names that is
// older than the grace period. A Run that fails or is killed has deleted only unreferenced
// chunks; running again finishes. Concurrent Runs of one Collector are
// errs.Conflict "GCRunning".
func (c *Collector) Run(ctx context.Context) (GCStats, error) {
	if !c.running.TryLock() {
		return GCStats{}, errs.E(errs.Conflict, "GCRunning", "garbage collection is already running")
	}
	defer c.running.Unlock()
	var st GCStats

	// Before listing: a lease released from now on may belong to an index
	// the listing below misses.
	c.inflight.beginCollection()
	defer c.inflight.endCollection()
	cutoff := c.opts.Clock.Now()
	if c.opts.Grace > 0 {
		cutoff = cutoff.Add(-c.opts.Grace)
	}

	marked := map[chunk.Digest]struct{}{}
	names, err := c.store.ListIndexes(ctx, "")
	if err != nil {
		return st, err
	}
	for _, name := range names {
		idx, err := c.store.GetIndex(ctx, name)
		if errs.Is(err, errs.NotFound) {
			continue // deleted since the listing: its chunks are fair game
		}
		if err != nil {
			// An unreadable index still protects nothing we can name;
			// sweeping anyway could delete what it references. Stop.
			return st, err
		}
		st.Indexes++
		mark(marked, idx)
	}
	if c.opts.Roots != nil {
		roots, err := c.opts.Roots(ctx)
		if err != nil {
			return st, err
		}
		for _, idx := range roots {
			st.Roots++
			mark(marked, idx)
		}
	}
	st.Marked = len(marked)

	var garbage []chunk.Info
	err = c.store.List(ctx, func(info chunk.Info) error {
		st.Chunks++
		st.StoredBytes += info.Stored
		if _, ok := marked[info.Digest]; ok {
			return nil
		}
		if !info.ModTime.Before(cutoff) {
			st.Young++
			return nil
		}
		garbage = append(garbage, info)
		return nil
	})
	if err != nil {
		return st, err
	}
	// A quarantined object is not a chunk: nothing reads it and dedup
	// ignores it. It is kept as evidence, and so verify can tell which
	// backup healed it, while a snapshot names its digest; then it goes
	// like any unreferenced chunk.
	var spent []chunk.Digest
	err = c.store.ListQuarantine(ctx, func(info chunk.Info) error {
		if _, ok := marked[info.Digest]; ok || !info.ModTime.Before(cutoff) {
			st.Quarantined++
			return nil
		}
		spent = append(spent, info.Digest)
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := c.sweepPacks(ctx, marked, cutoff, &st); err != nil {
		return st, err
	}
	marked = nil // the sweep needs only the garbage lists
	for _, d := range spent {
		if err := c.store.DeleteQuarantined(ctx, d); err != nil {
			return st, err
		}
		st.QuarantineDeleted++
	}

	var deleted, deletedBytes, held atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Workers)
	for _, info := range garbage {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if !c.inflight.claim(info.Digest) {
				held.Add(1)
				return nil
			}
			defer c.inflight.unclaim(info.Digest)
			if err := c.store.Delete(gctx, info.Digest); err != nil {
				return err
			}
			deleted.Add(1)
			deletedBytes.Add(info.Stored)
			return nil
		})
	}
	err = g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	st.Deleted += int(deleted.Load())
	st.DeletedBytes += deletedBytes.Load()
	st.InFlight += int(held.Load())
	return st, err
}

// sweepPacks deletes the packs none of whose chunks is marked, and
// rewrites those whose dead part exceeds RepackDead with their live
// chunks. Unmarked chunks are claimed from the InFlight registry first,
// as the loose sweep claims them; one an upload holds stays, as live.
func (c *Collector) sweepPacks(ctx context.Context, marked map[chunk.Digest]struct{}, cutoff time.Time, st *GCStats) error {
	var packs []chunk.PackInfo
	err := c.store.ListPacks(ctx, func(p chunk.PackInfo) error {
		packs = append(packs, p)
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range packs {
		st.Packs++
		var live int64
		var kept int
		var dead []chunk.PackChunk
		for _, ch := range p.Chunks {
			st.Chunks++
			st.StoredBytes += ch.Stored
			if _, ok := marked[ch.Digest]; ok {
				live += ch.Stored
				kept++
			} else {
				dead = append(dead, ch)
			}
		}
		deadBytes := p.Size - live
		switch {
		case len(dead) == 0 && live > 0 && float64(deadBytes) <= c.opts.RepackDead*float64(p.Size):
			continue // nothing worth freeing
		case !p.ModTime.Before(cutoff):
			st.Young += len(dead)
			continue
		case live > 0 && float64(deadBytes) <= c.opts.RepackDead*float64(p.Size):
			st.Dead += len(dead)
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var drop []chunk.Digest
		var dropBytes int64
		for _, ch := range dead {
			if c.inflight.claim(ch.Digest) {
				drop = append(drop, ch.Digest)
				dropBytes += ch.Stored
			} else {
				st.InFlight++
				kept++
				live += ch.Stored
			}
		}
		if len(drop) == 0 && float64(p.Size-live) <= c.opts.RepackDead*float64(p.Size) {
			continue // what is dead is held by uploads
		}
		freed, err := c.store.RewritePack(ctx, p.ID, drop)
		for _, d := range drop {
			c.inflight.unclaim(d)
		}
		if errs.Is(err, errs.NotFound) {
			continue // gone meanwhile
		}
		if err != nil {
			return err
		}
		st.Deleted += len(drop)
		st.DeletedBytes += dropBytes
		st.FreedBytes += freed
		if kept == 0 {
			st.PacksDeleted++
		} else {
			st.PacksRepacked++
			st.CopiedBytes += live
		}
	}
	n, err := c.store.CompactPackIndexes(ctx)
	st.PackIndexesCompacted = n
	return err
}

func mark(marked map[chunk.Digest]struct{}, idx chunk.Index) {
	for _, d := range idx.Digests {
		if !d.IsZero() {
			marked[d] = struct{}{}
		}
	}
}

// IndexDeleter removes snapshots; *chunk.Store is one.
type IndexDeleter interface {
	// DeleteIndex: chunk.Indexes.DeleteIndex.
	DeleteIndex(ctx context.Context, name string) error
}

var _ IndexDeleter = (*chunk.Store)(nil)

// DeleteSnapshot deletes snapshot name: its index only. Its chunks are
// freed by the next GC that finds no other snapshot, root or upload using
// them. Deleting an absent snapshot is not an error.
func DeleteSnapshot(ctx context.Context, store IndexDeleter, name string) error {
	return store.DeleteIndex(ctx, name)
}
