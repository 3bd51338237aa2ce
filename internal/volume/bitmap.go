package volume

import "math/bits"

// Bitmap is a fixed-length set of block numbers. It is a plain value: the
// volume hands out copies, so callers may read and change one without
// locking. It is not safe for concurrent mutation.
type Bitmap struct {
	n     int64
	words []uint64
}

// NewBitmap returns an empty bitmap of n bits.
func NewBitmap(n int64) *Bitmap {
	if n < 0 {
		n = 0
	}
	return &Bitmap{n: n, words: make([]uint64, wordsFor(n))}
}

func wordsFor(nbits int64) int64 { return (nbits + 63) / 64 }

// Len is the number of bits, set or not.
func (b *Bitmap) Len() int64 { return b.n }

// Set sets bit i. Bits outside [0, Len) are ignored so a caller iterating a
// longer bitmap cannot corrupt memory.
func (b *Bitmap) Set(i int64) {
	if i < 0 || i >= b.n {
		return
	}
	b.words[i>>6] |= 1 << (uint(i) & 63)
}

// SetRange sets bits [from, to).
func (b *Bitmap) SetRange(from, to int64) {
	from, to = max(from, 0), min(to, b.n)
	for i := from; i < to; {
		w, bit := i>>6, uint(i)&63
		span := min(to-i, 64-int64(bit))
		b.words[w] |= maskOf(bit, span)
		i += span
	}
}

// maskOf returns span ones starting at bit.
func maskOf(bit uint, span int64) uint64 {
	if span >= 64 {
		return ^uint64(0)
	}
	return ((1 << uint(span)) - 1) << bit
}

// Test reports whether bit i is set.
func (b *Bitmap) Test(i int64) bool {
	if i < 0 || i >= b.n {
		return false
	}
	return b.words[i>>6]&(1<<(uint(i)&63)) != 0
}

// Count returns the number of set bits.
func (b *Bitmap) Count() int64 {
	var c int64
	for _, w := range b.words {
		c += int64(bits.OnesCount64(w))
	}
	return c
}

// ForEach calls fn for each maximal run of set bits, in ascending order, as
// (first bit, run length). It stops early when fn returns false. Runs are what
// an incremental reader wants: one read per run, not one per block.
func (b *Bitmap) ForEach(fn func(start, n int64) bool) {
	i := int64(0)
	for i < b.n {
		s := b.nextSet(i)
		if s < 0 {
			return
		}
		e := b.nextClear(s)
		if !fn(s, e-s) {
			return
		}
		i = e
	}
}

// anySet reports whether a bit in [from, to) is set.
func (b *Bitmap) anySet(from, to int64) bool {
	s := b.nextSet(from)
	return s >= 0 && s < to
}

// nextSet returns the first set bit at or after i, or -1.
func (b *Bitmap) nextSet(i int64) int64 {
	w := i >> 6
	if w >= int64(len(b.words)) {
		return -1
	}
	cur := b.words[w] &^ ((1 << (uint(i) & 63)) - 1)
	for {
		if cur != 0 {
			r := w<<6 + int64(bits.TrailingZeros64(cur))
			if r >= b.n {
				return -1
			}
			return r
		}
		w++
		if w >= int64(len(b.words)) {
			return -1
		}
		cur = b.words[w]
	}
}

// nextClear returns the first clear bit at or after i, or Len.
func (b *Bitmap) nextClear(i int64) int64 {
	w := i >> 6
	if w >= int64(len(b.words)) {
		return b.n
	}
	cur := ^b.words[w] &^ ((1 << (uint(i) & 63)) - 1)
	for {
		if cur != 0 {
			return min(w<<6+int64(bits.TrailingZeros64(cur)), b.n)
		}
		w++
		if w >= int64(len(b.words)) {
			return b.n
		}
		cur = ^b.words[w]
	}
}

// Or sets every bit that is set in o. If o is longer, b grows to o's length
// (a volume only grows, so a newer set may be longer than an older one).
func (b *Bitmap) Or(o *Bitmap) {
	if o.n > b.n {
		if int64(len(b.words)) < int64(len(o.words)) {
			nw := make([]uint64, len(o.words))
			copy(nw, b.words)
			b.words = nw
		}
		b.n = o.n
	}
	for i, w := range o.words {
		b.words[i] |= w
	}
}

// Clone returns an independent copy.
func (b *Bitmap) Clone() *Bitmap {
	return &Bitmap{n: b.n, words: append([]uint64(nil), b.words...)}
}
