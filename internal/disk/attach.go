package disk

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/nbd"
	"github.com/coffer-backup/coffer/internal/volume"
)

// liveExports tracks the exports connections have opened, so a detach can
// cut them off.
type liveExports struct {
	mu sync.Mutex
	m  map[string][]*revocable
}

func (l *liveExports) add(name string, e *revocable) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]*revocable{}
	}
	l.m[name] = append(l.m[name], e)
}

func (l *liveExports) remove(name string, e *revocable) {
	l.mu.Lock()
	defer l.mu.Unlock()
	list := l.m[name]
	for i, x := range list {
		if x == e {
			l.m[name] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(l.m[name]) == 0 {
		delete(l.m, name)
	}
}

func (l *liveExports) revoke(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.m[name] {
		e.revoked.Store(true)
	}
}

// revocable is a volume exported over NBD until its attachment ends.
type revocable struct {
	*volume.Volume
	revoked atomic.Bool
}

var (
	_ nbd.Export = (*revocable)(nil)
	_ nbd.Mapper = (*revocable)(nil)
)

func detached() error {
	return errs.E(errs.Forbidden, "DiskDetached", "The disk was detached.")
}

func (e *revocable) ReadAt(p []byte, off int64) (int, error) {
	if e.revoked.Load() {
		return 0, detached()
	}
	return e.Volume.ReadAt(p, off)
}

func (e *revocable) WriteAt(p []byte, off int64) (int, error) {
	if e.revoked.Load() {
		return 0, detached()
	}
	return e.Volume.WriteAt(p, off)
}

func (e *revocable) Zero(off, n int64) error {
	if e.revoked.Load() {
		return detached()
	}
	return e.Volume.Zero(off, n)
}

// Extents is the volume's allocation map, for NBD block status and sparse
// reads.
func (e *revocable) Extents(off, n int64) ([]nbd.Extent, error) {
	if e.revoked.Load() {
		return nil, detached()
	}
	exts, err := e.Volume.Extents(off, n)
	out := make([]nbd.Extent, len(exts))
	for i, x := range exts {
		out[i] = nbd.Extent{Len: x.Len, Hole: x.Hole, Zero: x.Zero}
	}
	return out, err
}

func (e *revocable) Flush() error {
	if e.revoked.Load() {
		return detached()
	}
	return e.Volume.Flush()
}

// NBDLookup resolves an NBD export name to the disk attached under it. An
// unknown name is errs.NotFound, which the NBD server reports as an
// unknown export.
func (e *Engine) NBDLookup(ctx context.Context, name string) (nbd.Export, func(), error) {
	unknown := errs.E(errs.NotFound, "UnknownExport", "no such export")
	if len(name) != 32 {
		return nil, nil, unknown
	}
	q := meta.Query{Type: DiskType, Limit: 1000}
	for {
		page, err := e.Store.ListResources(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		for _, res := range page.Items {
			if !strings.Contains(string(res.Body), name) {
				continue
			}
			rec, err := DecodeRecord(res.Body)
			if err != nil {
				return nil, nil, err
			}
			for _, a := range rec.Attachments {
				if a.Export != name {
					continue
				}
				uid := rec.Properties.UniqueID
				vol, err := e.Volumes.Open(uid)
				if err != nil {
					return nil, nil, err
				}
				x := &revocable{Volume: vol}
				e.exports.add(name, x)
				return x, func() { e.exports.remove(name, x); e.Volumes.Release(uid) }, nil
			}
		}
		if page.Next == "" {
			return nil, nil, unknown
		}
		q.After = page.Next
	}
}

// RevokeExports cuts off, at once, every connection opened through these
// export names (their attachments have ended).
func (e *Engine) RevokeExports(names []string) {
	for _, n := range names {
		e.exports.revoke(n)
	}
}
