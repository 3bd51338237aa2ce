package chunk

import (
	"context"
	"slices"

	"github.com/coffer-backup/coffer/internal/directio"
)

// ChunkRead is one chunk of a ReadIntoMany: the chunk to read, its size,
// and where its plaintext goes.
type ChunkRead struct {
	Digest Digest
	Size   int
	// Dst must have room for Size bytes; the plaintext is written into
	// its storage.
	Dst []byte
	// Err is set by ReadIntoMany: nil, or the error ReadInto would have
	// returned for this chunk.
	Err error
}

// MaxCoalescedRead is the most bytes ReadIntoMany reads from a pack at
// once: a whole default pack, which is written once it reaches
// DefaultPackSize and so holds up to a chunk more (with 1 MiB chunks,
// sixteen and their headers); a cap of exactly 16 MiB would cut each
// pack's reads in two.
const MaxCoalescedRead = DefaultPackSize + 2<<20

// coalesceGap is the most bytes of other chunks ReadIntoMany reads and
// throws away to join two wanted ones in one read: two chunks of the
// default size with their headers. A backup's parallel workers fill a pack
// with chunks from a few MiB around each other, not in disk order, so a
// restore's wanted chunks sit in a pack with others between them; on a
// 1 GiB disk so stored, 32 MiB of disk read in runs joined over 1 MiB
// gaps took 151 reads, over this gap 90, for 13% more bytes read.
const coalesceGap = 2<<20 + 64<<10

// ReadIntoMany reads every chunk of reqs into its Dst, checked as ReadInto
// checks, setting each request's Err. Chunks that sit next to each other
// in one pack (a backup writes a disk's chunks in order, so a restore's
// usually do) are fetched with one ranged read of at most
// MaxCoalescedRead bytes: one request on S3 for up to a pack's worth of
// chunks where ReadInto makes one a chunk. A chunk that cannot be read that
// way (a version-1 object, a pack still in memory, a pack gone, a body
// that fails its check) is read again alone with ReadInto, so its errors,
// quarantine and fallback to another copy are ReadInto's. Safe for
// concurrent use; requests are read one run after another.
func (s *Store) ReadIntoMany(ctx context.Context, reqs []ChunkRead) {
	inRun := make([]bool, len(reqs))
	if s.pk != nil {
		if err := s.loadPacks(ctx); err != nil {
			for i := range reqs {
				reqs[i].Err = err
			}
			return
		}
		packed := s.locateMany(reqs)
		for _, p := range packed {
			inRun[p.req] = true
		}
		for _, run := range coalesce(packed) {
			for _, i := range s.readRun(ctx, reqs, run) {
				inRun[i] = false
			}
		}
	}
	// The rest: zeros, bad requests (ReadInto's error), chunks in a pack
	// still in memory, version-1 objects, chunks another process stored
	// since the pack index was read, and those a run could not read.
	for i := range reqs {
		if inRun[i] {
			reqs[i].Err = nil
			continue
		}
		r := &reqs[i]
		plain, err := s.ReadInto(ctx, r.Digest, r.Size, r.Dst)
		r.Err = err
		if err == nil && len(plain) > 0 && &plain[0] != &r.Dst[:1][0] {
			copy(r.Dst[:r.Size], plain)
		}
	}
}

// packedRead is a request of a ReadIntoMany whose chunk is in a written
// pack.
type packedRead struct {
	req int
	loc chunkLoc
}

// locateMany finds the chunks of reqs that are in written packs.
func (s *Store) locateMany(reqs []ChunkRead) []packedRead {
	pk := s.pk
	pk.mu.Lock()
	defer pk.mu.Unlock()
	out := make([]packedRead, 0, len(reqs))
	for i, r := range reqs {
		if r.Digest.IsZero() || r.Size <= 0 || r.Size > MaxChunkSize || cap(r.Dst) < r.Size {
			continue
		}
		loc, ok := pk.index[r.Digest]
		if !ok || loc.p.buf != nil || !loc.p.written {
			continue
		}
		out = append(out, packedRead{req: i, loc: loc})
	}
	return out
}

// coalesce sorts reads by pack and offset and cuts them into runs that one
// ranged read covers: same pack, gaps of at most coalesceGap, at most
// MaxCoalescedRead bytes from the first byte to the last.
func coalesce(reads []packedRead) [][]packedRead {
	slices.SortFunc(reads, func(a, b packedRead) int {
		if a.loc.p != b.loc.p {
			return slices.Compare(a.loc.p.id[:], b.loc.p.id[:])
		}
		return int(a.loc.off) - int(b.loc.off)
	})
	var runs [][]packedRead
	for i := 0; i < len(reads); {
		j := i + 1
		start := int64(reads[i].loc.off)
		end := start + int64(reads[i].loc.n)
		for ; j < len(reads); j++ {
			next := reads[j].loc
			nend := max(end, int64(next.off)+int64(next.n))
			if next.p != reads[i].loc.p || int64(next.off) > end+coalesceGap || nend-start > MaxCoalescedRead {
				break
			}
			end = nend
		}
		runs = append(runs, reads[i:j])
		i = j
	}
	return runs
}

// readRun reads one run with one ranged read and opens each chunk of it
// into its request's Dst. It returns the requests left to read alone:
// all of them when the read failed, those that failed their check.
func (s *Store) readRun(ctx context.Context, reqs []ChunkRead, run []packedRead) (retry []int) {
	p := run[0].loc.p
	start := int64(run[0].loc.off)
	end := start
	for _, r := range run {
		end = max(end, int64(r.loc.off)+int64(r.loc.n))
	}
	n := end - start
	buf := s.runBuf(int(n) + 2*directio.Align)
	defer s.runBufs.Put(buf)
	span, err := s.backend.ReadRange(ctx, PackKey(p.id), start, n, *buf)
	if err != nil {
		for _, r := range run {
			retry = append(retry, r.req)
		}
		return retry
	}
	for _, r := range run {
		q := &reqs[r.req]
		off := int64(r.loc.off) - start
		// Clipped: it is decrypted in place and must not grow into the
		// next chunk's bytes.
		body := span[off : off+int64(r.loc.n) : off+int64(r.loc.n)]
		largest := sealHeaderLen + q.Size + tagLen
		if len(body) > largest {
			retry = append(retry, r.req)
			continue
		}
		plain, err := s.codec.openInto(q.Digest, body, q.Size, q.Dst[:0:q.Size])
		if err != nil {
			retry = append(retry, r.req)
			continue
		}
		if len(plain) > 0 && &plain[0] != &q.Dst[:1][0] {
			copy(q.Dst[:q.Size], plain)
		}
	}
	return retry
}

// runBuf returns a pooled buffer for a run of n bytes, aligned for direct
// I/O; runBufs.Put returns it. Runs have their own pool: their buffers
// are up to MaxCoalescedRead, the codec's a chunk.
func (s *Store) runBuf(n int) *[]byte {
	if p, ok := s.runBufs.Get().(*[]byte); ok && cap(*p) >= n {
		return p
	}
	b := directio.AlignedBuf(max(n, MaxCoalescedRead+2*directio.Align))
	return &b
}
