package snapshot_test

import (
	"bytes"
	"fmt"
	"github.com/coffer-backup/coffer/internal/volume"
	"runtime"
	"sync"
	"testing"
	"time"

	"gocloud.dev/blob/memblob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// benchImage is 128 MiB: 60% random chunks, 40% text-like ones.
func benchImage() []byte {
	img := make([]byte, 128*mib)
	for i := 0; i < len(img)/mib; i++ {
		c := img[i*mib : (i+1)*mib]
		if i%5 < 3 {
			fillRandom(c, uint64(i))
			continue
		}
		for j := range c {
			c[j] = "the quick brown fox jumps over the lazy dog\n"[(j*7+i)%44]
		}
		fillRandom(c[:64], uint64(i)) // distinct per chunk
	}
	return img
}

// BenchmarkUploadVsPut compares Upload of an in-memory image with Putting
// the same chunks straight into the store from as many goroutines, both
// into a fresh encrypted directory store: the pipeline's overhead.
//
//	go test -run '^$' -bench UploadVsPut -benchtime 5x ./internal/snapshot/
func BenchmarkUploadVsPut(b *testing.B) {
	img := benchImage()
	for _, backend := range []string{"mem", "dir"} {
		open := func(b *testing.B) *chunk.Store {
			if backend == "dir" {
				return openStore(b, b.TempDir())
			}
			bk := memblob.OpenBucket(&memblob.Options{NoMD5: true})
			s, err := chunk.New(bk, chunk.Options{Key: bytes.Repeat([]byte{7}, chunk.KeySize)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close(); bk.Close() })
			return s
		}
		for _, workers := range []int{runtime.NumCPU(), 2 * runtime.NumCPU(), 4 * runtime.NumCPU()} {
			benchUploadVsPut(b, img, backend, workers, open)
		}
	}
}

func benchUploadVsPut(b *testing.B, img []byte, backend string, workers int, open func(*testing.B) *chunk.Store) {
	{
		b.Run(fmt.Sprintf("%s/put/workers=%d", backend, workers), func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				b.StopTimer()
				store := open(b)
				b.StartTimer()
				var wg sync.WaitGroup
				next := make(chan []byte)
				for range workers {
					wg.Go(func() {
						for c := range next {
							if _, _, err := store.Put(b.Context(), c); err != nil {
								b.Error(err)
							}
						}
					})
				}
				for off := 0; off < len(img); off += chunk.DefaultChunkSize {
					next <- img[off : off+chunk.DefaultChunkSize]
				}
				close(next)
				wg.Wait()
				if err := store.Sync(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%s/upload/workers=%d", backend, workers), func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			for b.Loop() {
				b.StopTimer()
				store := open(b)
				b.StartTimer()
				if _, _, err := snapshot.Upload(b.Context(), store, snapshot.UploadRequest{
					Name: "bench", Source: bytes.NewReader(img), Workers: workers,
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// patternSource is a disk of any size whose chunks are generated from
// their offset, so a 16 GiB source costs no memory.
type patternSource struct{ size int64 }

func (p patternSource) Size() int64 { return p.size }

func (p patternSource) ReadAt(b []byte, off int64) (int, error) {
	fillRandom(b, uint64(off))
	return len(b), nil
}

// BenchmarkIncrementalScaling: an incremental of the same 40 changed chunks
// on a 4 GiB and a 16 GiB disk (previous index stored; directory store).
// The difference is the per-chunk cost of copying the previous index:
// reading it, the lease and the copy.
//
//	go test -run '^$' -bench IncrementalScaling -benchtime 20x ./internal/snapshot/
func BenchmarkIncrementalScaling(b *testing.B) {
	for _, gib := range []int64{4, 16} {
		b.Run(fmt.Sprintf("%dGiB", gib), func(b *testing.B) {
			size := gib << 30
			store := openStore(b, b.TempDir())
			n := chunk.NumChunks(size, chunk.DefaultChunkSize)
			prev := chunk.Index{DiskSize: size, ChunkSize: chunk.DefaultChunkSize, Digests: make([]chunk.Digest, n), CreatedAt: time.Unix(1, 0)}
			for i := range prev.Digests {
				if i%5 < 3 {
					prev.Digests[i] = chunk.Sum(fmt.Appendf(nil, "%d", i))
				}
			}
			if err := store.PutIndex(b.Context(), "prev", prev); err != nil {
				b.Fatal(err)
			}
			changed := volume.NewBitmap(size / volume.DefaultBlockSize)
			for k := range int64(10) { // 10 extents of 4 MiB
				at := (k*size/10/mib*mib + 3*mib) / volume.DefaultBlockSize
				changed.SetRange(at, at+4*mib/volume.DefaultBlockSize)
			}
			k := 0
			for b.Loop() {
				k++
				_, st, err := snapshot.Upload(b.Context(), store, snapshot.UploadRequest{
					Name: fmt.Sprintf("next-%d", k), Source: patternSource{size}, Changed: changed,
					Previous: &prev, PreviousName: "prev",
				})
				if err != nil {
					b.Fatal(err)
				}
				if st.ChunksRead != 40 {
					b.Fatalf("read %d chunks, want 40", st.ChunksRead)
				}
			}
		})
	}
}
