// Package chunktest is the conformance suite every chunk backend runs: the
// directory, S3 (MinIO) and, later, Azure (Azurite) tests all call Run, so a
// backend that passes stores chunks and indexes exactly as the others do.
package chunktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/errs"
)

// NewBucket returns an empty bucket for one subtest and registers its
// cleanup with t.
type NewBucket func(t *testing.T) *blob.Bucket

// Run runs the suite on both layouts: packs (format version 2, with small
// packs so a test spans several) and one object per chunk (version 1).
// Each subtest gets its own empty bucket.
func Run(t *testing.T, newBucket NewBucket) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Bucket)
	}{
		{"RoundTrip", testRoundTrip},
		{"RoundTripPlaintext", testRoundTripPlaintext},
		{"ZeroChunks", testZeroChunks},
		{"Dedup", testDedup},
		{"DetectsFlippedByte", testFlippedByte},
		{"DetectsRenamedObject", testRenamedObject},
		{"WrongKey", testWrongKey},
		{"Index", testIndex},
		{"CorruptIndex", testCorruptIndex},
		{"ListAndDelete", testListAndDelete},
		{"ConcurrentSamePut", testConcurrentSamePut},
		{"ConcurrentPutGet", testConcurrentPutGet},
		{"ReadInto", testReadInto},
		{"Quarantine", testQuarantine},
	}
	for _, layout := range []struct {
		name     string
		packSize int64
	}{{"packs", 3 << 20}, {"v1", -1}} {
		t.Run(layout.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, Bucket{Bucket: newBucket(t), PackSize: layout.packSize})
				})
			}
		})
	}
}

// Bucket is a subtest's bucket and the layout its stores write.
type Bucket struct {
	*blob.Bucket
	PackSize int64 // chunk.Options.PackSize
}

// Key returns a fresh random chunk key.
func Key(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, chunk.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func newStore(t *testing.T, b Bucket, opts chunk.Options) *chunk.Store {
	t.Helper()
	if opts.PackSize == 0 {
		opts.PackSize = b.PackSize
	}
	s, err := chunk.New(b.Bucket, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func encrypted(t *testing.T, b Bucket) *chunk.Store {
	t.Helper()
	return newStore(t, b, chunk.Options{Key: Key(t)})
}

// Random returns n random bytes.
func Random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// RepeatedBlocks returns n bytes made of distinct random blocks of block
// bytes, each repeated: random a byte, but compressible by distinct times.
func RepeatedBlocks(n, block, distinct int) []byte {
	blocks := make([][]byte, distinct)
	for i := range blocks {
		blocks[i] = Random(block)
	}
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		out = append(out, blocks[i%distinct][:min(block, n-len(out))]...)
	}
	return out
}

// Compressible returns n bytes of text-like data that zstd shrinks several
// times over, different for each seed.
func Compressible(n int, seed uint64) []byte {
	words := []string{"disk ", "backup ", "snapshot ", "chunk ", "vault ", "policy ", "restore ", "\n", "0000 ", "coffer "}
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var buf bytes.Buffer
	buf.Grow(n + 16)
	for buf.Len() < n {
		buf.WriteString(words[r.IntN(len(words))])
	}
	return buf.Bytes()[:n]
}

// WantCode fails t unless err is an *errs.Error of kind and code.
func WantCode(t testing.TB, err error, kind errs.Kind, code string) {
	t.Helper()
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != kind || e.Code != code {
		t.Fatalf("error = %v, want kind %d code %s", err, kind, code)
	}
}

func ctxOf(t *testing.T) context.Context { return t.Context() }

func mustPut(t *testing.T, s *chunk.Store, plain []byte) (chunk.Digest, int64) {
	t.Helper()
	d, n, err := s.Put(ctxOf(t), plain)
	if err != nil {
		t.Fatalf("Put(%d bytes): %v", len(plain), err)
	}
	return d, n
}

func mustGet(t *testing.T, s *chunk.Store, d chunk.Digest, size int) []byte {
	t.Helper()
	got, err := s.Get(ctxOf(t), d, size)
	if err != nil {
		t.Fatalf("Get(%s, %d): %v", d, size, err)
	}
	return got
}

// objects lists every key in the bucket.
func objects(t *testing.T, b Bucket, prefix string) []string {
	t.Helper()
	keys := []string{}
	it := b.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctxOf(t))
		if err == io.EOF {
			return keys
		}
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		keys = append(keys, obj.Key)
	}
}

