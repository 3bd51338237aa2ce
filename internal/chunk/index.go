package chunk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/internal/errs"
)

// Index is what a snapshot is: the disk cut into ChunkSize pieces, the
// digest of each in order. The last chunk is shorter when DiskSize is not a
// multiple of ChunkSize. ZeroDigest marks a piece that is all zeros.
type Index struct {
	DiskSize  int64
	ChunkSize int64
	Digests   []Digest
	CreatedAt time.Time // UTC, nanosecond precision
}

// The index layout; docs/chunk-format.md is the reference.
const (
	indexMagic     = "CFI1"
	indexVersion   = 1
	indexHeaderLen = 40
	indexSumLen    = 32
)

// maxIndexTime is the last instant int64 nanoseconds since 1970 can hold.
var maxIndexTime = time.Unix(0, 1<<63-1)

// NumChunks is how many chunks of chunkSize cover diskSize bytes.
func NumChunks(diskSize, chunkSize int64) int64 { return (diskSize + chunkSize - 1) / chunkSize }

// ChunkLen is the length of chunk i: ChunkSize, except for a short last one.
func (x *Index) ChunkLen(i int) int {
	return int(min(x.ChunkSize, x.DiskSize-int64(i)*x.ChunkSize))
}

func (x *Index) check() error {
	switch {
	case x.ChunkSize <= 0 || x.ChunkSize > MaxChunkSize:
		return errs.E(errs.Invalid, "InvalidIndex", "chunk size %d is outside (0, %d]", x.ChunkSize, MaxChunkSize)
	case x.DiskSize < 0:
		return errs.E(errs.Invalid, "InvalidIndex", "disk size %d is negative", x.DiskSize)
	case int64(len(x.Digests)) != NumChunks(x.DiskSize, x.ChunkSize):
		return errs.E(errs.Invalid, "InvalidIndex", "%d digests for %d bytes in %d-byte chunks, want %d",
			len(x.Digests), x.DiskSize, x.ChunkSize, NumChunks(x.DiskSize, x.ChunkSize))
	}
	return nil
}

// MarshalBinary encodes x: a 40-byte header, the digests, and a BLAKE3-256
// checksum of all that.
func (x *Index) MarshalBinary() ([]byte, error) {
	if err := x.check(); err != nil {
		return nil, err
	}
	if x.CreatedAt.Before(time.Unix(0, 0)) || x.CreatedAt.After(maxIndexTime) {
		return nil, errs.E(errs.Invalid, "InvalidIndex", "creation time %v is outside 1970..2262", x.CreatedAt)
	}
	n := indexHeaderLen + len(x.Digests)*len(Digest{})
	b := make([]byte, n, n+indexSumLen)
	copy(b[0:4], indexMagic)
	le := binary.LittleEndian
	le.PutUint32(b[4:8], indexVersion)
	le.PutUint64(b[8:16], uint64(x.DiskSize))
	le.PutUint64(b[16:24], uint64(x.ChunkSize))
	le.PutUint64(b[24:32], uint64(x.CreatedAt.UnixNano()))
	le.PutUint64(b[32:40], uint64(len(x.Digests)))
	for i := range x.Digests {
		copy(b[indexHeaderLen+i*len(Digest{}):], x.Digests[i][:])
	}
	sum := blake3.Sum256(b)
	return append(b, sum[:]...), nil
}

// UnmarshalIndex decodes what MarshalBinary wrote. Anything but an intact
// index is errs.Internal "IndexCorrupt".
func UnmarshalIndex(b []byte) (Index, error) {
	bad := func(format string, args ...any) (Index, error) {
		return Index{}, errs.E(errs.Internal, "IndexCorrupt", "index: "+format, args...)
	}
	if len(b) < indexHeaderLen+indexSumLen || string(b[0:4]) != indexMagic {
		return bad("no %s header", indexMagic)
	}
	body, sum := b[:len(b)-indexSumLen], b[len(b)-indexSumLen:]
	if want := blake3.Sum256(body); !bytes.Equal(sum, want[:]) {
		return bad("checksum mismatch")
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[4:8]); v != indexVersion {
		return bad("version %d, want %d", v, indexVersion)
	}
	count := le.Uint64(b[32:40])
	if count != uint64(len(body)-indexHeaderLen)/uint64(len(Digest{})) || (len(body)-indexHeaderLen)%len(Digest{}) != 0 {
		return bad("count %d does not match %d bytes of digests", count, len(body)-indexHeaderLen)
	}
	x := Index{
		DiskSize:  int64(le.Uint64(b[8:16])),
		ChunkSize: int64(le.Uint64(b[16:24])),
		CreatedAt: time.Unix(0, int64(le.Uint64(b[24:32]))).UTC(),
		Digests:   make([]Digest, count),
	}
	for i := range x.Digests {
		copy(x.Digests[i][:], body[indexHeaderLen+i*len(Digest{}):])
	}
	if err := x.check(); err != nil {
		return bad("%s", err.(*errs.Error).Message)
	}
	return x, nil
}

