package clock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// received returns what c holds without waiting.
func received(c <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-c:
		return v, true
	default:
		return time.Time{}, false
	}
}

// within bounds a wait for a goroutine the test started; it is a limit on
// a hang, not a measurement.
func within(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFakeTimer(t *testing.T) {
	tests := []struct {
		name  string
		d     time.Duration
		steps []time.Duration // advances, in order
		fires []bool          // whether the timer has a value after each step
		at    time.Time       // the value it delivers
	}{
		{"before the deadline", time.Second, []time.Duration{999 * time.Millisecond}, []bool{false}, time.Time{}},
		{"at the deadline", time.Second, []time.Duration{time.Second}, []bool{true}, t0.Add(time.Second)},
		{"past the deadline delivers the deadline", time.Second, []time.Duration{time.Hour}, []bool{true}, t0.Add(time.Second)},
		{"in steps", 3 * time.Second, []time.Duration{time.Second, time.Second, time.Second}, []bool{false, false, true}, t0.Add(3 * time.Second)},
		{"once only", time.Second, []time.Duration{time.Second, time.Hour}, []bool{true, false}, t0.Add(time.Second)},
		{"zero fires at once", 0, []time.Duration{0}, []bool{true}, t0},
		{"negative fires at once", -time.Second, []time.Duration{0}, []bool{true}, t0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := clock.NewFake(t0)
			tm := f.NewTimer(tc.d)
			for i, step := range tc.steps {
				f.Advance(step)
				v, ok := received(tm.C())
				if ok != tc.fires[i] {
					t.Fatalf("after step %d (%s): fired=%v, want %v", i, step, ok, tc.fires[i])
				}
				if ok && !v.Equal(tc.at) {
					t.Fatalf("delivered %s, want %s", v, tc.at)
				}
			}
			fired := false
			for _, ok := range tc.fires {
				fired = fired || ok
			}
			if want := map[bool]int{true: 0, false: 1}[fired]; f.Waiters() != want {
				t.Fatalf("fired=%v, waiters %d: only an armed timer waits", fired, f.Waiters())
			}
		})
	}
}

func TestFakeTicker(t *testing.T) {
	f := clock.NewFake(t0)
	tk := f.NewTicker(time.Second)
	defer tk.Stop()
	steps := []struct {
		advance time.Duration
		receive bool
		want    time.Time // zero: no tick
	}{
		{time.Second, true, t0.Add(1 * time.Second)},
		{500 * time.Millisecond, true, time.Time{}},
		{500 * time.Millisecond, false, time.Time{}}, // T+2 ticks and waits in the channel
		{time.Second, true, t0.Add(2 * time.Second)}, // T+3 was dropped: the slot was full
		// Several periods in one move: one tick, for the first; the next
		// is the first period after the new time.
		{3500 * time.Millisecond, true, t0.Add(4 * time.Second)},
		{400 * time.Millisecond, true, time.Time{}},
		{100 * time.Millisecond, true, t0.Add(7 * time.Second)},
	}
	for i, s := range steps {
		f.Advance(s.advance)
		if !s.receive {
			continue
		}
		v, ok := received(tk.C())
		if s.want.IsZero() {
			if ok {
				t.Fatalf("step %d: unexpected tick %s", i, v)
			}
			continue
		}
		if !ok || !v.Equal(s.want) {
			t.Fatalf("step %d: tick %s (%v), want %s", i, v, ok, s.want)
		}
	}
	if n := f.Waiters(); n != 1 {
		t.Fatalf("a running ticker is a waiter: got %d", n)
	}
	f.Advance(time.Second) // a tick left in the channel...
	tk.Stop()
	if v, ok := received(tk.C()); ok {
		t.Fatalf("...is not received after Stop: %s", v)
	}
	f.Advance(time.Hour)
	if v, ok := received(tk.C()); ok || f.Waiters() != 0 {
		t.Fatalf("a stopped ticker ticked (%s) or still waits (%d)", v, f.Waiters())
	}
}

