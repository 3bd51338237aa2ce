package compute

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"time"

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
func (s *Service) prepareHydration(ctx context.Context, uniqueID, snapshotIndex string, size int64) (string, error) {
	name := hydrationIndex(uniqueID)
	if _, err := s.Chunks.GetIndex(ctx, name); errs.Is(err, errs.NotFound) {
		idx, err := s.Chunks.GetIndex(ctx, snapshotIndex)
		if err != nil {
			return "", err
		}
		// The snapshot's chunks are leased while its index is copied, in
		// case it is deleted and collected in between.
		lease := s.InFlight.Lease()
		lease.Add(idx.Digests...)
		err = s.Chunks.PutIndex(ctx, name, idx)
		lease.Release()
		if err != nil && !errs.Is(err, errs.Conflict) {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	return name, s.Volumes.EnsureBacked(uniqueID, size, name)
}

// BackingReader opens a hydration index as the backing of a volume.
func (s *Service) BackingReader(name string) (io.ReaderAt, error) {
	idx, err := s.Chunks.GetIndex(context.Background(), name)
	if err != nil {
		return nil, err
	}
	return snapshot.NewReader(s.Chunks, idx, snapshot.ReaderOptions{CacheChunks: 64}), nil
}

// hydrators are the running background hydrations, by unique id.
type hydrators struct {
	mu     sync.Mutex
	cancel map[string]context.CancelFunc
	wg     sync.WaitGroup
}

// startHydration copies the rest of a disk's blocks in the background and
// then makes the disk standalone: the record forgets its hydration index,
// which is deleted.
func (s *Service) startHydration(diskID, uniqueID, index string) {
	s.hydrators.mu.Lock()
	defer s.hydrators.mu.Unlock()
	if s.hydrators.cancel == nil {
		s.hydrators.cancel = map[string]context.CancelFunc{}
	}
	if _, running := s.hydrators.cancel[uniqueID]; running {
		return
	}
	base := s.Background
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancel(base)
	s.hydrators.cancel[uniqueID] = cancel
	s.hydrators.wg.Add(1)
	go func() {
		defer s.hydrators.wg.Done()
		defer func() {
			s.hydrators.mu.Lock()
			delete(s.hydrators.cancel, uniqueID)
			s.hydrators.mu.Unlock()
			cancel()
		}()
		if err := s.hydrate(ctx, diskID, uniqueID, index); err != nil && ctx.Err() == nil {
			slog.Default().Error("hydration", "disk", diskID, "err", err)
		}
	}()
}

func (s *Service) hydrate(ctx context.Context, diskID, uniqueID, index string) error {
	vol, err := s.Volumes.Open(uniqueID)
	if err != nil {
		return err
	}
	err = vol.Hydrate(ctx, nil)
	s.Volumes.Release(uniqueID)
	if err != nil {
		return err
	}
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		res, err := tx.GetResource(ctx, diskID)
		if err != nil {
			return err
		}
		rec, err := decodeRecord(res.Body)
		if err != nil || rec.Properties.UniqueID != uniqueID {
			return err
		}
		rec.Hydrating = ""
		_, err = s.save(ctx, tx, res.Subscription, res.ResourceGroup, rec)
		return err
	})
	if err != nil {
		return err
	}
	return s.Chunks.DeleteIndex(ctx, index)
}

// stopHydration cancels a disk's hydration and waits for it to let go.
func (s *Service) stopHydration(uniqueID string) {
	s.hydrators.mu.Lock()
	cancel := s.hydrators.cancel[uniqueID]
	s.hydrators.mu.Unlock()
	if cancel != nil {
		cancel()
		for {
			s.hydrators.mu.Lock()
			_, running := s.hydrators.cancel[uniqueID]
			s.hydrators.mu.Unlock()
			if !running {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// dropHydrationIndex deletes a removed disk's hydration index, if any.
func (s *Service) dropHydrationIndex(ctx context.Context, uniqueID string) error {
	if err := s.Chunks.DeleteIndex(ctx, hydrationIndex(uniqueID)); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	return nil
}

// ResumeHydration restarts the hydration of every disk that was still
// hydrating when the server stopped.
func (s *Service) ResumeHydration(ctx context.Context) error {
	q := meta.Query{Type: DiskType, Limit: 1000}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			var rec record
			if err := json.Unmarshal(res.Body, &rec); err != nil {
				return err
			}
			if rec.Hydrating != "" && rec.Properties.ProvisioningState == provisioningSucceeded {
				s.startHydration(rec.ID, rec.Properties.UniqueID, rec.Hydrating)
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
func (s *Service) WaitHydration() { s.hydrators.wg.Wait() }