func roundTrip(t *testing.T, s *chunk.Store) {
	cases := []struct {
		name  string
		plain []byte
		// maxStored bounds what Put may add: compressible data must shrink,
		// random data may grow only by the header, nonce and tag.
		maxStored int64
	}{
		{"random 1MiB", Random(1 << 20), 1<<20 + 64},
		{"compressible 1MiB", Compressible(1<<20, 1), 1 << 19},
		{"half random half compressible", append(Random(1<<19), Compressible(1<<19, 2)...), 1<<19 + 1<<18},
		{"short last chunk", Random(12345), 12345 + 64},
		{"one byte", []byte{7}, 64},
		{"4MiB", Compressible(4<<20, 3), 2 << 20},
		// High entropy a byte, yet zstd folds the repeats: the sample
		// must not call it incompressible.
		{"random 4KiB blocks repeated", RepeatedBlocks(1<<20, 4096, 16), 1 << 17},
		{"random with an eighth of text", append(Random(7<<17), Compressible(1<<17, 8)...), 1<<20 - 1<<16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, stored := mustPut(t, s, tc.plain)
			if d != chunk.Sum(tc.plain) {
				t.Fatalf("digest %s, want BLAKE3 %s", d, chunk.Sum(tc.plain))
			}
			if stored <= 0 || stored > tc.maxStored {
				t.Fatalf("stored %d bytes, want (0, %d]", stored, tc.maxStored)
			}
			if ok, err := s.Has(ctxOf(t), d); err != nil || !ok {
				t.Fatalf("Has = %v, %v", ok, err)
			}
			if got := mustGet(t, s, d, len(tc.plain)); !bytes.Equal(got, tc.plain) {
				t.Fatal("Get returned other bytes")
			}
			if _, err := s.Get(ctxOf(t), d, len(tc.plain)+1); err == nil {
				t.Fatal("Get with the wrong size succeeded")
			}
		})
	}
}

func testRoundTrip(t *testing.T, b Bucket) { roundTrip(t, encrypted(t, b)) }

func testRoundTripPlaintext(t *testing.T, b Bucket) {
	roundTrip(t, newStore(t, b, chunk.Options{Plaintext: true}))
	// An encrypting store reads plaintext chunks: their digest vouches for them.
	plain := Compressible(1000, 9)
	clear := newStore(t, b, chunk.Options{Plaintext: true})
	d, _ := mustPut(t, clear, plain)
	mustSync(t, clear)
	if got := mustGet(t, encrypted(t, b), d, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("encrypting store read a plaintext chunk wrongly")
	}
	if _, err := chunk.New(b.Bucket, chunk.Options{}); err == nil {
		t.Fatal("New without a key or Plaintext succeeded")
	}
}

func testZeroChunks(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	for _, n := range []int{0, 1, 4096, 1 << 20, 4<<20 + 512} {
		d, stored := mustPut(t, s, make([]byte, n))
		if d != chunk.ZeroDigest || stored != 0 {
			t.Fatalf("Put(%d zeros) = %s, %d; want ZeroDigest, 0", n, d, stored)
		}
		if got := mustGet(t, s, chunk.ZeroDigest, n); len(got) != n || !bytes.Equal(got, make([]byte, n)) {
			t.Fatalf("Get(ZeroDigest, %d) returned %d bytes, not all zero", n, len(got))
		}
	}
	if keys := objects(t, b, ""); len(keys) != 0 {
		t.Fatalf("zero chunks wrote objects %v", keys)
	}
	if ok, err := s.Has(ctxOf(t), chunk.ZeroDigest); err != nil || !ok {
		t.Fatalf("Has(ZeroDigest) = %v, %v", ok, err)
	}
	if err := s.Delete(ctxOf(t), chunk.ZeroDigest); err != nil {
		t.Fatalf("Delete(ZeroDigest): %v", err)
	}
	// One non-zero byte makes a real chunk.
	almost := make([]byte, 4096)
	almost[4095] = 1
	if d, stored := mustPut(t, s, almost); d.IsZero() || stored == 0 {
		t.Fatalf("Put(almost zero) = %s, %d", d, stored)
	}
}

