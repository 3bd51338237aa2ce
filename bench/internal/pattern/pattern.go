package pattern

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"sync"
)

// MiB is the extent of the pattern (and the store's chunk size).
const MiB = 1 << 20

// ExtentRandom says whether 1 MiB extent i of the pattern is random (60%)
// or zero (40%), deterministically.
func ExtentRandom(seed uint64, i int64) bool {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	return r.IntN(10) < 6
}

// FillRandom fills p with the random bytes of stream under seed.
func FillRandom(p []byte, seed, stream uint64) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], stream)
	r := rand.NewChaCha8(key)
	_, _ = r.Read(p)
}

// Write writes the random extents of the pattern through w, from as many
// goroutines as CPUs; zero extents are left unwritten (holes).
func Write(size int64, seed uint64, w func(p []byte, off int64) error) error {
	n := (size + MiB - 1) / MiB
	var wg sync.WaitGroup
	errc := make(chan error, runtime.NumCPU())
	next := make(chan int64)
	for range runtime.NumCPU() {
		wg.Go(func() {
			buf := make([]byte, MiB)
			for i := range next {
				p := buf[:min(MiB, size-i*MiB)]
				FillRandom(p, seed, uint64(i))
				if err := w(p, i*MiB); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for i := range n {
		if ExtentRandom(seed, i) {
			next <- i
		}
	}
	close(next)
	wg.Wait()
	close(errc)
	return <-errc
}

// Change overwrites extents distinct extent-aligned extents of a disk of
// size bytes with new random bytes, through each of ws, and returns the
// bytes changed. The same seed picks the same extents and bytes.
func Change(size int64, seed uint64, extents int, extent int64, ws ...func(p []byte, off int64) error) (int64, error) {
	r := rand.New(rand.NewPCG(seed, 99))
	slots := size / extent
	used := map[int64]bool{}
	buf := make([]byte, extent)
	for len(used) < extents && int64(len(used)) < slots {
		s := r.Int64N(slots)
		if used[s] {
			continue
		}
		used[s] = true
		FillRandom(buf, seed+1000, uint64(s))
		for _, w := range ws {
			if err := w(buf, s*extent); err != nil {
				return 0, err
			}
		}
	}
	return int64(len(used)) * extent, nil
}
