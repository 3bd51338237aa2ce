package snapshot

import (
	"sync"

	"github.com/coffer-backup/coffer/internal/chunk"
)

// InFlight is the registry of digests that uploads will name in an index
// they have not written yet. The uploads and the Collector of one process
// share one; doc.go gives the argument. The zero value is not usable: call
// NewInFlight. Safe for concurrent use.
type InFlight struct {
	mu   sync.Mutex
	refs map[chunk.Digest]int32 // leases holding each digest
	// deleting holds the digests a collector has claimed; the channel is
	// closed when the Delete has returned.
	deleting map[chunk.Digest]chan struct{}
	// collections counts running collections; while one runs, released
	// digests move to retained, which is emptied when the last ends.
	collections int
	retained    map[chunk.Digest]struct{}
}

// NewInFlight returns an empty registry.
func NewInFlight() *InFlight {
	return &InFlight{
		refs:     map[chunk.Digest]int32{},
		deleting: map[chunk.Digest]chan struct{}{},
		retained: map[chunk.Digest]struct{}{},
	}
}

// Lease is one upload's registration. Safe for concurrent use by the
// upload's workers.
type Lease struct {
	f        *InFlight
	digests  []chunk.Digest // guarded by f.mu
	released bool           // guarded by f.mu
}

// Lease starts a registration for one upload. Release it when the index is
// written or the upload has failed.
func (f *InFlight) Lease() *Lease { return &Lease{f: f} }

// Add registers digests. When it returns, no collector will delete them
// until Release, and any Delete of them a collector had started has
// finished: a presence check made after Add is final. ZeroDigest is
// ignored.
func (l *Lease) Add(ds ...chunk.Digest) {
	f := l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.released {
		panic("snapshot: Lease.Add after Release")
	}
	for _, d := range ds {
		if d.IsZero() {
			continue
		}
		for {
			ch, ok := f.deleting[d]
			if !ok {
				break
			}
			f.mu.Unlock()
			<-ch
			f.mu.Lock()
		}
		f.refs[d]++
		l.digests = append(l.digests, d)
	}
}

// Release drops the lease's digests. While a collection runs they stay
// marked until it ends: it may have listed the indexes before the one this
// upload just wrote. Releasing twice is a no-op.
func (l *Lease) Release() {
	f := l.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.released {
		return
	}
	l.released = true
	for _, d := range l.digests {
		if f.refs[d]--; f.refs[d] <= 0 {
			delete(f.refs, d)
		}
		if f.collections > 0 {
			f.retained[d] = struct{}{}
		}
	}
	l.digests = nil
}

// beginCollection starts a collection: from now on released digests are
// retained until endCollection. Call it before listing indexes.
func (f *InFlight) beginCollection() {
	f.mu.Lock()
	f.collections++
	f.mu.Unlock()
}

func (f *InFlight) endCollection() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.collections--; f.collections == 0 {
		clear(f.retained)
	}
}

// claim reserves d for deletion if no lease holds it and no release during
// this collection retained it. The caller deletes the chunk and then calls
// unclaim; meanwhile Lease.Add of d waits.
func (f *InFlight) claim(d chunk.Digest) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs[d] > 0 {
		return false
	}
	if _, ok := f.retained[d]; ok {
		return false
	}
	if _, ok := f.deleting[d]; ok {
		return false // another collection is deleting it
	}
	f.deleting[d] = make(chan struct{})
	return true
}

func (f *InFlight) unclaim(d chunk.Digest) {
	f.mu.Lock()
	ch := f.deleting[d]
	delete(f.deleting, d)
	f.mu.Unlock()
	close(ch)
}

// Len is the number of distinct digests leases hold, for metrics and
// tests.
func (f *InFlight) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.refs)
}