func testDedup(t *testing.T, b Bucket) {
	key := Key(t)
	s := newStore(t, b, chunk.Options{Key: key})
	plain := append(Random(1<<19), Compressible(1<<19, 4)...)
	d1, n1 := mustPut(t, s, plain)
	mustSync(t, s)
	before := objects(t, b, "")
	d2, n2 := mustPut(t, s, bytes.Clone(plain))
	if d1 != d2 || n1 == 0 || n2 != 0 {
		t.Fatalf("Puts = (%s, %d), (%s, %d); want the same digest and 0 bytes the second time", d1, n1, d2, n2)
	}
	// A second store over the same bucket (another node, a restart)
	// dedups against what is there.
	if _, n3 := mustPut(t, newStore(t, b, chunk.Options{Key: key}), plain); n3 != 0 {
		t.Fatalf("second store stored %d bytes of a present chunk", n3)
	}
	after := objects(t, b, "")
	loc := locate(t, s, d1)
	want := []string{loc.Key}
	if s.Packed() {
		want = []string{objects(t, b, "packindex/")[0], loc.Key} // one pack, one pack index
	}
	if fmt.Sprint(before) != fmt.Sprint(after) || fmt.Sprint(after) != fmt.Sprint(want) {
		t.Fatalf("objects %v then %v; want %v", before, after, want)
	}
}

