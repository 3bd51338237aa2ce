// Package clock is the one place coffer reads the time and waits on it.
// Everything that schedules, expires, stamps, polls or backs off takes a
// Clock, so tests can move time by hand and simulate weeks in seconds.
//
// Words:
//
//   - Clock: tells the time (Now) and makes the timers and tickers every
//     wait goes through. Real is the wall clock; Fake moves only when a
//     test says so.
//   - Timer: fires once, a duration after it is armed. Ticker: fires every
//     period until stopped. Both deliver on a channel with a buffer of one,
//     as the time package's do, and after Stop or Reset no stale value is
//     left to receive (the time package's behaviour since Go 1.23).
//   - Waiter: a Fake's armed timer or running ticker. Tests call
//     BlockUntil to wait for the code under test to arm its timers before
//     they Advance, so a tick is never sent before anyone waits for it.
//
// Outside this package, time.Now, time.Sleep, time.After and tickers are
// for latency figures in logs and metrics and for I/O deadlines only.
package clock
