package volume

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
)

func BenchmarkWrite4KRandom(b *testing.B) {
	const size = 4 << 30
	v := newVolume(b, size)
	b.SetBytes(4096)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		p := make([]byte, 4096)
		for pb.Next() {
			if _, err := v.WriteAt(p, rng.Int64N(size/4096)*4096); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkWrite1MSequential(b *testing.B) {
	const size = 1 << 30
	v := newVolume(b, size)
	p := make([]byte, MiB)
	for i := range p {
		p[i] = byte(i)
	}
	b.SetBytes(MiB)
	b.ResetTimer()
	off := int64(0)
	for range b.N {
		if _, err := v.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
		off = (off + MiB) % size
	}
}

func BenchmarkRead4KRandom(b *testing.B) {
	const size = 1 << 30
	v := newVolume(b, size)
	if _, err := v.WriteAt(make([]byte, 64*MiB), 0); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4096)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		p := make([]byte, 4096)
		for pb.Next() {
			if _, err := v.ReadAt(p, rng.Int64N(64*MiB/4096)*4096); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTrackingBlockSize is the measurement behind DefaultBlockSize
// (doc.go). For each candidate it reports the cost of a random 4 KiB write
// followed, every 256 writes, by a Flush (the msync of the bitmap grows with
// the number of bitmap pages dirtied), the bitmap size per TiB of disk, and
// the read amplification of an incremental backup (bytes an incremental must
// read / bytes actually written) for two workloads over a 64 GiB disk:
// scattered 4 KiB writes and 64 KiB-1 MiB extents (what filesystems and
// databases mostly issue), each touching 1% of the disk.
func BenchmarkTrackingBlockSize(b *testing.B) {
	for _, bs := range []int64{4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("block=%dK", bs>>10), func(b *testing.B) {
			const size = 64 << 30
			v, err := create(filepath.Join(b.TempDir(), "v"), size, bs, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			var n atomic.Int64
			b.SetBytes(4096)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
				p := make([]byte, 4096)
				for pb.Next() {
					if _, err := v.WriteAt(p, rng.Int64N(size/4096)*4096); err != nil {
						b.Fatal(err)
					}
					if n.Add(1)%256 == 0 {
						if err := v.Flush(); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(int64(1<<40)/bs/8)/1024, "bitmapKiB/TiB")
			b.ReportMetric(amplification(size, bs, 4<<10, 4<<10), "ampl-4k")
			b.ReportMetric(amplification(size, bs, 64<<10, 1<<20), "ampl-extent")
		})
	}
}

// amplification simulates writes of lengths in [minLen, maxLen] at
// 4 KiB-aligned random offsets until writes totalling 1% of a disk of size bytes are issued,
// and returns tracked bytes / written bytes.
func amplification(size, bs, minLen, maxLen int64) float64 {
	rng := rand.New(rand.NewPCG(7, 7))
	written := NewBitmap(size / 4096)
	tracked := NewBitmap(size / bs)
	for issued := int64(0); issued < size/100; {
		n := minLen
		if maxLen > minLen {
			n += rng.Int64N(maxLen-minLen+1) / 4096 * 4096
		}
		off := rng.Int64N((size-n)/4096) * 4096
		written.SetRange(off/4096, (off+n)/4096)
		tracked.SetRange(off/bs, (off+n-1)/bs+1)
		issued += n
	}
	return float64(tracked.Count()*bs) / float64(written.Count()*4096)
}

// BenchmarkOverwrite4K compares a random 4 KiB overwrite of allocated space
// through the volume (tracking included) with a bare pwrite on a file, to
// show what change tracking adds to the hot path.
func BenchmarkOverwrite4K(b *testing.B) {
	const size = 256 * MiB
	v := newVolume(b, size)
	if _, err := v.WriteAt(make([]byte, size), 0); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		w    func([]byte, int64) (int, error)
	}{
		{"volume", v.WriteAt},
		{"bare-pwrite", v.data.first().WriteAt},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(4096)
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
				p := make([]byte, 4096)
				for pb.Next() {
					if _, err := tc.w(p, rng.Int64N(size/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