// mustSync makes what s holds durable: in the pack layout it writes the
// open pack, so the bucket holds the chunks put so far.
func mustSync(t *testing.T, s *chunk.Store) {
	t.Helper()
	if err := s.Sync(ctxOf(t)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// locate syncs s and returns where chunk d's object is.
func locate(t *testing.T, s *chunk.Store, d chunk.Digest) chunk.Location {
	t.Helper()
	mustSync(t, s)
	loc, err := s.Locate(ctxOf(t), d)
	if err != nil {
		t.Fatalf("Locate(%s): %v", d, err)
	}
	return loc
}

// chunkObject returns chunk d's object as the bucket holds it.
func chunkObject(t *testing.T, s *chunk.Store, b Bucket, d chunk.Digest) []byte {
	t.Helper()
	loc := locate(t, s, d)
	body, err := b.ReadAll(ctxOf(t), loc.Key)
	if err != nil {
		t.Fatalf("read %s: %v", loc.Key, err)
	}
	return body[loc.Off : loc.Off+loc.Len]
}

// rewrite replaces chunk d's object with edit(object), in place in its
// pack. An edit that shortens it cuts the pack off after it.
func rewrite(t *testing.T, s *chunk.Store, b Bucket, d chunk.Digest, edit func([]byte) []byte) {
	t.Helper()
	loc := locate(t, s, d)
	body, err := b.ReadAll(ctxOf(t), loc.Key)
	if err != nil {
		t.Fatalf("read %s: %v", loc.Key, err)
	}
	obj := edit(bytes.Clone(body[loc.Off : loc.Off+loc.Len]))
	if int64(len(obj)) == loc.Len {
		copy(body[loc.Off:], obj)
	} else {
		body = append(body[:loc.Off], obj...)
	}
	if err := b.WriteAll(ctxOf(t), loc.Key, body, nil); err != nil {
		t.Fatalf("write %s: %v", loc.Key, err)
	}
}

func testFlippedByte(t *testing.T, b Bucket) {
	stores := map[string]*chunk.Store{
		"encrypted": encrypted(t, b),
		"plaintext": newStore(t, b, chunk.Options{Plaintext: true}),
	}
	datas := map[string][]byte{
		"random":       Random(1 << 20),
		"compressible": Compressible(1<<20, 5),
	}
	for sname, s := range stores {
		for dname, plain := range datas {
			// Positions: in the flags, in the length, mid-body, last byte.
			for _, pos := range []int{4, 9, -2, -1} {
				t.Run(fmt.Sprintf("%s/%s/%d", sname, dname, pos), func(t *testing.T) {
					plain := append(bytes.Clone(plain), byte(pos), 's', sname[0], dname[0]) // a chunk of its own
					d, _ := mustPut(t, s, plain)
					rewrite(t, s, b, d, func(body []byte) []byte {
						i := pos
						switch pos {
						case -2:
							i = len(body) / 2
						case -1:
							i = len(body) - 1
						}
						body[i] ^= 0x20
						return body
					})
					_, err := s.Get(ctxOf(t), d, len(plain))
					WantCode(t, err, errs.Internal, "ChunkCorrupt")
					_, err = s.ReadInto(ctxOf(t), d, len(plain), make([]byte, len(plain)))
					WantCode(t, err, errs.Internal, "ChunkCorrupt")
				})
			}
		}
	}
	t.Run("truncated", func(t *testing.T) {
		s := stores["encrypted"]
		plain := Random(5000)
		d, _ := mustPut(t, s, plain)
		rewrite(t, s, b, d, func(body []byte) []byte { return body[:len(body)-100] })
		_, err := s.Get(ctxOf(t), d, len(plain))
		WantCode(t, err, errs.Internal, "ChunkCorrupt")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := stores["encrypted"].Get(ctxOf(t), chunk.Sum([]byte("never stored")), 12)
		WantCode(t, err, errs.NotFound, "ChunkNotFound")
	})
}

// testRenamedObject copies a valid body under another chunk's name: the
// digest bound into GCM's additional data (and, in the clear, the re-hash)
// refuses it.
func testRenamedObject(t *testing.T, b Bucket) {
	for i, s := range []*chunk.Store{encrypted(t, b), newStore(t, b, chunk.Options{Plaintext: true})} {
		a, c := Random(4096), Random(4096)
		da, _ := mustPut(t, s, a)
		dc, _ := mustPut(t, s, c)
		body := chunkObject(t, s, b, da)
		rewrite(t, s, b, dc, func([]byte) []byte { return body })
		_, err := s.Get(ctxOf(t), dc, len(c))
		WantCode(t, err, errs.Internal, "ChunkCorrupt")
		if i == 0 && !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("encrypted object under another name: %v; want GCM to refuse it, before the re-hash", err)
		}
	}
}

func testWrongKey(t *testing.T, b Bucket) {
	plain := Compressible(1<<16, 6)
	writer := encrypted(t, b)
	d, _ := mustPut(t, writer, plain)
	mustSync(t, writer)

	_, err := encrypted(t, b).Get(ctxOf(t), d, len(plain))
	WantCode(t, err, errs.Internal, "ChunkKeyMismatch")

	_, err = newStore(t, b, chunk.Options{Plaintext: true}).Get(ctxOf(t), d, len(plain))
	WantCode(t, err, errs.Internal, "ChunkKeyMissing")

	// Even with the key id forged to match, the wrong key cannot open it.
	other := encrypted(t, b)
	probe, _ := mustPut(t, other, []byte("probe"))
	idBody := chunkObject(t, other, b, probe)
	rewrite(t, writer, b, d, func(body []byte) []byte {
		copy(body[12:20], idBody[12:20])
		return body
	})
	_, err = other.Get(ctxOf(t), d, len(plain))
	WantCode(t, err, errs.Internal, "ChunkCorrupt")
}

func sampleIndex(t *testing.T, s *chunk.Store, diskSize, chunkSize int64) chunk.Index {
	t.Helper()
	idx := chunk.Index{
		DiskSize:  diskSize,
		ChunkSize: chunkSize,
		CreatedAt: time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.UTC),
	}
	for i := int64(0); i < chunk.NumChunks(diskSize, chunkSize); i++ {
		n := min(chunkSize, diskSize-i*chunkSize)
		var plain []byte
		if i%3 != 2 {
			plain = Compressible(int(n), uint64(i)+100)
		} else {
			plain = make([]byte, n)
		}
		d, _ := mustPut(t, s, plain)
		idx.Digests = append(idx.Digests, d)
	}
	return idx
}

