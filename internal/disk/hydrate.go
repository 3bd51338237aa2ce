package disk

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"sync"
	"sync/atomic"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// hydrationIndex is the disk's own copy of the index it is made from: the
// snapshot may be deleted while the disk still reads from it, and as an
// index in the store its chunks are safe from garbage collection.
func hydrationIndex(uniqueID string) string { return "hydrate/" + uniqueID }

// prepareHydration copies the snapshot's index for the disk and creates the
// disk's volume backed by it. Idempotent.
func (e *Engine) prepareHydration(ctx context.Context, uniqueID, snapshotIndex string, size int64) (string, error) {
	name := hydrationIndex(uniqueID)
	if _, err := e.Chunks.GetIndex(ctx, name); errs.Is(err, errs.NotFound) {
		idx, err := e.Chunks.GetIndex(ctx, snapshotIndex)
		if err != nil {
			return "", err
		}
		// The snapshot's chunks are leased while its index is copied, in
		// case it is deleted and collected in between.
		lease := e.InFlight.Lease()
		lease.Add(idx.Digests...)
		err = e.Chunks.PutIndex(ctx, name, idx)
		lease.Release()
		if err != nil && !errs.Is(err, errs.Conflict) {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	return name, e.Volumes.EnsureBacked(uniqueID, size, name)
}

// BackingReader opens a hydration index as the backing of a volume.
func (e *Engine) BackingReader(name string) (io.ReaderAt, error) {
	idx, err := e.Chunks.GetIndex(context.Background(), name)
	if err != nil {
		return nil, err
	}
	return snapshot.NewReader(e.Chunks, idx, snapshot.ReaderOptions{CacheChunks: 64}), nil
}

// hydrators are the running background hydrations, by unique id.
type hydrators struct {
	mu      sync.Mutex
	running map[string]*hydration
	wg      sync.WaitGroup
}

type hydration struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the hydration has let go of the volume
	// copied and total are the hydration's progress in bytes, for clients
	// that watch a restored disk fill (completionPercent).
	copied, total atomic.Int64
}

// startHydration copies the rest of a disk's blocks in the background and
// then makes the disk standalone: the record forgets its hydration index,
// which is deleted.
func (e *Engine) startHydration(diskID, uniqueID, index string) {
	e.hydrators.mu.Lock()
	defer e.hydrators.mu.Unlock()
	if e.hydrators.running == nil {
		e.hydrators.running = map[string]*hydration{}
	}
	if _, running := e.hydrators.running[uniqueID]; running {
		return
	}
	base := e.Background
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancel(base)
	h := &hydration{cancel: cancel, done: make(chan struct{})}
	e.hydrators.running[uniqueID] = h
	e.hydrators.wg.Add(1)
	go func() {
		defer e.hydrators.wg.Done()
		defer func() {
			e.hydrators.mu.Lock()
			delete(e.hydrators.running, uniqueID)
			e.hydrators.mu.Unlock()
			cancel()
			close(h.done)
		}()
		err := e.hydrate(ctx, h, diskID, uniqueID, index)
		if err == nil || ctx.Err() != nil {
			return
		}
		var ce *snapshot.ChunkError
		if !errors.As(err, &ce) {
			e.log().Error("hydration", "disk", diskID, "err", err)
			return
		}
		// The snapshot is damaged: the disk keeps reading its other blocks
		// through the index, and says what it cannot read.
		e.log().Error("hydration stopped at a damaged chunk of the disk's snapshot", "disk", diskID,
			"offset", ce.Off, "length", ce.Len, "chunk", ce.Digest.String(), "index", index, "err", ce.Err)
		if err := e.recordDamage(ctx, diskID, uniqueID, ce); err != nil && ctx.Err() == nil {
			e.log().Error("recording a disk's damage", "disk", diskID, "err", err)
		}
	}()
}

func (e *Engine) hydrate(ctx context.Context, h *hydration, diskID, uniqueID, index string) error {
	vol, err := e.Volumes.Open(uniqueID)
	if err != nil {
		return err
	}
	err = vol.Hydrate(ctx, func(done, total int64) { h.copied.Store(done); h.total.Store(total) })
	e.Volumes.Release(uniqueID)
	if err != nil {
		return err
	}
	err = e.updateDisk(ctx, diskID, uniqueID, func(rec *Record) {
		rec.Hydrating = ""
		rec.Properties.HydrationError = nil
	})
	if err != nil {
		return err
	}
	return e.Chunks.DeleteIndex(ctx, index)
}

// recordDamage shows on the disk where its hydration stopped.
func (e *Engine) recordDamage(ctx context.Context, diskID, uniqueID string, ce *snapshot.ChunkError) error {
	he := &HydrationError{Offset: ce.Off, Length: ce.Len, ChunkDigest: ce.Digest.String(), Code: "ChunkUnreadable",
		Message: ce.Err.Error(), Time: e.Clock.Now().UTC()}
	var ee *errs.Error
	if errors.As(ce.Err, &ee) {
		he.Code, he.Message = ee.Code, ee.Message
	}
	return e.updateDisk(ctx, diskID, uniqueID, func(rec *Record) { rec.Properties.HydrationError = he })
}

// updateDisk changes the record of disk diskID, if it still has this
// unique id.
func (e *Engine) updateDisk(ctx context.Context, diskID, uniqueID string, change func(*Record)) error {
	return e.Store.InTx(ctx, func(tx meta.Tx) error {
		res, err := tx.GetResource(ctx, diskID)
		if err != nil {
			return err
		}
		rec, err := DecodeRecord(res.Body)
		if err != nil || rec.Properties.UniqueID != uniqueID {
			return err
		}
		change(&rec)
		_, err = e.Save(ctx, tx, rec)
		return err
	})
}

// stopHydration cancels a disk's hydration and waits for it to let go.
func (e *Engine) stopHydration(uniqueID string) {
	e.hydrators.mu.Lock()
	h := e.hydrators.running[uniqueID]
	e.hydrators.mu.Unlock()
	if h != nil {
		h.cancel()
		<-h.done
	}
}

// dropHydrationIndex deletes a removed disk's hydration index, if any.
func (e *Engine) dropHydrationIndex(ctx context.Context, uniqueID string) error {
	if err := e.Chunks.DeleteIndex(ctx, hydrationIndex(uniqueID)); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	return nil
}

// ResumeHydration restarts the hydration of every disk that was still
// hydrating when the server stopped.
func (e *Engine) ResumeHydration(ctx context.Context) error {
	q := meta.Query{Type: DiskType, Limit: 1000}
	for {
		page, err := e.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			var rec Record
			if err := json.Unmarshal(res.Body, &rec); err != nil {
				return err
			}
			if rec.Hydrating != "" && rec.Properties.ProvisioningState == ProvisioningSucceeded {
				e.startHydration(rec.ID, rec.Properties.UniqueID, rec.Hydrating)
			}
		}
		if page.Next == "" {
			return nil
		}
		q.After = page.Next
	}
}

// WaitHydration waits for background hydrations to stop (at shutdown,
// after Background is cancelled).
func (e *Engine) WaitHydration() { e.hydrators.wg.Wait() }

// HydrationProgress is how far the hydration of the disk with this unique id
// has come, in percent; ok is false when none runs in this process.
func (e *Engine) HydrationProgress(uniqueID string) (percent float64, ok bool) {
	e.hydrators.mu.Lock()
	h := e.hydrators.running[uniqueID]
	e.hydrators.mu.Unlock()
	if h == nil {
		return 0, false
	}
	total := h.total.Load()
	if total <= 0 {
		return 0, true
	}
	return math.Floor(float64(h.copied.Load())*1000/float64(total)) / 10, true
}
