package chunk_test

import (
	"bytes"
	"net/url"
	"testing"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/testenv"
)

// TestReadIntoManyCoalesces: reading back a 64 MiB disk written in order
// takes about one ranged read a pack (16 MiB), where ReadInto takes one a
// chunk; the bytes are the same, and a corrupt chunk in the middle of a
// run fails alone, with ReadInto's error.
func TestReadIntoManyCoalesces(t *testing.T) {
	t.Run("mem", func(t *testing.T) {
		b := memblob.OpenBucket(nil)
		defer b.Close()
		readIntoManyCoalesces(t, b)
	})
	t.Run("s3", func(t *testing.T) {
		base, err := url.Parse(testenv.S3(t))
		if err != nil {
			t.Fatal(err)
		}
		readIntoManyCoalesces(t, s3Bucket(t, base))
	})
}

func readIntoManyCoalesces(t *testing.T, b *blob.Bucket) {
	ctx := t.Context()
	const chunks, chunkSize = 64, 1 << 20
	data := chunktest.Random(chunks * chunkSize)
	key := chunktest.Key(t)
	w, err := chunk.New(b, chunk.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	digests := make([]chunk.Digest, chunks+1)
	for i := range chunks {
		if digests[i], _, err = w.Put(ctx, data[i*chunkSize:(i+1)*chunkSize]); err != nil {
			t.Fatal(err)
		}
	}
	digests[chunks] = chunk.ZeroDigest // a hole among the data
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	// A fresh store, as a restore after a restart reads: no pack in memory.
	faulty := chunktest.NewFaulty(&chunk.BucketBackend{Bucket: b})
	r, err := chunk.NewOnBackend(faulty, chunk.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := func(i int) []byte {
		if i == chunks {
			return make([]byte, chunkSize)
		}
		return data[i*chunkSize : (i+1)*chunkSize]
	}
	readAll := func() []chunk.ChunkRead {
		reqs := make([]chunk.ChunkRead, len(digests))
		for i, d := range digests {
			reqs[i] = chunk.ChunkRead{Digest: d, Size: chunkSize, Dst: bytes.Repeat([]byte{0xee}, chunkSize)}
		}
		r.ReadIntoMany(ctx, reqs)
		return reqs
	}
	if _, err := r.Has(ctx, digests[0]); err != nil { // loads the pack indexes: what is counted next is reads of chunks
		t.Fatal(err)
	}
	before := faulty.Calls(chunktest.OpRead)
	reqs := readAll()
	many := faulty.Calls(chunktest.OpRead) - before
	for i, q := range reqs {
		if q.Err != nil {
			t.Fatalf("chunk %d: %v", i, q.Err)
		}
		if !bytes.Equal(q.Dst, want(i)) {
			t.Fatalf("chunk %d read back other bytes", i)
		}
	}
	before = faulty.Calls(chunktest.OpRead)
	for i := range chunks {
		if _, err := r.ReadInto(ctx, digests[i], chunkSize, make([]byte, chunkSize)); err != nil {
			t.Fatal(err)
		}
	}
	single := faulty.Calls(chunktest.OpRead) - before
	t.Logf("backend reads for %d chunks: ReadIntoMany %d, ReadInto %d", chunks, many, single)
	if limit := chunks*chunkSize/chunk.MaxCoalescedRead + 2; many > limit {
		t.Errorf("ReadIntoMany made %d backend reads, want at most %d", many, limit)
	}
	if single < chunks {
		t.Errorf("ReadInto made %d backend reads for %d chunks: the comparison counts nothing", single, chunks)
	}

	// One chunk in the middle of a run goes bad: it alone fails, as
	// ReadInto fails it, and the chunks around it still read.
	bad := 20
	loc, err := r.Locate(ctx, digests[bad])
	if err != nil {
		t.Fatal(err)
	}
	pack, err := b.ReadAll(ctx, loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	pack[loc.Off+loc.Len/2] ^= 1
	if err := b.WriteAll(ctx, loc.Key, pack, nil); err != nil {
		t.Fatal(err)
	}
	reqs = readAll()
	for i, q := range reqs {
		if i == bad {
			chunktest.WantCode(t, q.Err, errs.Internal, "ChunkCorrupt")
			continue
		}
		if q.Err != nil {
			t.Fatalf("chunk %d beside a corrupt one: %v", i, q.Err)
		}
		if !bytes.Equal(q.Dst, want(i)) {
			t.Fatalf("chunk %d beside a corrupt one read back other bytes", i)
		}
	}
}

// TestReadIntoManyUnflushed: chunks still in a pack in memory, and a
// request too large for its buffer, get what ReadInto gives them.
func TestReadIntoManyUnflushed(t *testing.T) {
	ctx := t.Context()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	s, err := chunk.New(b, chunk.Options{Key: chunktest.Key(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain := chunktest.Random(4096)
	d, _, err := s.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []chunk.ChunkRead{
		{Digest: d, Size: len(plain), Dst: make([]byte, len(plain))},
		{Digest: d, Size: len(plain), Dst: make([]byte, 10)},
	}
	s.ReadIntoMany(ctx, reqs)
	if reqs[0].Err != nil || !bytes.Equal(reqs[0].Dst, plain) {
		t.Fatalf("a chunk in an unwritten pack: %v", reqs[0].Err)
	}
	chunktest.WantCode(t, reqs[1].Err, errs.Invalid, "InvalidChunkSize")
}
