package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes what waits on it.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, d after now.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that fires every d (d > 0).
	NewTicker(d time.Duration) Ticker
}

// Timer is a one-shot wait, like time.Timer.
type Timer interface {
	// C delivers the time the timer fired.
	C() <-chan time.Time
	// Stop disarms the timer. It reports whether that stopped a firing
	// nobody had received yet: false if the timer was already stopped or
	// its value already received. No value is received from C after Stop.
	Stop() bool
	// Reset re-arms the timer to fire d from now, dropping any value not
	// yet received, and reports what Stop would have.
	Reset(d time.Duration) bool
}

// Ticker fires every period, like time.Ticker; ticks a slow receiver
// misses are dropped.
type Ticker interface {
	// C delivers the time of each tick.
	C() <-chan time.Time
	// Stop ends the ticks; no tick is received from C after it.
	Stop()
}

// Sleep waits d on c, or until ctx ends (returning ctx.Err()). A context
// already done wins; otherwise a d of zero or less returns nil at once.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// After is c.NewTimer(d).C() for one-shot waits. The timer cannot be
// stopped: for a wait that may be abandoned, and on a Fake whose waiters a
// test counts, prefer NewTimer or Sleep.
func After(c Clock, d time.Duration) <-chan time.Time {
	return c.NewTimer(d).C()
}

// Real is the wall clock, in UTC.
type Real struct{}

var _ Clock = Real{}

// Now returns the current time in UTC.
func (Real) Now() time.Time { return time.Now().UTC() }

// NewTimer returns a time.Timer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// NewTicker returns a time.Ticker; it panics if d <= 0, as time.NewTicker does.
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

var _ Timer = realTimer{}

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

var _ Ticker = realTicker{}

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }
