package chunk

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
)

// quarantinePrefix holds the objects of chunks found corrupt, moved out of
// chunks/ so dedup stops trusting them (doc.go, "Quarantine").
const quarantinePrefix = "quarantine/"

// ErrQuarantined is in the chain of the error Get and ReadInto return for a
// chunk that failed its check and was moved to quarantine, then or
// before.
var ErrQuarantined = errors.New("chunk is quarantined")

// errNotStored is how Quarantine leaves a digest's writer slot: a Put that
// waited on it must check and write for itself.
var errNotStored = errors.New("the slot's holder stored nothing")

// QuarantineKey is the object key of chunk d's quarantined object:
// quarantine/<first 4 hex>/<hex>.
func QuarantineKey(d Digest) string {
	h := d.String()
	return quarantinePrefix + h[:4] + "/" + h
}

// Quarantine moves chunk d's object to QuarantineKey(d) if it is corrupt:
// if it fails to open at the length its own header states, so a good
// chunk read with a wrong size stays where it is. It reports whether it
// moved the object. A missing chunk, a good one, and one sealed with
// another key (a configuration error, not damage) are left alone.
//
// From then on Has reports d absent, so the next Put of its data stores it
// afresh, and Get reports it corrupt (ErrQuarantined) until then. Within
// one process it holds d's writer slot, so a concurrent Put of d either
// finished before (and found the damaged object present) or starts after
// (and writes a good one, which this never deletes).
func (s *Store) Quarantine(ctx context.Context, d Digest) (bool, error) {
	if d.IsZero() {
		return false, nil
	}
	for {
		call, leader := s.join(d)
		if !leader {
			select {
			case <-call.done:
				continue
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
		moved, err := s.quarantine(ctx, d)
		// Never nil: a Put waiting on the slot takes nil for "stored".
		s.leave(d, call, errNotStored)
		return moved, err
	}
}

func (s *Store) quarantine(ctx context.Context, d Digest) (bool, error) {
	if s.pk != nil {
		body, loc, ok, err := s.readPacked(ctx, d, nil)
		if ok && loc.p.written {
			// A pack shorter than its index says holds no object to keep;
			// the entry is bad all the same.
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				return false, backendErr("ChunkGetFailed", PackKey(loc.p.id), err)
			}
			if err == nil {
				if _, err := s.codec.open(d, slices.Clone(body), statedLen(body)); !isCorrupt(err) {
					return false, nil
				}
			}
			qkey := QuarantineKey(d)
			if err := s.backend.Write(ctx, qkey, body, false); err != nil {
				return false, backendErr("ChunkQuarantineFailed", qkey, err)
			}
			return true, s.markBad(ctx, d, loc)
		}
		if err != nil {
			return false, err
		}
	}
	key := ChunkKey(d)
	body, err := s.backend.Read(ctx, key, nil)
	if errors.Is(err, ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, backendErr("ChunkGetFailed", key, err)
	}
	if _, err := s.codec.open(d, body, statedLen(body)); !isCorrupt(err) {
		return false, nil
	}
	qkey := QuarantineKey(d)
	if err := s.backend.Write(ctx, qkey, body, false); err != nil {
		return false, backendErr("ChunkQuarantineFailed", qkey, err)
	}
	if err := s.backend.Delete(ctx, key); err != nil {
		return false, backendErr("ChunkQuarantineFailed", key, err)
	}
	return true, nil
}

// statedLen is the plaintext length an object's header states, bounded to
// what a chunk may be; a header too short to state one gives 0, which
// fails to open as it should.
func statedLen(body []byte) int {
	if len(body) < 12 {
		return 0
	}
	n := int(uint32(body[8]) | uint32(body[9])<<8 | uint32(body[10])<<16 | uint32(body[11])<<24)
	return min(n, MaxChunkSize)
}

func isCorrupt(err error) bool {
	var e *errs.Error
	return errors.As(err, &e) && e.Code == "ChunkCorrupt"
}

// damaged is what Get and ReadInto return for chunk d that failed to open
// with err: if it is corrupt, the object goes to quarantine and the error
// says so.
func (s *Store) damaged(ctx context.Context, d Digest, err error) error {
	if !isCorrupt(err) {
		return err
	}
	moved, qerr := s.Quarantine(ctx, d)
	if qerr != nil || !moved {
		return err
	}
	var e *errs.Error
	errors.As(err, &e)
	return errs.E(errs.Internal, "ChunkCorrupt", "%s; moved to quarantine", e.Message).WithTarget(d.String()).
		Wrap(errors.Join(ErrQuarantined, err))
}

// missing is what Get and ReadInto return for chunk d whose object is
// absent: corrupt if it is in quarantine, else not found.
func (s *Store) missing(ctx context.Context, d Digest, err error) error {
	if ok, qerr := s.backend.Exists(ctx, QuarantineKey(d)); qerr == nil && ok {
		return errs.E(errs.Internal, "ChunkCorrupt", "chunk %s is quarantined: it failed its check, and no backup has stored its data again since", d).
			WithTarget(d.String()).Wrap(ErrQuarantined)
	}
	return errs.E(errs.NotFound, "ChunkNotFound", "chunk %s is not stored", d).WithTarget(d.String()).Wrap(err)
}

// ListQuarantine calls fn for every quarantined object, in no particular
// order; Info.ModTime is when it was quarantined. It stops at the first
// error fn returns and returns it.
//
// In the pack layout, a quarantine made by another process (coffer verify
// beside coffer serve) is a pack index entry flagged corrupt that this
// process has not read. So if a quarantined digest is one this process
// still counts as stored, ListQuarantine first re-reads the pack indexes:
// an upload that then asks Has gets the answer it would get after a
// restart, and stores the chunk again.
func (s *Store) ListQuarantine(ctx context.Context, fn func(Info) error) error {
	if s.pk != nil {
		if err := s.loadPacks(ctx); err != nil {
			return err
		}
		stale := false
		err := s.listQuarantine(ctx, func(i Info) error {
			s.pk.mu.Lock()
			_, ok := s.pk.index[i.Digest]
			s.pk.mu.Unlock()
			stale = stale || ok
			return nil
		})
		if err != nil {
			return err
		}
		if stale {
			// A refresh of its own, never one that ended meanwhile: that
			// one may have listed the pack indexes before the quarantining
			// process wrote its "corrupt" entry, and this caller (an
			// upload deciding what to store again) must see that entry.
			s.pk.loadMu.Lock()
			err := s.refreshLocked(ctx)
			s.pk.loadMu.Unlock()
			if err != nil {
				return err
			}
		}
	}
	return s.listQuarantine(ctx, fn)
}

func (s *Store) listQuarantine(ctx context.Context, fn func(Info) error) error {
	var fnErr error
	err := s.backend.List(ctx, quarantinePrefix, func(obj Object) error {
		rest, ok := strings.CutPrefix(obj.Key, quarantinePrefix)
		if !ok {
			return nil
		}
		d, ok := parseChunkKey(chunkPrefix + rest)
		if !ok {
			return nil
		}
		fnErr = fn(Info{Digest: d, Stored: obj.Size, ModTime: obj.ModTime})
		return fnErr
	})
	if err != nil && err != fnErr {
		return backendErr("ChunkListFailed", quarantinePrefix, err)
	}
	return err
}

// DeleteQuarantined removes chunk d's quarantined object; an absent one is
// not an error.
func (s *Store) DeleteQuarantined(ctx context.Context, d Digest) error {
	if d.IsZero() {
		return nil
	}
	key := QuarantineKey(d)
	if err := s.backend.Delete(ctx, key); err != nil {
		return backendErr("ChunkDeleteFailed", key, err)
	}
	return nil
}
