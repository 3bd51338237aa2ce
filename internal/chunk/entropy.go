package chunk

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
)

// Deciding whether to try zstd. Running the encoder over a chunk that will
// not shrink (encrypted, already compressed or random data: a large part
// of real disks) cost a quarter of a full backup's CPU, for nothing. So
// seal samples the chunk first, as btrfs's compression heuristic does
// (fs/btrfs/compression.c): 16 bytes of every 256, 1/16 of the chunk.
//
//   - Byte histograms of the samples, one per 64 KiB region and one of the
//     whole chunk, are tested against uniform random bytes with Pearson's
//     chi-squared statistic. Data zstd can shrink (text, tables, code,
//     sparse structures, zeros) has a lopsided byte distribution; one
//     region, or the chunk as a whole, standing more than six standard
//     deviations off uniform sends the chunk to the encoder. Byte entropy,
//     which btrfs uses, is much blunter: a 64 KiB region one eighth text
//     still scores 7.86 bits of 8 where random scores 7.96, yet zstd saves
//     10% on it. A false alarm costs only the encoder's time, as before.
//   - A histogram cannot see a random block repeated inside the chunk,
//     which zstd's matcher folds; so the first 16 bytes of every 4 KiB block
//     (file systems allocate in 4 KiB blocks) are compared, and any two
//     alike send the chunk to the encoder too.
//
// What it misses is little and scattered: compressible pieces of a few KiB
// or less spread through random data, or repeats not 4 KiB aligned. Such a
// chunk is stored raw and costs at most what zstd would have saved on it.
const (
	sampleSlice  = 16       // bytes per sampled slice
	sampleStride = 256      // one slice per this many bytes
	regionSize   = 64 << 10 // bytes judged by one histogram
	repeatBlock  = 4096     // the granularity of the repeat check
	minSampled   = 16 << 10 // below this, always try zstd: it is cheap
	// uniformSigmas is how far from uniform, in standard deviations of the
	// chi-squared statistic (255 degrees of freedom: mean 255, deviation
	// √510), a histogram may be and still count as random.
	uniformSigmas = 6
)

// worthCompressing reports whether zstd should be tried on p.
func worthCompressing(p []byte) bool {
	if len(p) < minSampled {
		return true
	}
	var total [256]uint32
	totalN := 0
	for r := 0; r < len(p); r += regionSize {
		var hist [256]uint32
		n := sampleHistogram(p[r:min(r+regionSize, len(p))], &hist)
		if n >= regionSize/sampleStride*sampleSlice/4 && !uniform(&hist, n) {
			return true // a lopsided region; a short tail only counts below
		}
		for b, c := range hist {
			total[b] += c
		}
		totalN += n
	}
	if !uniform(&total, totalN) {
		return true
	}
	return hasRepeatedBlocks(p)
}

// sampleHistogram adds the sampled bytes of p to hist and returns how many
// it sampled.
func sampleHistogram(p []byte, hist *[256]uint32) int {
	var h [4][256]uint32 // four tables: no store-to-load stalls
	n := 0
	for off := 0; off+sampleSlice <= len(p); off += sampleStride {
		s := p[off : off+sampleSlice]
		for i := 0; i < sampleSlice; i += 4 {
			h[0][s[i]]++
			h[1][s[i+1]]++
			h[2][s[i+2]]++
			h[3][s[i+3]]++
		}
		n += sampleSlice
	}
	for b := range hist {
		hist[b] += h[0][b] + h[1][b] + h[2][b] + h[3][b]
	}
	return n
}

// uniform reports whether a histogram of n samples is within uniformSigmas
// of what uniform random bytes give, by Pearson's chi-squared statistic.
func uniform(hist *[256]uint32, n int) bool {
	if n == 0 {
		return false
	}
	expect := float64(n) / 256
	var chi2 float64
	for _, c := range hist {
		d := float64(c) - expect
		chi2 += d * d
	}
	chi2 /= expect
	return chi2 <= 255+uniformSigmas*math.Sqrt(2*255)
}

// hasRepeatedBlocks reports whether two 4 KiB blocks of p begin with the
// same 16 bytes.
func hasRepeatedBlocks(p []byte) bool {
	type key struct{ a, b uint64 }
	keys := make([]key, 0, len(p)/repeatBlock)
	for off := 0; off+repeatBlock <= len(p); off += repeatBlock {
		keys = append(keys, key{binary.LittleEndian.Uint64(p[off:]), binary.LittleEndian.Uint64(p[off+8:])})
	}
	slices.SortFunc(keys, func(x, y key) int { return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b)) })
	for i := 1; i < len(keys); i++ {
		if keys[i] == keys[i-1] {
			return true
		}
	}
	return false
}
