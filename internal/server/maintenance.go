package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// Maintenance runs the chunk store's background work: garbage collection
// of chunks no snapshot uses, and a periodic verify that reads back every
// referenced chunk. Both run in the serving process, whose uploads and
// restores share InFlight with the collector.
type Maintenance struct {
	Chunks         *chunk.Store
	InFlight       *snapshot.InFlight
	Clock          clock.Clock // default clock.Real
	Log            *slog.Logger
	GCInterval     time.Duration // 0: never
	GCGrace        time.Duration // 0: snapshot.DefaultGrace; negative: none (serve refuses both)
	VerifyInterval time.Duration // 0: never
	// Names maps index names to what they belong to (disk.IndexNames: a
	// snapshot id, the id of a disk hydrating from it), so the log of
	// damage names what a user knows; nil logs index names.
	Names func(ctx context.Context) map[string]string
	// Healed, if set, is called after a verify that found chunks stored
	// again since their quarantine: disks whose hydration stopped at one
	// can finish.
	Healed func(ctx context.Context)

	gcMu sync.Mutex
}

// Run works until ctx ends.
func (m *Maintenance) Run(ctx context.Context) {
	c := m.Clock
	if c == nil {
		c = clock.Real{}
	}
	var gcTick, verifyTick <-chan time.Time
	if m.GCInterval > 0 {
		t := c.NewTicker(m.GCInterval)
		defer t.Stop()
		gcTick = t.C()
	}
	if m.VerifyInterval > 0 {
		t := c.NewTicker(m.VerifyInterval)
		defer t.Stop()
		verifyTick = t.C()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-gcTick:
			m.CollectGarbage(ctx)
		case <-verifyTick:
			m.Verify(ctx)
		}
	}
}

// CollectGarbage runs one collection and logs what it freed.
func (m *Maintenance) CollectGarbage(ctx context.Context) (snapshot.GCStats, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	// A zero GCGrace is the collector's default; a negative one, none.
	c := snapshot.NewCollector(m.Chunks, m.InFlight, snapshot.CollectorOptions{Grace: m.GCGrace, Clock: m.Clock})
	stats, err := c.Run(ctx)
	if err != nil {
		m.Log.Error("garbage collection", "err", err)
		return stats, err
	}
	m.Log.Info("garbage collection", "stats", stats)
	return stats, nil
}

// Verify reads back every referenced chunk and logs any damage with the
// snapshots it breaks.
func (m *Maintenance) Verify(ctx context.Context) (snapshot.Report, error) {
	rep, err := snapshot.Verify(ctx, m.Chunks, snapshot.VerifyOptions{})
	if err != nil {
		m.Log.Error("verify", "err", err)
		return rep, err
	}
	if !rep.OK() {
		m.Log.Error("verify found damage", "bad_chunks", len(rep.Bad), "bad_indexes", len(rep.BadIndexes))
	} else {
		m.Log.Info("verify", "checked", rep.Checked)
	}
	var names map[string]string
	if m.Names != nil && (len(rep.Bad) > 0 || len(rep.Healed) > 0) {
		names = m.Names(ctx)
	}
	for _, b := range rep.Bad {
		breaks := make([]string, len(b.Indexes))
		for i, idx := range b.Indexes {
			breaks[i] = indexName(names, idx)
			for _, r := range b.Ranges[idx] {
				breaks[i] += fmt.Sprintf(" bytes %d-%d", r.Off, r.Off+r.Len-1)
			}
		}
		m.Log.Error("damaged chunk", "chunk", b.Digest.String(), "quarantined", b.Quarantined, "breaks", breaks, "err", b.Err)
	}
	for _, h := range rep.Healed {
		by := make([]string, len(h.By))
		for i, idx := range h.By {
			by[i] = indexName(names, idx)
		}
		m.Log.Info("chunk healed", "chunk", h.Digest.String(), "quarantined_at", h.QuarantinedAt, "stored_again_by", by)
	}
	if len(rep.Healed) > 0 && m.Healed != nil {
		m.Healed(ctx)
	}
	return rep, nil
}

// indexName is "<resource id> (<index>)" when the index belongs to a
// resource, else the index name.
func indexName(names map[string]string, index string) string {
	if id, ok := names[index]; ok {
		return id + " (" + index + ")"
	}
	return index
}