func testIndex(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	ctx := ctxOf(t)
	idx := sampleIndex(t, s, 5<<16+1000, 1<<16) // 6 chunks, the last 1000 bytes
	if err := s.PutIndex(ctx, "disk-a/snap-1", idx); err != nil {
		t.Fatalf("PutIndex: %v", err)
	}
	got, err := s.GetIndex(ctx, "disk-a/snap-1")
	if err != nil {
		t.Fatalf("GetIndex: %v", err)
	}
	if got.DiskSize != idx.DiskSize || got.ChunkSize != idx.ChunkSize || !got.CreatedAt.Equal(idx.CreatedAt) ||
		fmt.Sprint(got.Digests) != fmt.Sprint(idx.Digests) {
		t.Fatalf("GetIndex = %+v, want %+v", got, idx)
	}
	// Restore the disk through the index.
	for i, d := range got.Digests {
		n := got.ChunkLen(i)
		data := mustGet(t, s, d, n)
		if len(data) != n {
			t.Fatalf("chunk %d: %d bytes, want %d", i, len(data), n)
		}
	}
	if got.ChunkLen(len(got.Digests)-1) != 1000 {
		t.Fatalf("last chunk length %d, want 1000", got.ChunkLen(len(got.Digests)-1))
	}

	// Idempotent retry; conflicting rewrite.
	if err := s.PutIndex(ctx, "disk-a/snap-1", idx); err != nil {
		t.Fatalf("PutIndex again: %v", err)
	}
	other := idx
	other.CreatedAt = other.CreatedAt.Add(time.Second)
	WantCode(t, s.PutIndex(ctx, "disk-a/snap-1", other), errs.Conflict, "IndexExists")

	if err := s.PutIndex(ctx, "disk-a/snap-2", other); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIndex(ctx, "disk-b/snap-1", sampleIndex(t, s, 0, 1<<16)); err != nil {
		t.Fatalf("PutIndex of an empty disk: %v", err)
	}
	names, err := s.ListIndexes(ctx, "disk-a/")
	if err != nil || fmt.Sprint(names) != "[disk-a/snap-1 disk-a/snap-2]" {
		t.Fatalf("ListIndexes(disk-a/) = %v, %v", names, err)
	}
	if err := s.DeleteIndex(ctx, "disk-a/snap-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIndex(ctx, "disk-a/snap-1"); err != nil {
		t.Fatalf("second DeleteIndex: %v", err)
	}
	_, err = s.GetIndex(ctx, "disk-a/snap-1")
	WantCode(t, err, errs.NotFound, "IndexNotFound")
	names, err = s.ListIndexes(ctx, "")
	if err != nil || fmt.Sprint(names) != "[disk-a/snap-2 disk-b/snap-1]" {
		t.Fatalf("ListIndexes() = %v, %v", names, err)
	}
	if names, err := s.ListIndexes(ctx, "nothing-here"); err != nil || names == nil || len(names) != 0 {
		t.Fatalf("ListIndexes(nothing-here) = %#v, %v; want an empty list", names, err)
	}

	for _, bad := range []string{"", "../x", "a//b", "a/./b", "sp ace", "x.tmp", "/lead"} {
		WantCode(t, s.PutIndex(ctx, bad, idx), errs.Invalid, "InvalidIndexName")
	}
	short := idx
	short.Digests = short.Digests[1:]
	WantCode(t, s.PutIndex(ctx, "short", short), errs.Invalid, "InvalidIndex")
}

