package snapshot_test

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
)

// chunkRanges turns a set of chunk numbers into chunk-aligned ranges, as
// Diff returns them.
func chunkRanges(set map[int64]bool, size int64) []volume.Range {
	out := []volume.Range{}
	for i := int64(0); i*mib < size; i++ {
		if !set[i] {
			continue
		}
		end := min((i+1)*mib, size)
		if l := len(out); l > 0 && out[l-1].Off+out[l-1].Len == i*mib {
			out[l-1].Len = end - out[l-1].Off
		} else {
			out = append(out, volume.Range{Off: i * mib, Len: end - i*mib})
		}
	}
	return out
}

// TestChainOfTen takes ten snapshots of one volume with random 4 KiB and
// 4 MiB writes between them, using the volume's change tracking
// (SwapChanged at each snapshot, CommitChanged once it is stored). Each
// incremental reads exactly the chunks written since the previous one;
// each snapshot restores to the bytes the volume held; Diff between any
// two is the union of the chunks written in between; deleting the first
// five and collecting frees exactly their own chunks and leaves the rest
// restorable.
func TestChainOfTen(t *testing.T) {
	ctx := t.Context()
	store := openStore(t, t.TempDir())
	const size = 40*mib + 7*512
	v, err := volume.Create(filepath.Join(t.TempDir(), "vol"), size)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	n := chunk.NumChunks(size, chunk.DefaultChunkSize)

	img := make([]byte, size) // what the volume holds
	r := rand.New(rand.NewPCG(42, 42))
	reg := snapshot.NewInFlight()

	var (
		idxs    []chunk.Index
		sums    [][32]byte
		touched []map[int64]bool // chunks written before snapshot k
		prev    *chunk.Index
		prevNm  string
	)
	for k := range 10 {
		set := map[int64]bool{}
		writes := 3 + r.IntN(6)
		if k == 0 {
			writes = 12
		}
		for w := range writes {
			length := 4096
			if w%3 == 0 {
				length = 4 * mib
			}
			off := r.Int64N(size - int64(length))
			p := randomBytes(length, uint64(k*100+w))
			copy(img[off:], p)
			if _, err := v.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			for c := off / mib; c <= (off+int64(length)-1)/mib; c++ {
				set[c] = true
			}
		}
		touched = append(touched, set)

		cut, epoch, err := v.SwapChanged()
		if err != nil {
			t.Fatal(err)
		}
		alloc, err := v.Allocated()
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("vol/snap-%02d", k)
		idx, st, err := snapshot.Upload(ctx, store, snapshot.UploadRequest{
			Name: name, Source: v, Changed: cut, Previous: prev, PreviousName: prevNm,
			Allocated: alloc, InFlight: reg, Workers: 2,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.CommitChanged(epoch); err != nil {
			t.Fatal(err)
		}
		if k > 0 {
			if st.Full || st.ChunksRead != int64(len(set)) || st.Reused != n-int64(len(set)) {
				t.Errorf("snapshot %d: stats %+v, want %d chunks read and %d reused", k, st, len(set), n-int64(len(set)))
			}
		} else if !st.Full {
			t.Errorf("first snapshot was not a full read: %+v", st)
		}
		idxs = append(idxs, idx)
		sums = append(sums, sha256.Sum256(img))
		prev, prevNm = &idxs[k], name
	}
	if reg.Len() != 0 {
		t.Errorf("%d digests still registered after the uploads", reg.Len())
	}

	for k, idx := range idxs {
		if sha256.Sum256(restore(t, store, idx)) != sums[k] {
			t.Errorf("snapshot %d restores to other bytes", k)
		}
	}

	// Diff between i and j is the union of what was written after i, up
	// to and including j.
	for _, p := range [][2]int{{0, 1}, {3, 4}, {2, 7}, {0, 9}, {5, 5}} {
		union := map[int64]bool{}
		for k := p[0] + 1; k <= p[1]; k++ {
			for c := range touched[k] {
				union[c] = true
			}
		}
		got, err := snapshot.Diff(idxs[p[0]], idxs[p[1]])
		if err != nil {
			t.Fatal(err)
		}
		if want := chunkRanges(union, size); !slices.Equal(got, want) {
			t.Errorf("Diff(%d, %d) = %v, want %v", p[0], p[1], got, want)
		}
	}

	// Delete the first five snapshots and collect.
	before, beforeN := storedBytes(t, store)
	ownOnly := digestSet(idxs[:5]...)
	for d := range digestSet(idxs[5:]...) {
		delete(ownOnly, d)
	}
	for k := range 5 {
		if err := snapshot.DeleteSnapshot(ctx, store, fmt.Sprintf("vol/snap-%02d", k)); err != nil {
			t.Fatal(err)
		}
	}
	gc := snapshot.NewCollector(store, reg, snapshot.CollectorOptions{Clock: laterClock(), RepackDead: -1})
	st, err := gc.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, afterN := storedBytes(t, store)
	if st.Deleted != len(ownOnly) || afterN != beforeN-len(ownOnly) || st.Indexes != 5 {
		t.Errorf("GC %+v: deleted %d of %d chunks, want the %d only the first five used", st, beforeN-afterN, beforeN, len(ownOnly))
	}
	if after >= before || st.DeletedBytes != before-after {
		t.Errorf("stored bytes %d -> %d, GC says it freed %d", before, after, st.DeletedBytes)
	}
	t.Logf("GC freed %d chunks, %d of %d bytes", st.Deleted, st.DeletedBytes, before)
	for k := 5; k < 10; k++ {
		if sha256.Sum256(restore(t, store, idxs[k])) != sums[k] {
			t.Errorf("snapshot %d restores to other bytes after GC", k)
		}
	}
	mustVerify(t, store)
	if st, err := gc.Run(ctx); err != nil || st.Deleted != 0 {
		t.Errorf("second GC: %+v, %v; want nothing to delete", st, err)
	}
}

func TestDiff(t *testing.T) {
	d := func(b byte) chunk.Digest { return chunk.Digest{b} }
	z := chunk.ZeroDigest
	idx := func(size int64, ds ...chunk.Digest) chunk.Index {
		return chunk.Index{DiskSize: size, ChunkSize: mib, Digests: ds}
	}
	for _, tc := range []struct {
		name string
		a, b chunk.Index
		want []volume.Range
	}{
		{"same", idx(3*mib, d(1), z, d(2)), idx(3*mib, d(1), z, d(2)), []volume.Range{}},
		{"middle", idx(3*mib, d(1), z, d(2)), idx(3*mib, d(1), d(3), d(2)), []volume.Range{{Off: mib, Len: mib}}},
		{"joined", idx(4*mib, d(1), d(2), d(3), d(4)), idx(4*mib, d(1), d(5), d(6), d(4)), []volume.Range{{Off: mib, Len: 2 * mib}}},
		{"short last chunk", idx(2*mib+512, d(1), d(2), d(3)), idx(2*mib+512, d(1), d(2), d(4)), []volume.Range{{Off: 2 * mib, Len: 512}}},
		{"grown", idx(2*mib, d(1), d(2)), idx(4*mib, d(1), d(2), z, z), []volume.Range{{Off: 2 * mib, Len: 2 * mib}}},
		{"grown from a short chunk", idx(mib+512, d(1), z), idx(3*mib, d(1), z, z), []volume.Range{{Off: mib + 512, Len: 2*mib - 512}}},
		{"shrunk the other way", idx(3*mib, d(9), z, z), idx(mib, d(1)), []volume.Range{{Off: 0, Len: 3 * mib}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := snapshot.Diff(tc.a, tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Diff = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := snapshot.Diff(idx(mib, d(1)), chunk.Index{DiskSize: mib, ChunkSize: mib / 2, Digests: []chunk.Digest{d(1), d(2)}}); err == nil {
		t.Error("Diff of different chunk sizes succeeded")
	}
}