func TestFakeTimerStopReset(t *testing.T) {
	tests := []struct {
		name    string
		before  func(f *clock.Fake, tm clock.Timer) // tm is armed for 1s at t0
		op      func(tm clock.Timer) bool
		want    bool
		firesAt time.Duration // after op, advancing this far fires it; 0: never
	}{
		{name: "stop an armed timer", before: func(*clock.Fake, clock.Timer) {}, op: clock.Timer.Stop, want: true},
		{name: "stop a fired timer nobody received", before: func(f *clock.Fake, _ clock.Timer) { f.Advance(time.Second) },
			op: clock.Timer.Stop, want: true},
		{name: "stop a received timer", before: func(f *clock.Fake, tm clock.Timer) { f.Advance(time.Second); <-tm.C() },
			op: clock.Timer.Stop, want: false},
		{name: "stop twice", before: func(_ *clock.Fake, tm clock.Timer) { tm.Stop() }, op: clock.Timer.Stop, want: false},
		{name: "reset an armed timer", before: func(*clock.Fake, clock.Timer) {},
			op: func(tm clock.Timer) bool { return tm.Reset(5 * time.Second) }, want: true, firesAt: 5 * time.Second},
		{name: "reset a fired timer drops the stale value", before: func(f *clock.Fake, _ clock.Timer) { f.Advance(time.Second) },
			op: func(tm clock.Timer) bool { return tm.Reset(2 * time.Second) }, want: true, firesAt: 2 * time.Second},
		{name: "reset a received timer", before: func(f *clock.Fake, tm clock.Timer) { f.Advance(time.Second); <-tm.C() },
			op: func(tm clock.Timer) bool { return tm.Reset(time.Minute) }, want: false, firesAt: time.Minute},
		{name: "reset a stopped timer", before: func(_ *clock.Fake, tm clock.Timer) { tm.Stop() },
			op: func(tm clock.Timer) bool { return tm.Reset(time.Second) }, want: false, firesAt: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := clock.NewFake(t0)
			tm := f.NewTimer(time.Second)
			tc.before(f, tm)
			if got := tc.op(tm); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if v, ok := received(tm.C()); ok {
				t.Fatalf("a value from before the call is still there: %s", v)
			}
			start := f.Now()
			if tc.firesAt == 0 {
				f.Advance(time.Hour)
				if v, ok := received(tm.C()); ok {
					t.Fatalf("a stopped timer fired: %s", v)
				}
				return
			}
			f.Advance(tc.firesAt - time.Nanosecond)
			if v, ok := received(tm.C()); ok {
				t.Fatalf("fired early: %s", v)
			}
			f.Advance(time.Nanosecond)
			if v, ok := received(tm.C()); !ok || !v.Equal(start.Add(tc.firesAt)) {
				t.Fatalf("fired %v at %s, want %s", ok, v, start.Add(tc.firesAt))
			}
		})
	}
}

func TestFakeResetToZeroFiresAtOnce(t *testing.T) {
	f := clock.NewFake(t0)
	tm := f.NewTimer(time.Hour)
	tm.Reset(0)
	if v, ok := received(tm.C()); !ok || !v.Equal(t0) || f.Waiters() != 0 {
		t.Fatalf("Reset(0): %v %s, waiters %d", ok, v, f.Waiters())
	}
}

// TestFakeDeadlineOrder: one move fires what falls due, each with its own
// deadline, whatever order the timers were made in.
func TestFakeDeadlineOrder(t *testing.T) {
	f := clock.NewFake(t0)
	var timers []clock.Timer
	for _, d := range []time.Duration{3, 1, 2, 5} {
		timers = append(timers, f.NewTimer(d*time.Second))
	}
	f.Advance(4 * time.Second)
	for i, d := range []time.Duration{3, 1, 2} {
		if v, ok := received(timers[i].C()); !ok || !v.Equal(t0.Add(d*time.Second)) {
			t.Fatalf("timer %d: %v %s", i, ok, v)
		}
	}
	if _, ok := received(timers[3].C()); ok || f.Waiters() != 1 {
		t.Fatalf("the 5s timer fired at 4s, or waiters is %d", f.Waiters())
	}
	if !f.Now().Equal(t0.Add(4 * time.Second)) {
		t.Fatalf("now %s", f.Now())
	}
}

func TestFakeSet(t *testing.T) {
	f := clock.NewFake(t0)
	tm := f.NewTimer(10 * time.Second)
	f.Set(t0.Add(-time.Hour))
	if _, ok := received(tm.C()); ok || !f.Now().Equal(t0.Add(-time.Hour)) {
		t.Fatal("moving back fired a timer, or did not move")
	}
	f.Advance(time.Hour + 9*time.Second)
	if _, ok := received(tm.C()); ok {
		t.Fatal("the deadline is an instant; moving back pushed it away")
	}
	f.Set(t0.Add(time.Minute).In(time.FixedZone("x", 3600)))
	if v, ok := received(tm.C()); !ok || !v.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("Set past the deadline: %v %s", ok, v)
	}
	if f.Now().Location() != time.UTC {
		t.Fatalf("the fake keeps UTC: %s", f.Now())
	}
}

func TestNewTickerRejectsNonPositive(t *testing.T) {
	for name, c := range map[string]clock.Clock{"real": clock.Real{}, "fake": clock.NewFake(t0)} {
		for _, d := range []time.Duration{0, -time.Second} {
			t.Run(name, func(t *testing.T) {
				defer func() {
					if recover() == nil {
						t.Fatalf("NewTicker(%s) did not panic", d)
					}
				}()
				c.NewTicker(d)
			})
		}
	}
}