// IndexKey is the object key of index name.
func IndexKey(name string) string { return indexPrefix + name }

// checkIndexName allows "/"-separated segments of letters, digits, '.', '_'
// and '-', so callers can group indexes (disk/snapshot). It refuses "." and
// ".." segments and names ending in ".tmp", which a file backend uses for
// its temporary files.
func checkIndexName(name string) error {
	bad := func(why string) error {
		return errs.E(errs.Invalid, "InvalidIndexName", "index name %q %s", name, why).WithTarget("name")
	}
	if name == "" || len(name) > 512 {
		return bad("must be 1 to 512 characters")
	}
	if strings.HasSuffix(name, ".tmp") {
		return bad("must not end in .tmp")
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad("has an empty, '.' or '..' segment")
		}
		for _, c := range []byte(seg) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return bad("may hold only letters, digits, '.', '_', '-' and '/'")
			}
		}
	}
	return nil
}

// PutIndex implements Indexes.
func (s *Store) PutIndex(ctx context.Context, name string, idx Index) error {
	if err := checkIndexName(name); err != nil {
		return err
	}
	b, err := idx.MarshalBinary()
	if err != nil {
		return err
	}
	key := IndexKey(name)
	old, err := s.backend.Read(ctx, key, nil)
	switch {
	case err == nil && bytes.Equal(old, b):
		return nil // a retry of a write that landed
	case err == nil:
		return errs.E(errs.Conflict, "IndexExists", "index %q exists with other content", name).WithTarget(name)
	case !errors.Is(err, ErrObjectNotFound):
		return backendErr("IndexPutFailed", key, err)
	}
	// Chunks first, then the index that names them. A flush that wrote
	// packs synced them; one that had nothing to write still syncs, for the
	// chunks this index shares with packs another process wrote to the
	// same directory and may not have synced yet.
	synced := false
	if s.pk != nil {
		if synced, err = s.flushPacks(ctx); err != nil {
			return err
		}
	}
	if !synced {
		if err := s.syncRaw(ctx); err != nil {
			return err
		}
	}
	if err := s.backend.Write(ctx, key, b, false); err != nil {
		return backendErr("IndexPutFailed", key, err)
	}
	// The index (and the pack index the flush wrote) durable before the
	// caller records it.
	return s.syncRaw(ctx)
}

// GetIndex implements Indexes.
func (s *Store) GetIndex(ctx context.Context, name string) (Index, error) {
	if err := checkIndexName(name); err != nil {
		return Index{}, err
	}
	key := IndexKey(name)
	b, err := s.backend.Read(ctx, key, nil)
	if err != nil {
		if errors.Is(err, ErrObjectNotFound) {
			return Index{}, errs.E(errs.NotFound, "IndexNotFound", "index %q does not exist", name).WithTarget(name)
		}
		return Index{}, backendErr("IndexGetFailed", key, err)
	}
	idx, err := UnmarshalIndex(b)
	if err != nil {
		e := err.(*errs.Error)
		e.Message = name + ": " + e.Message
		return Index{}, e.WithTarget(name)
	}
	return idx, nil
}

// DeleteIndex implements Indexes.
func (s *Store) DeleteIndex(ctx context.Context, name string) error {
	if err := checkIndexName(name); err != nil {
		return err
	}
	key := IndexKey(name)
	if err := s.backend.Delete(ctx, key); err != nil {
		return backendErr("IndexDeleteFailed", key, err)
	}
	return nil
}

// ListIndexes implements Indexes.
func (s *Store) ListIndexes(ctx context.Context, prefix string) ([]string, error) {
	names := []string{}
	err := s.backend.List(ctx, indexPrefix+prefix, func(obj Object) error {
		name := strings.TrimPrefix(obj.Key, indexPrefix)
		if checkIndexName(name) == nil {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, backendErr("IndexListFailed", indexPrefix+prefix, err)
	}
	sort.Strings(names)
	return names, nil
}
