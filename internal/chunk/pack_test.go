package chunk_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
	"github.com/coffer-backup/coffer/internal/errs"
)

// countingBackend counts Write calls by key prefix.
type countingBackend struct {
	chunk.Backend
	mu     sync.Mutex
	writes map[string]int
}

func (c *countingBackend) Write(ctx context.Context, key string, body []byte, ifAbsent bool) error {
	c.mu.Lock()
	c.writes[strings.SplitN(key, "/", 2)[0]]++
	c.mu.Unlock()
	return c.Backend.Write(ctx, key, body, ifAbsent)
}

// TestPackWrites: a 64 MiB backup is about size/pack-size writes, not
// size/chunk-size; the version-1 layout, measured the same way, is one
// write a chunk.
func TestPackWrites(t *testing.T) {
	ctx := t.Context()
	const size, chunkSize = 64 << 20, 1 << 20
	data := chunktest.Random(size)
	for _, tc := range []struct {
		packSize  int64
		maxWrites int
	}{
		// Four full packs; the flush before the index writes what is left
		// (none, or a short fifth), then a pack index and the index.
		{chunk.DefaultPackSize, size/chunk.DefaultPackSize + 1 + 2},
		{-1, size/chunkSize + 1},
	} {
		b := memblob.OpenBucket(nil)
		defer b.Close()
		cb := &countingBackend{Backend: &chunk.BucketBackend{Bucket: b}, writes: map[string]int{}}
		s, err := chunk.NewOnBackend(cb, chunk.Options{Key: chunktest.Key(t), PackSize: tc.packSize})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		idx := chunk.Index{DiskSize: size, ChunkSize: chunkSize, CreatedAt: time.Unix(1, 0)}
		for off := 0; off < size; off += chunkSize {
			d, _, err := s.Put(ctx, data[off:off+chunkSize])
			if err != nil {
				t.Fatal(err)
			}
			idx.Digests = append(idx.Digests, d)
		}
		if err := s.PutIndex(ctx, "snap", idx); err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range cb.writes {
			total += n
		}
		t.Logf("pack size %d: writes %v", tc.packSize, cb.writes)
		if total > tc.maxWrites || (tc.packSize > 0 && cb.writes["packs"] < size/int(tc.packSize)) {
			t.Errorf("pack size %d: %d writes %v, want at most %d", tc.packSize, total, cb.writes, tc.maxWrites)
		}
		for i, d := range idx.Digests {
			got, err := s.Get(ctx, d, chunkSize)
			if err != nil || !bytes.Equal(got, data[i*chunkSize:(i+1)*chunkSize]) {
				t.Fatalf("chunk %d: %v", i, err)
			}
		}
	}
}

