package chunk

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/internal/errs"
)

// KeyMarkerKey is the object that names the chunk key a bucket belongs to
// (docs/chunk-format.md, "Key marker").
const KeyMarkerKey = "key-fingerprint"

const (
	markerHeader     = "coffer chunk key fingerprint v1\n"
	fingerprintInput = "coffer chunk key fingerprint v1"
)

// keyMarker is the marker's content for key: a header line and the hex
// BLAKE3 of a constant keyed with the key, which tells keys apart and says
// nothing about them.
func keyMarker(key []byte) []byte {
	h, err := blake3.NewKeyed(key)
	if err != nil {
		panic("chunk key of the wrong size: " + err.Error()) // New checked it
	}
	h.WriteString(fingerprintInput)
	return []byte(markerHeader + hex.EncodeToString(h.Sum(nil)) + "\n")
}

// errKeyMismatch is the refusal of a bucket another key wrote.
func errKeyMismatch(why string) error {
	return errs.E(errs.Invalid, "BucketKeyMismatch",
		"%s, so this data directory's chunk key (keys/chunk.key) could neither read them nor share them: "+
			"use the data directory whose key wrote the bucket (or a copy of its keys/chunk.key), or another bucket", why)
}

// BindKey ties the bucket to the store's key, so that a data directory
// with another key cannot dedup onto chunks it cannot decrypt. It writes
// the key marker if the bucket has none, and compares it if it has. A
// bucket from before markers, with chunks but no marker, gets one only if
// one of its chunks opens with this key. Open calls it; a plaintext store
// (benchmarks) has no key to bind and skips it.
func (s *Store) BindKey(ctx context.Context) error {
	if s.codec.aead == nil {
		return nil
	}
	want := keyMarker(s.key)
	for {
		got, err := s.backend.Read(ctx, KeyMarkerKey, nil)
		switch {
		case err == nil && bytes.Equal(got, want):
			return nil
		case err == nil:
			return errKeyMismatch("the chunks in this bucket were written with another key (its " + KeyMarkerKey + " object names that key)")
		case !errors.Is(err, ErrObjectNotFound):
			return backendErr("KeyMarkerFailed", KeyMarkerKey, err)
		}
		if err := s.checkOldChunk(ctx); err != nil {
			return err
		}
		err = s.backend.Write(ctx, KeyMarkerKey, want, true)
		if errors.Is(err, ErrObjectExists) {
			continue // another process marked it first: compare with its marker
		}
		if err != nil {
			return backendErr("KeyMarkerFailed", KeyMarkerKey, err)
		}
		return nil
	}
}

// checkOldChunk opens one chunk of an unmarked bucket, if it holds any,
// with the store's key.
func (s *Store) checkOldChunk(ctx context.Context) error {
	var found Digest
	stop := errors.New("found one")
	err := s.List(ctx, func(info Info) error {
		found = info.Digest
		return stop
	})
	if err != nil && err != stop {
		return err
	}
	var body []byte
	if found.IsZero() {
		// No version-1 chunk: the first chunk of the first pack, if any.
		var pid PackID
		havePack := false
		err := s.backend.List(ctx, packPrefix, func(o Object) error {
			pid, havePack = parsePackKey(o.Key)
			if havePack {
				return stop
			}
			return nil
		})
		if err != nil && err != stop {
			return backendErr("KeyMarkerFailed", packPrefix, err)
		}
		if !havePack {
			return nil // an empty bucket, or one with indexes of zero chunks only
		}
		whole, err := s.backend.Read(ctx, PackKey(pid), nil)
		if err != nil {
			return backendErr("KeyMarkerFailed", PackKey(pid), err)
		}
		entries, err := parsePack(pid, whole)
		if err != nil || len(entries) == 0 {
			return errs.E(errs.Invalid, "BucketKeyUnverified",
				"this bucket has no %s object and its pack %s cannot be read; use the data directory whose key wrote the bucket, or another bucket", KeyMarkerKey, pid)
		}
		found, body = entries[0].d, whole[entries[0].off:entries[0].off+entries[0].n]
	} else {
		var err error
		body, err = s.backend.Read(ctx, ChunkKey(found), nil)
		if err != nil {
			return backendErr("KeyMarkerFailed", ChunkKey(found), err)
		}
	}
	size := 0
	if len(body) >= plainHeaderLen {
		size = int(binary.LittleEndian.Uint32(body[8:12]))
	}
	if _, err := s.codec.open(found, body, size); err != nil {
		var e *errs.Error
		if errors.As(err, &e) && e.Code == "ChunkKeyMismatch" {
			return errKeyMismatch("this bucket has no " + KeyMarkerKey + " object and its chunks were written with another key")
		}
		return errs.E(errs.Invalid, "BucketKeyUnverified",
			"this bucket has no %s object and its chunk %s does not open with this data directory's key; "+
				"use the data directory whose key wrote the bucket, or another bucket", KeyMarkerKey, found).Wrap(err)
	}
	return nil
}
