package chunk_test

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
)

// benchSizes are the chunk sizes DefaultChunkSize was chosen among.
var benchSizes = []int{512 << 10, 1 << 20, 4 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// mixedChunk is half random, half text-like: a disk with some compressed
// or encrypted files and some logs and binaries.
func mixedChunk(n int) []byte {
	return append(chunktest.Random(n/2), chunktest.Compressible(n-n/2, 42)...)
}

// BenchmarkPut measures Put of fresh (never deduplicated) chunks: BLAKE3,
// zero check, Exists, zstd, AES-256-GCM and the write, from one goroutine
// and from 4 a core. "mem" isolates the CPU cost; "dir" adds the file system;
// "s3" (when COFFER_TEST_S3 is set) adds a request per chunk.
//
//	go test -run '^$' -bench BenchmarkPut -benchtime 2s ./internal/chunk/
func BenchmarkPut(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) *blob.Bucket
	}{
		{"mem", func(b *testing.B) *blob.Bucket {
			bk := memblob.OpenBucket(&memblob.Options{NoMD5: true})
			b.Cleanup(func() { bk.Close() })
			return bk
		}},
		{"dir", func(b *testing.B) *blob.Bucket {
			bk, err := chunk.OpenBucket(b.Context(), "", b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { bk.Close() })
			return bk
		}},
	}
	if raw := os.Getenv("COFFER_TEST_S3"); raw != "" {
		base, err := url.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		backends = append(backends, struct {
			name string
			open func(b *testing.B) *blob.Bucket
		}{"s3", func(b *testing.B) *blob.Bucket { return s3Bucket(b, base) }})
	}
	for _, be := range backends {
		for _, size := range benchSizes {
			for _, parallel := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/serial", be.name, sizeName(size))
				if parallel {
					name = fmt.Sprintf("%s/%s/parallel", be.name, sizeName(size))
				}
				b.Run(name, func(b *testing.B) {
					bk := be.open(b)
					s, err := chunk.New(bk, chunk.Options{Key: chunktest.Key(b)})
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					template := mixedChunk(size)
					var seq, stored atomic.Int64
					put := func(buf []byte) {
						// A counter in the random half makes each chunk new.
						binary.LittleEndian.PutUint64(buf, uint64(seq.Add(1)))
						_, n, err := s.Put(b.Context(), buf)
						if err != nil {
							b.Fatal(err)
						}
						stored.Add(n)
					}
					b.SetBytes(int64(size))
					b.ResetTimer()
					if parallel {
						// 4 goroutines a core: enough to hide S3 latency.
						b.SetParallelism(4)
						b.RunParallel(func(pb *testing.PB) {
							buf := append([]byte(nil), template...)
							for pb.Next() {
								put(buf)
							}
						})
					} else {
						buf := append([]byte(nil), template...)
						for b.Loop() {
							put(buf)
						}
					}
					b.ReportMetric(float64(stored.Load())/float64(seq.Load())/float64(size), "stored/byte")
					b.ReportMetric(float64(1<<30)/float64(size), "objects/GiB")
				})
			}
		}
	}
}

// BenchmarkGet measures a restore's read path: read, AES-GCM open, zstd
// decode and the BLAKE3 re-check, from memory.
func BenchmarkGet(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			bk := memblob.OpenBucket(&memblob.Options{NoMD5: true})
			defer bk.Close()
			s, err := chunk.New(bk, chunk.Options{Key: chunktest.Key(b)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			plain := mixedChunk(size)
			d, _, err := s.Put(b.Context(), plain)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Get(b.Context(), d, size); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkStages splits Put's CPU cost into its parts, one core.
func BenchmarkStages(b *testing.B) {
	for _, size := range benchSizes {
		plain := mixedChunk(size)
		b.Run("blake3/"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				chunk.Sum(plain)
			}
		})
		b.Run("zstd/"+sizeName(size), func(b *testing.B) {
			enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
			dst := make([]byte, 0, size+1024)
			b.SetBytes(int64(size))
			for b.Loop() {
				dst = enc.EncodeAll(plain, dst[:0])
			}
		})
		b.Run("aesgcm/"+sizeName(size), func(b *testing.B) {
			block, _ := aes.NewCipher(chunktest.Key(b))
			gcm, _ := cipher.NewGCM(block)
			nonce := make([]byte, 12)
			dst := make([]byte, 0, size+16)
			b.SetBytes(int64(size))
			for b.Loop() {
				dst = gcm.Seal(dst[:0], nonce, plain, nil)
			}
		})
	}
}

// BenchmarkIncrementalCost is the other side of the trade-off: how much an
// incremental backup stores when writes touch a fraction of a disk's 64 KiB
// change-tracking blocks (internal/volume.DefaultBlockSize). A changed block
// re-stores its whole chunk, so "stored/changed" is the amplification of
// each chunk size, for two workloads: scattered single blocks (the worst
// case) and 64 KiB-1 MiB extents at random offsets (what file systems and
// databases mostly issue). It computes, it does not time.
func BenchmarkIncrementalCost(b *testing.B) {
	const (
		disk      = 64 << 30
		blockSize = 64 << 10
		blocks    = disk / blockSize
	)
	workloads := []struct {
		name  string
		write func(r *rand.Rand, dirty map[int]bool)
	}{
		{"scattered", func(r *rand.Rand, dirty map[int]bool) { dirty[r.IntN(blocks)] = true }},
		{"extents", func(r *rand.Rand, dirty map[int]bool) {
			off := r.Int64N(disk/4096) * 4096
			end := min(off+(64<<10)+r.Int64N(1<<20-64<<10), disk)
			for blk := off / blockSize; blk*blockSize < end; blk++ {
				dirty[int(blk)] = true
			}
		}},
	}
	for _, w := range workloads {
		for _, changed := range []float64{0.001, 0.01, 0.05} {
			for _, size := range benchSizes {
				b.Run(fmt.Sprintf("%s/changed=%.1f%%/%s", w.name, changed*100, sizeName(size)), func(b *testing.B) {
					var amp float64
					for b.Loop() {
						r := rand.New(rand.NewPCG(1, 2))
						dirtyBlocks := map[int]bool{}
						for len(dirtyBlocks) < int(float64(blocks)*changed) {
							w.write(r, dirtyBlocks)
						}
						dirtyChunks := map[int]bool{}
						for blk := range dirtyBlocks {
							dirtyChunks[blk*blockSize/size] = true
						}
						amp = float64(len(dirtyChunks)*size) / float64(len(dirtyBlocks)*blockSize)
					}
					b.ReportMetric(amp, "stored/changed")
				})
			}
		}
	}
}