// TestPackCrash: a process that dies (here: stops, its store never closed)
// at each step between a pack's write and its index's leaves a bucket
// that a new process reads with no chunk lost that an index names, and
// no index naming a chunk that is not there.
func TestPackCrash(t *testing.T) {
	ctx := t.Context()
	const n, cs = 12, 256 << 10 // 3 MiB: one full pack of 2 MiB, one short
	cases := []struct {
		name string
		// fail is the write, counted from the first Put, that fails and
		// ends the process; torn stores its first bytes first.
		fail   int
		torn   bool
		wantOK bool // the index was written
		// wantChunks: the chunks a new process finds stored.
		wantChunks int
	}{
		{name: "first pack's write", fail: 0, wantChunks: 0},
		{name: "last pack's write", fail: 1, wantChunks: 8},
		{name: "pack index write", fail: 2, wantChunks: n},
		{name: "pack index torn", fail: 2, torn: true, wantChunks: n},
		{name: "index write", fail: 3, wantChunks: n},
		{name: "none", fail: 99, wantOK: true, wantChunks: n},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := memblob.OpenBucket(nil)
			defer b.Close()
			key := chunktest.Key(t)
			faulty := chunktest.NewFaulty(&chunk.BucketBackend{Bucket: b})
			s, err := chunk.NewOnBackend(faulty, chunk.Options{Key: key, PackSize: 2 << 20})
			if err != nil {
				t.Fatal(err)
			}
			fault := chunktest.Fault{Pass: tc.fail, Repeat: 100}
			if tc.torn {
				fault.Torn = 100
			}
			faulty.Inject(chunktest.OpWrite, fault)
			idx := chunk.Index{DiskSize: n * cs, ChunkSize: cs, CreatedAt: time.Unix(1, 0)}
			plains := map[chunk.Digest][]byte{}
			for i := range n {
				p := chunktest.Random(cs) // incompressible: eight fill a pack
				// The Put that fills a pack writes it, and reports a
				// failure of that write, though its chunk is in the pack.
				if _, _, err := s.Put(ctx, p); err != nil && tc.fail > 1 {
					t.Fatalf("Put %d: %v", i, err)
				}
				d := chunk.Sum(p)
				plains[d] = p
				idx.Digests = append(idx.Digests, d)
			}
			err = s.PutIndex(ctx, "snap", idx)
			if (err == nil) != tc.wantOK {
				t.Fatalf("PutIndex = %v, want ok %v", err, tc.wantOK)
			}
			// s is abandoned here, as a killed process leaves it.

			s2, err := chunk.New(b, chunk.Options{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			stored := 0
			for d, p := range plains {
				ok, err := s2.Has(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					continue
				}
				stored++
				if got, err := s2.Get(ctx, d, len(p)); err != nil || !bytes.Equal(got, p) {
					t.Fatalf("chunk %s present but reads %v", d, err)
				}
			}
			if stored != tc.wantChunks {
				t.Errorf("%d chunks stored after the crash, want %d", stored, tc.wantChunks)
			}
			got, err := s2.GetIndex(ctx, "snap")
			switch {
			case errs.Is(err, errs.NotFound):
			case err != nil:
				t.Fatal(err)
			default:
				for _, d := range got.Digests {
					if _, ok := plains[d]; !ok {
						t.Fatalf("index names unknown chunk %s", d)
					}
					if ok, _ := s2.Has(ctx, d); !ok {
						t.Fatalf("index names chunk %s, which is not stored", d)
					}
				}
			}
			// The next writer stores what is missing and dedups the rest.
			for d, p := range plains {
				ok, _ := s2.Has(ctx, d)
				_, st, err := s2.Put(ctx, p)
				if err != nil || (ok && st != 0) || (!ok && st == 0) {
					t.Fatalf("Put after crash of %s (present %v): %d, %v", d, ok, st, err)
				}
			}
			if err := s2.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			// Compaction leaves one pack index, a damaged one included in
			// what it replaces, and a new process finds every chunk.
			if _, err := s2.CompactPackIndexes(ctx); err != nil {
				t.Fatal(err)
			}
			n := 0
			it := b.List(&blob.ListOptions{Prefix: "packindex/"})
			for {
				if _, err := it.Next(ctx); err != nil {
					break
				}
				n++
			}
			if n != 1 {
				t.Errorf("%d pack index objects after compaction, want 1", n)
			}
			s3, err := chunk.New(b, chunk.Options{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			for d, p := range plains {
				if got, err := s3.Get(ctx, d, len(p)); err != nil || !bytes.Equal(got, p) {
					t.Fatalf("chunk %s after compaction: %v", d, err)
				}
			}
		})
	}
}

// TestQuarantineSeenByOtherProcess: a chunk in a pack that one process
// (coffer verify) quarantines is absent to another (coffer serve) once
// that one lists the quarantine, as an upload does, so its next backup
// stores the chunk again instead of deduplicating onto the damage; and a
// third process started afterwards finds the good copy, whatever order it
// reads the three pack indexes in (their names are hashes, so the rounds
// try different orders).
func TestQuarantineSeenByOtherProcess(t *testing.T) {
	for round := range 16 {
		t.Run(fmt.Sprint(round), quarantineSeenByOtherProcess)
	}
}

func quarantineSeenByOtherProcess(t *testing.T) {
	ctx := t.Context()
	b := memblob.OpenBucket(nil)
	defer b.Close()
	key := chunktest.Key(t)
	serve, err := chunk.New(b, chunk.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer serve.Close()
	plain := chunktest.Random(1 << 16)
	d, _, err := serve.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	loc, err := serve.Locate(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	body, err := b.ReadAll(ctx, loc.Key)
	if err != nil {
		t.Fatal(err)
	}
	body[loc.Off+loc.Len/2] ^= 1
	if err := b.WriteAll(ctx, loc.Key, body, nil); err != nil {
		t.Fatal(err)
	}

	verify, err := chunk.New(b, chunk.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer verify.Close()
	if _, err := verify.Get(ctx, d, len(plain)); err == nil {
		t.Fatal("Get of a damaged chunk succeeded")
	}
	if ok, _ := serve.Has(ctx, d); !ok {
		t.Fatal("serve forgot the chunk before it looked at the quarantine") // the premise
	}
	n := 0
	if err := serve.ListQuarantine(ctx, func(chunk.Info) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("ListQuarantine: %d, %v", n, err)
	}
	if ok, err := serve.Has(ctx, d); ok || err != nil {
		t.Fatalf("Has after another process quarantined the chunk = %v, %v; want false", ok, err)
	}
	if _, stored, err := serve.Put(ctx, plain); err != nil || stored == 0 {
		t.Fatalf("Put of the quarantined data = %d, %v; want it stored again", stored, err)
	}
	if got, err := serve.Get(ctx, d, len(plain)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Get after it was stored again: %v", err)
	}
	if err := serve.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	later, err := chunk.New(b, chunk.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	if ok, err := later.Has(ctx, d); !ok || err != nil {
		t.Fatalf("a process started after the chunk was stored again: Has = %v, %v; want true", ok, err)
	}
	if got, err := later.Get(ctx, d, len(plain)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("a process started after the chunk was stored again: Get: %v", err)
	}
}

// TestConcurrentPutsFillOnePack: Puts seal their objects into the open
// pack at once, in whatever order they finish, with Syncs in between. A
// fresh process that has lost every pack index (so it reads each pack's
// own table, which must list the objects in order) finds every chunk a
// Put returned before the last Sync.
func TestConcurrentPutsFillOnePack(t *testing.T) {
	ctx := t.Context()
	key := chunktest.Key(t)
	b := memblob.OpenBucket(nil)
	defer b.Close()
	s, err := chunk.New(b, chunk.Options{Key: key, PackSize: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const workers, each = 8, 12
	data := make([][]byte, workers*each)
	digests := make([]chunk.Digest, len(data))
	var wg sync.WaitGroup
	errc := make(chan error, workers+1)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(data); i += workers {
				// Sizes vary so that objects end mid-pack and packs close
				// with Puts still filling them; half compress.
				n := (64 << 10) + (i%7)*(100<<10)
				if i%2 == 0 {
					data[i] = chunktest.Compressible(n, uint64(i))
				} else {
					data[i] = chunktest.Random(n)
				}
				d, _, err := s.Put(ctx, data[i])
				if err != nil {
					errc <- err
					return
				}
				digests[i] = d
				if i%10 == 0 {
					if err := s.Sync(ctx); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	var indexes []string
	it := b.List(&blob.ListOptions{Prefix: "packindex/"})
	for {
		o, err := it.Next(ctx)
		if err != nil {
			break
		}
		indexes = append(indexes, o.Key)
	}
	if len(indexes) == 0 {
		t.Fatal("no pack index written")
	}
	for _, k := range indexes {
		if err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	fresh, err := chunk.New(b, chunk.Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for i, d := range digests {
		got, err := fresh.Get(ctx, d, len(data[i]))
		if err != nil || !bytes.Equal(got, data[i]) {
			t.Fatalf("chunk %d of %d bytes, read from its pack's own table: %v", i, len(data[i]), err)
		}
	}
}
