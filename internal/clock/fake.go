package clock

import (
	"context"
	"sync"
	"time"
)

// Fake is a clock that moves only when told to. Its timers and tickers
// fire when Advance or Set carries the time to or past their deadlines,
// never on their own. Safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*waiter     // armed timers and running tickers
	armed   uint64        // arming count, to fire equal deadlines in arming order
	changed chan struct{} // closed, and replaced, whenever waiters changes
}

var _ Clock = (*Fake)(nil)

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t.UTC(), changed: make(chan struct{})} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the fake time forward by d and fires what falls due; see Set.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moveTo(f.now.Add(d))
}

// Set moves the fake time to t. Every timer and ticker whose deadline is
// at or before t fires, in deadline order (equal deadlines in the order
// they were armed), each delivering its deadline. The move is one step,
// so a ticker that passed several periods delivers one tick, for the
// first, and drops the rest as the time package drops ticks a slow
// receiver misses; its next tick is the first period after t. Deadlines
// are instants: moving back does not fire anything, it only puts the
// deadlines further away.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.moveTo(t.UTC())
}

func (f *Fake) moveTo(t time.Time) {
	for {
		var w *waiter
		for _, c := range f.waiters {
			if !c.deadline.After(t) && (w == nil || c.deadline.Before(w.deadline) ||
				c.deadline.Equal(w.deadline) && c.order < w.order) {
				w = c
			}
		}
		if w == nil {
			break
		}
		deliver(w.c, w.deadline)
		if w.period == 0 {
			f.remove(w)
			continue
		}
		next := w.deadline.Add(w.period)
		if !next.After(t) {
			next = w.deadline.Add((t.Sub(w.deadline)/w.period + 1) * w.period)
		}
		w.deadline = next
	}
	f.now = t
}

// NewTimer returns a timer that fires once, d after now; at once if d <= 0.
func (f *Fake) NewTimer(d time.Duration) Timer {
	w := &waiter{f: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arm(w, d)
	return fakeTimer{w}
}

// NewTicker returns a ticker that fires every d from now. It panics if
// d <= 0, as time.NewTicker does.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	w := &waiter{f: f, c: make(chan time.Time, 1), period: d}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arm(w, d)
	return fakeTicker{w}
}

// Waiters is the number of armed timers and running tickers.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}

// BlockUntil waits until at least n timers and tickers are waiting on f,
// or until ctx ends (returning ctx.Err()). A test calls it before Advance
// so that the code under test has armed the timer the move should fire.
func (f *Fake) BlockUntil(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		enough, changed := len(f.waiters) >= n, f.changed
		f.mu.Unlock()
		if enough {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// arm sets w to fire d from now. f.mu is held.
func (f *Fake) arm(w *waiter, d time.Duration) {
	if d <= 0 {
		deliver(w.c, f.now)
		return
	}
	w.deadline = f.now.Add(d)
	f.armed++
	w.order = f.armed
	w.active = true
	f.waiters = append(f.waiters, w)
	f.notify()
}

// remove disarms w. f.mu is held.
func (f *Fake) remove(w *waiter) {
	for i, c := range f.waiters {
		if c == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			break
		}
	}
	w.active = false
	f.notify()
}

func (f *Fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// waiter is a Fake's timer or ticker.
type waiter struct {
	f        *Fake
	c        chan time.Time
	period   time.Duration // 0 for a timer
	deadline time.Time
	order    uint64
	active   bool // in f.waiters
}

// stop disarms w and drops a value not yet received, reporting whether
// there was either.
func (w *waiter) stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.stopLocked()
}

func (w *waiter) stopLocked() bool {
	was := w.active
	if was {
		w.f.remove(w)
	}
	select {
	case <-w.c:
		return true
	default:
		return was
	}
}

// deliver sends without blocking: the channel's one slot holds a value
// nobody has received yet, and a later one is dropped.
func deliver(c chan time.Time, t time.Time) {
	select {
	case c <- t:
	default:
	}
}

type fakeTimer struct{ w *waiter }

var _ Timer = fakeTimer{}

func (t fakeTimer) C() <-chan time.Time { return t.w.c }
func (t fakeTimer) Stop() bool          { return t.w.stop() }

func (t fakeTimer) Reset(d time.Duration) bool {
	t.w.f.mu.Lock()
	defer t.w.f.mu.Unlock()
	was := t.w.stopLocked()
	t.w.f.arm(t.w, d)
	return was
}

type fakeTicker struct{ w *waiter }

var _ Ticker = fakeTicker{}

func (t fakeTicker) C() <-chan time.Time { return t.w.c }
func (t fakeTicker) Stop()               { t.w.stop() }