func testCorruptIndex(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	ctx := ctxOf(t)
	idx := sampleIndex(t, s, 3<<16, 1<<16)
	if err := s.PutIndex(ctx, "snap", idx); err != nil {
		t.Fatal(err)
	}
	raw, err := b.ReadAll(ctx, chunk.IndexKey("snap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{0, 5, 9, 30, 50, len(raw) - 1} {
		bad := bytes.Clone(raw)
		bad[pos] ^= 1
		if err := b.WriteAll(ctx, chunk.IndexKey("snap"), bad, nil); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetIndex(ctx, "snap")
		WantCode(t, err, errs.Internal, "IndexCorrupt")
	}
	if err := b.WriteAll(ctx, chunk.IndexKey("snap"), raw[:len(raw)-1], nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetIndex(ctx, "snap")
	WantCode(t, err, errs.Internal, "IndexCorrupt")
}

// testListAndDelete: List and Delete are the sweep of version-1 chunk
// objects; packs have ListPacks and RewritePack (the chunk package's own
// pack tests).
func testListAndDelete(t *testing.T, b Bucket) {
	if b.PackSize >= 0 {
		s := encrypted(t, b)
		mustPut(t, s, Random(1000))
		mustSync(t, s)
		if err := s.List(ctxOf(t), func(i chunk.Info) error { return fmt.Errorf("listed %s", i.Digest) }); err != nil {
			t.Fatalf("List in the pack layout: %v; want no version-1 objects", err)
		}
		return
	}
	s := encrypted(t, b)
	ctx := ctxOf(t)
	want := map[chunk.Digest]int64{}
	plains := map[chunk.Digest][]byte{}
	for i := range 20 {
		p := Compressible(1000+i, uint64(i))
		d, n := mustPut(t, s, p)
		want[d] = n
		plains[d] = p
	}
	// Something under chunks/ that is not a chunk: a crashed writer's file.
	if err := b.WriteAll(ctx, "chunks/abcd/not-a-chunk.123.tmp", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	seen := map[chunk.Digest]int64{}
	err := s.List(ctx, func(info chunk.Info) error {
		if info.ModTime.IsZero() {
			t.Errorf("%s: no ModTime", info.Digest)
		}
		seen[info.Digest] = info.Stored
		return nil
	})
	if err != nil || fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("List = %v, %v; want %v", seen, err, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.List(ctx, func(chunk.Info) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("List with a failing fn = %v after %d calls", err, calls)
	}

	var victim chunk.Digest
	for d := range want {
		victim = d
		break
	}
	if err := s.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, victim); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if ok, err := s.Has(ctx, victim); err != nil || ok {
		t.Fatalf("Has(deleted) = %v, %v", ok, err)
	}
	_, err = s.Get(ctx, victim, len(plains[victim]))
	WantCode(t, err, errs.NotFound, "ChunkNotFound")
	n := 0
	if err := s.List(ctx, func(chunk.Info) error { n++; return nil }); err != nil || n != len(want)-1 {
		t.Fatalf("List after Delete: %d chunks, %v", n, err)
	}
	// A deleted chunk can be stored again.
	if _, n := mustPut(t, s, plains[victim]); n == 0 {
		t.Fatal("re-Put of a deleted chunk stored nothing")
	}
}

func testConcurrentSamePut(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	plain := append(Random(1<<20), Compressible(1<<20, 7)...)
	const writers = 8
	var wg sync.WaitGroup
	digests := make([]chunk.Digest, writers)
	stored := make([]int64, writers)
	perr := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			digests[i], stored[i], perr[i] = s.Put(ctxOf(t), bytes.Clone(plain))
		})
	}
	close(start)
	wg.Wait()
	var total int64
	for i := range writers {
		if perr[i] != nil || digests[i] != digests[0] {
			t.Fatalf("writer %d: %s, %v", i, digests[i], perr[i])
		}
		total += stored[i]
	}
	loc := locate(t, s, digests[0])
	prefix := "chunks/"
	if s.Packed() {
		prefix = "packs/"
	}
	if keys := objects(t, b, prefix); len(keys) != 1 || keys[0] != loc.Key {
		t.Fatalf("objects %v, want just %s", keys, loc.Key)
	}
	if total != loc.Len {
		t.Fatalf("writers reported %d bytes stored, the object is %d", total, loc.Len)
	}
	if got := mustGet(t, s, digests[0], len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("Get after concurrent Puts returned other bytes")
	}
}

func testConcurrentPutGet(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	const workers, each = 8, 12
	var wg sync.WaitGroup
	failed := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// Half the chunks are shared between workers.
				seed := uint64(w*each + i)
				if i%2 == 0 {
					seed = uint64(i)
				}
				plain := Compressible(64<<10, seed)
				d, _, err := s.Put(ctxOf(t), plain)
				if err == nil {
					var got []byte
					got, err = s.Get(ctxOf(t), d, len(plain))
					if err == nil && !bytes.Equal(got, plain) {
						err = fmt.Errorf("chunk %s read back wrong", d)
					}
				}
				if err != nil {
					failed <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Error(err)
	}
	if n := storedChunks(t, s, b); n != workers*each/2+each/2 {
		t.Fatalf("%d chunk objects, want %d", n, workers*each/2+each/2)
	}
}

