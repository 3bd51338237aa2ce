package chunktest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
)

// Op names a Backend method, for Faulty.
type Op string

// The Backend methods Faulty can fail.
const (
	OpWrite  Op = "write"
	OpRead   Op = "read"
	OpExists Op = "exists"
	OpDelete Op = "delete"
	OpList   Op = "list"
)

// ErrInjected is the error of a Fault that names none: a transient failure.
var ErrInjected = errors.New("injected backend fault")

// Fault is what Faulty does to one call (kopia's blobtesting.Fault is the
// model).
type Fault struct {
	// Err is what the call returns instead of its result; ErrInjected if
	// nil.
	Err error
	// Delay holds the call that long before it runs (or until its ctx
	// ends, when it returns ctx.Err()): a slow backend.
	Delay time.Duration
	// Torn, for a Write, stores only the first Torn bytes of the body
	// under the key and then fails: a write that broke half way on a
	// backend that does not write atomically.
	Torn int
	// After, for a List, passes After objects to fn and then fails.
	After int
	// Pass is how many calls of the method run normally before this fault
	// applies.
	Pass int
	// Repeat is how many consecutive calls fail once it applies; 1 if 0.
	Repeat int
}

// Faulty is a chunk.Backend that fails the calls it is told to and passes
// the rest to the Backend it embeds. It also counts calls per method. Safe
// for concurrent use.
type Faulty struct {
	chunk.Backend

	mu     sync.Mutex
	faults map[Op][]*Fault
	calls  map[Op]int
}

var _ chunk.Backend = (*Faulty)(nil)

// NewFaulty wraps b.
func NewFaulty(b chunk.Backend) *Faulty {
	return &Faulty{Backend: b, faults: map[Op][]*Fault{}, calls: map[Op]int{}}
}

// Inject queues f for op's calls, after the faults already queued for op.
func (f *Faulty) Inject(op Op, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fault.Repeat <= 0 {
		fault.Repeat = 1
	}
	if fault.Err == nil {
		fault.Err = ErrInjected
	}
	f.faults[op] = append(f.faults[op], &fault)
}

// Calls returns how many times op has been called.
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// next counts a call of op and returns the fault it gets, or nil.
func (f *Faulty) next(op Op) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	q := f.faults[op]
	if len(q) == 0 {
		return nil
	}
	head := q[0]
	if head.Pass > 0 {
		head.Pass--
		return nil
	}
	got := *head
	if head.Repeat--; head.Repeat == 0 {
		f.faults[op] = q[1:]
	}
	return &got
}

// delay waits out fault's Delay.
func delay(ctx context.Context, fault *Fault) error {
	if fault.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(fault.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Write implements chunk.Backend.
func (f *Faulty) Write(ctx context.Context, key string, body []byte, ifAbsent bool) error {
	fault := f.next(OpWrite)
	if fault == nil {
		return f.Backend.Write(ctx, key, body, ifAbsent)
	}
	if err := delay(ctx, fault); err != nil {
		return err
	}
	if fault.Torn > 0 {
		if err := f.Backend.Write(ctx, key, body[:min(fault.Torn, len(body))], ifAbsent); err != nil {
			return err
		}
	}
	return fault.Err
}

// Read implements chunk.Backend.
func (f *Faulty) Read(ctx context.Context, key string, buf []byte) ([]byte, error) {
	if fault := f.next(OpRead); fault != nil {
		if err := delay(ctx, fault); err != nil {
			return nil, err
		}
		return nil, fault.Err
	}
	return f.Backend.Read(ctx, key, buf)
}

// ReadRange implements chunk.Backend; its faults are OpRead's.
func (f *Faulty) ReadRange(ctx context.Context, key string, off, n int64, buf []byte) ([]byte, error) {
	if fault := f.next(OpRead); fault != nil {
		if err := delay(ctx, fault); err != nil {
			return nil, err
		}
		return nil, fault.Err
	}
	return f.Backend.ReadRange(ctx, key, off, n, buf)
}

// Exists implements chunk.Backend.
func (f *Faulty) Exists(ctx context.Context, key string) (bool, error) {
	if fault := f.next(OpExists); fault != nil {
		if err := delay(ctx, fault); err != nil {
			return false, err
		}
		return false, fault.Err
	}
	return f.Backend.Exists(ctx, key)
}

// Delete implements chunk.Backend.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	if fault := f.next(OpDelete); fault != nil {
		if err := delay(ctx, fault); err != nil {
			return err
		}
		return fault.Err
	}
	return f.Backend.Delete(ctx, key)
}

// List implements chunk.Backend.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(chunk.Object) error) error {
	fault := f.next(OpList)
	if fault == nil {
		return f.Backend.List(ctx, prefix, fn)
	}
	if err := delay(ctx, fault); err != nil {
		return err
	}
	passed := 0
	err := f.Backend.List(ctx, prefix, func(obj chunk.Object) error {
		if passed >= fault.After {
			return fault.Err
		}
		passed++
		return fn(obj)
	})
	if err == nil {
		err = fault.Err // no more than After objects: fail at the end
	}
	return err
}
