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
type bufPool struct {
	once    sync.Once
	classes [classCount]chan *[]byte
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

func (p *bufPool) init() {
	p.once.Do(func() {
		for c := range p.classes {
			p.classes[c] = make(chan *[]byte, min(max(classBudget>>(c+minClassShift), 2), 1024))
		}
	})
}

// get returns a buffer of length n (n <= maxPayload).
func (p *bufPool) get(n int) *[]byte {
	p.init()
	c := classOf(n)
	select {
	case b := <-p.classes[c]:
		*b = (*b)[:n]
		return b
	default:
		b := make([]byte, n, 1<<(c+minClassShift))
		return &b
	}
}

func (p *bufPool) put(b *[]byte) {
	if b == nil {
		return
	}
	p.init()
	c := classOf(cap(*b))
	if 1<<(c+minClassShift) != cap(*b) {
		return // not one of ours
	}
	select {
	case p.classes[c] <- b:
	default:
	}
}