// storedChunks counts the chunks s has made durable in b.
func storedChunks(t *testing.T, s *chunk.Store, b Bucket) int {
	t.Helper()
	if !s.Packed() {
		return len(objects(t, b, "chunks/"))
	}
	mustSync(t, s)
	n := 0
	if err := s.ListPacks(ctxOf(t), func(p chunk.PackInfo) error { n += len(p.Chunks); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// testReadInto: ReadInto returns what Get returns, in the caller's buffer,
// for random, compressible and zero chunks, and refuses what Get refuses.
func testReadInto(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	buf := make([]byte, 0, 1<<20)
	for name, plain := range map[string][]byte{
		"random": Random(1 << 20), "compressible": Compressible(1<<20, 3), "short": Random(777), "zero": make([]byte, 4096),
	} {
		d, _ := mustPut(t, s, plain)
		got, err := s.ReadInto(ctxOf(t), d, len(plain), buf)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: ReadInto = %d bytes, %v", name, len(got), err)
		}
		if len(got) > 0 && &got[0] != &buf[:1][0] {
			t.Fatalf("%s: ReadInto did not use the caller's buffer", name)
		}
	}
	d, _ := mustPut(t, s, Random(4096))
	if _, err := s.ReadInto(ctxOf(t), d, 4096, make([]byte, 100)); err == nil {
		t.Fatal("ReadInto into a short buffer succeeded")
	}
	if _, err := s.ReadInto(ctxOf(t), d, 4095, buf); err == nil {
		t.Fatal("ReadInto with the wrong size succeeded")
	}
	var missing chunk.Digest
	missing[0] = 1
	_, err := s.ReadInto(ctxOf(t), missing, 10, buf)
	WantCode(t, err, errs.NotFound, "ChunkNotFound")
}

// testQuarantine: a chunk that fails its check on a read is moved to
// quarantine, so the next Put of its data stores it again instead of
// deduplicating onto the damage; a good chunk read with a wrong size, or
// sealed with another key, stays where it is.
func testQuarantine(t *testing.T, b Bucket) {
	s := encrypted(t, b)
	plain := Compressible(1<<20, 9)
	d, _ := mustPut(t, s, plain)
	rewrite(t, s, b, d, func(body []byte) []byte { body[len(body)/2] ^= 1; return body })
	for i, read := range []func() error{
		func() error { _, err := s.Get(ctxOf(t), d, len(plain)); return err },
		func() error { _, err := s.ReadInto(ctxOf(t), d, len(plain), make([]byte, len(plain))); return err },
	} {
		err := read()
		WantCode(t, err, errs.Internal, "ChunkCorrupt")
		if !errors.Is(err, chunk.ErrQuarantined) {
			t.Fatalf("read %d of a damaged chunk: %v; want it quarantined", i, err)
		}
	}
	if _, err := s.Locate(ctxOf(t), d); !errs.Is(err, errs.NotFound) {
		t.Fatalf("Locate(damaged chunk) = %v; want it gone from chunks/ and the pack index", err)
	}
	if got := objects(t, b, "chunks/"); len(got) != 0 {
		t.Fatalf("damaged chunk still under chunks/: %v", got)
	}
	if got := objects(t, b, "quarantine/"); len(got) != 1 || got[0] != chunk.QuarantineKey(d) {
		t.Fatalf("quarantine holds %v; want %s", got, chunk.QuarantineKey(d))
	}
	var listed []chunk.Digest
	if err := s.ListQuarantine(ctxOf(t), func(i chunk.Info) error { listed = append(listed, i.Digest); return nil }); err != nil || len(listed) != 1 || listed[0] != d {
		t.Fatalf("ListQuarantine: %v, %v", listed, err)
	}
	if err := s.List(ctxOf(t), func(i chunk.Info) error { return fmt.Errorf("listed %s", i.Digest) }); err != nil {
		t.Fatalf("a quarantined object is not a chunk: %v", err)
	}
	if ok, err := s.Has(ctxOf(t), d); ok || err != nil {
		t.Fatalf("Has(quarantined) = %v, %v; want false", ok, err)
	}
	if _, stored := mustPut(t, s, plain); stored == 0 {
		t.Fatal("Put of a quarantined chunk's data deduplicated instead of storing it again")
	}
	if got := mustGet(t, s, d, len(plain)); !bytes.Equal(got, plain) {
		t.Fatal("the chunk stored again reads back wrong")
	}
	if err := s.DeleteQuarantined(ctxOf(t), d); err != nil {
		t.Fatal(err)
	}
	if got := objects(t, b, "quarantine/"); len(got) != 0 {
		t.Fatalf("after DeleteQuarantined: %v", got)
	}

	// Not damage: a wrong size, another key.
	good := Random(5000)
	dg, _ := mustPut(t, s, good)
	mustSync(t, s)
	_, err := s.Get(ctxOf(t), dg, len(good)+1)
	WantCode(t, err, errs.Internal, "ChunkCorrupt")
	_, err = encrypted(t, b).Get(ctxOf(t), dg, len(good))
	WantCode(t, err, errs.Internal, "ChunkKeyMismatch")
	if moved, err := s.Quarantine(ctxOf(t), dg); moved || err != nil {
		t.Fatalf("Quarantine(good chunk) = %v, %v", moved, err)
	}
	if got := mustGet(t, s, dg, len(good)); !bytes.Equal(got, good) {
		t.Fatal("a good chunk was quarantined")
	}
}