func TestBlockUntil(t *testing.T) {
	f := clock.NewFake(t0)
	if err := f.BlockUntil(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	armed := make(chan clock.Timer)
	go func() { armed <- f.NewTimer(time.Second) }()
	if err := f.BlockUntil(within(t), 1); err != nil {
		t.Fatal(err)
	}
	tm := <-armed
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.BlockUntil(ctx, 2) }()
	f.Advance(time.Second) // fewer waiters, not more
	select {
	case err := <-done:
		t.Fatalf("BlockUntil(2) returned %v with %d waiters", err, f.Waiters())
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, ok := received(tm.C()); !ok {
		t.Fatal("timer did not fire")
	}
}

func TestSleep(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"zero", context.Background(), 0, nil},
		{"negative", context.Background(), -time.Hour, nil},
		{"context done, zero", cancelled, 0, context.Canceled},
		{"context done, positive", cancelled, time.Hour, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := clock.NewFake(t0)
			// Nothing advances f: these return without it.
			if err := clock.Sleep(tc.ctx, f, tc.d); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if f.Waiters() != 0 {
				t.Fatal("a sleep that did not wait left a timer")
			}
		})
	}
}

func TestSleepWaitsForTheClock(t *testing.T) {
	f := clock.NewFake(t0)
	done := make(chan error, 1)
	go func() { done <- clock.Sleep(context.Background(), f, time.Hour) }()
	if err := f.BlockUntil(within(t), 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Hour - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("woke before its time: %v", err)
	default:
	}
	f.Advance(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	f := clock.NewFake(t0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- clock.Sleep(ctx, f, time.Hour) }()
	if err := f.BlockUntil(within(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if n := f.Waiters(); n != 0 {
		t.Fatalf("an abandoned sleep left %d timers", n)
	}
}

func TestAfter(t *testing.T) {
	f := clock.NewFake(t0)
	c := clock.After(f, time.Minute)
	f.Advance(time.Minute)
	if v, ok := received(c); !ok || !v.Equal(t0.Add(time.Minute)) {
		t.Fatalf("%v %s", ok, v)
	}
}

// TestReal: the wall clock's timers and tickers are the time package's.
func TestReal(t *testing.T) {
	c := clock.Real{}
	if c.Now().Location() != time.UTC {
		t.Fatal("Real is UTC")
	}
	before := c.Now()
	if err := clock.Sleep(context.Background(), c, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !c.Now().After(before) {
		t.Fatal("Sleep did not wait")
	}
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() || tm.Stop() {
		t.Fatal("Stop reports whether it stopped the timer")
	}
	if tm.Reset(time.Millisecond) {
		t.Fatal("Reset of a stopped timer reports it was not active")
	}
	<-tm.C()
	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Stop()
	<-clock.After(c, time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := clock.Sleep(ctx, c, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

// TestFakeConcurrent drives sleepers in rounds: each round every sleeper
// arms a timer, the driver waits for all of them with BlockUntil and then
// advances, waking them all. Meanwhile another goroutine reads the time,
// resets a timer and drains a ticker, which keep the count of waiters
// steady (Reset re-arms in one step). Run with -race.
func TestFakeConcurrent(t *testing.T) {
	const sleepers, rounds, noise = 8, 50, 2
	f := clock.NewFake(t0)
	ctx := within(t)
	var wg sync.WaitGroup
	woke := make([]int, sleepers)
	for i := range sleepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := clock.Sleep(ctx, f, time.Duration(i+1)*time.Second); err != nil {
					t.Error(err)
					return
				}
				woke[i]++
			}
		}()
	}
	tm := f.NewTimer(time.Hour)
	tk := f.NewTicker(3 * time.Second)
	stop := make(chan struct{})
	var ticks int
	var busy sync.WaitGroup
	busy.Add(1)
	go func() {
		defer busy.Done()
		for {
			select {
			case <-stop:
				return
			case <-tk.C():
				ticks++
			default:
			}
			_ = f.Now()
			tm.Reset(time.Hour)
			_ = f.Waiters()
		}
	}()
	for range rounds {
		if err := f.BlockUntil(ctx, sleepers+noise); err != nil {
			t.Fatal(err)
		}
		f.Advance(sleepers * time.Second)
	}
	wg.Wait()
	close(stop)
	busy.Wait()
	for i, n := range woke {
		if n != rounds {
			t.Fatalf("sleeper %d woke %d times, want %d", i, n, rounds)
		}
	}
	if want := t0.Add(rounds * sleepers * time.Second); !f.Now().Equal(want) {
		t.Fatalf("now %s, want %s", f.Now(), want)
	}
	if ticks > rounds {
		t.Fatalf("%d ticks: a ticker fires at most once a move", ticks)
	}
	tk.Stop()
	if !tm.Stop() || f.Waiters() != 0 {
		t.Fatalf("waiters left: %d", f.Waiters())
	}
}
