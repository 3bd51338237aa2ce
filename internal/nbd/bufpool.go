package nbd

import (
	"math/bits"
	"sync"
)

// bufPool recycles request and reply payload buffers in power-of-two size
// classes from 4 KiB to maxPayload, so the I/O path does not allocate.
//
// It is a bounded free list rather than a sync.Pool, which is emptied at
// every GC: with megabyte payloads the GC runs often, and each refill is a
// fresh allocation whose pages fault in during the next pread. Each class
// keeps at most classBudget bytes (at least 2 and at most 1024 buffers);
// extras are left to the GC.
//
// Each class is a stack: the buffer freed last is handed out first. Its
// lines are the likeliest still to be in the CPU's caches (the reply was
// just copied out of it into the socket), so the next pread into it does
// not first miss on every line, and the buffers in use stay as few as the
// requests in flight rather than cycling through the whole budget.
type bufPool struct {
	classes [classCount]bufClass
}

type bufClass struct {
	mu   sync.Mutex
	free []*[]byte
}

const (
	minClassShift = 12
	classCount    = 25 - minClassShift + 1 // 4 KiB .. 32 MiB
	classBudget   = 64 << 20
)

func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// classCap is how many free buffers class c keeps.
func classCap(c int) int { return min(max(classBudget>>(c+minClassShift), 2), 1024) }

// get returns a buffer of length n (n <= maxPayload).
func (p *bufPool) get(n int) *[]byte {
	c := classOf(n)
	cl := &p.classes[c]
	cl.mu.Lock()
	if k := len(cl.free); k > 0 {
		b := cl.free[k-1]
		cl.free[k-1] = nil
		cl.free = cl.free[:k-1]
		cl.mu.Unlock()
		*b = (*b)[:n]
		return b
	}
	cl.mu.Unlock()
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

func (p *bufPool) put(b *[]byte) {
	if b == nil {
		return
	}
	c := classOf(cap(*b))
	if 1<<(c+minClassShift) != cap(*b) {
		return // not one of ours
	}
	cl := &p.classes[c]
	cl.mu.Lock()
	if len(cl.free) < classCap(c) {
		cl.free = append(cl.free, b)
	}
	cl.mu.Unlock()
}
