package ops_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
)

func newRunner(t *testing.T, c clock.Clock) (*ops.Runner, meta.Store) {
	t.Helper()
	return newRunnerConfig(t, c, ops.Config{Poll: 5 * time.Millisecond})
}

// newRunnerConfig makes a runner of two workers for node-1.
func newRunnerConfig(t *testing.T, c clock.Clock, cfg ops.Config) (*ops.Runner, meta.Store) {
	t.Helper()
	s, err := meta.Open(context.Background(), filepath.Join(t.TempDir(), "ops.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg.Owner, cfg.Workers = "node-1", 2
	r := ops.New(s, c, slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	return r, s
}

func start(t *testing.T, r *ops.Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); r.Wait() })
}

func enqueue(t *testing.T, r *ops.Runner, s meta.Store, kind string) string {
	t.Helper()
	var id string
	err := s.InTx(context.Background(), func(tx meta.Tx) error {
		op, err := r.Enqueue(context.Background(), tx, kind, "/x", map[string]int{"n": 1})
		id = op.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Wake()
	return id
}

func waitEnd(t *testing.T, s meta.Store, id string, tick func()) meta.Operation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		op, err := s.GetOperation(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if op.Status != meta.StatusInProgress {
			return op
		}
		if tick != nil {
			tick()
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("operation never ended")
	return meta.Operation{}
}

func TestOutcomes(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r, s := newRunner(t, fake)
	var flaky, hopeless atomic.Int32
	r.Register("ok", func(context.Context, meta.Operation) (any, error) { return map[string]string{"done": "yes"}, nil })
	r.Register("invalid", func(context.Context, meta.Operation) (any, error) {
		return nil, errs.E(errs.Invalid, "UserErrorSomething", "the disk is too small").WithTarget("diskSizeGB")
	})
	r.Register("panics", func(context.Context, meta.Operation) (any, error) { panic("secret detail") })
	r.Register("flaky", func(context.Context, meta.Operation) (any, error) {
		if flaky.Add(1) == 1 {
			return nil, errs.E(errs.Transient, "Busy", "try later")
		}
		return nil, nil
	})
	r.Register("hopeless", func(context.Context, meta.Operation) (any, error) {
		hopeless.Add(1)
		return nil, errs.E(errs.Transient, "Busy", "still busy")
	})
	start(t, r)
	// Small steps: a step longer than the lease would let a second worker
	// take an attempt that is still running, and count it twice.
	advance := func() { fake.Advance(2 * time.Second) }

	op := waitEnd(t, s, enqueue(t, r, s, "ok"), nil)
	if op.Status != meta.StatusSucceeded || string(op.Result) != `{"done":"yes"}` || op.EndedAt.IsZero() {
		t.Fatalf("ok: %+v", op)
	}
	op = waitEnd(t, s, enqueue(t, r, s, "invalid"), nil)
	e := ops.DecodeError(op.Error)
	if op.Status != meta.StatusFailed || e.Code != "UserErrorSomething" || e.Kind != errs.Invalid || e.Target != "diskSizeGB" {
		t.Fatalf("invalid: %+v %+v", op, e)
	}
	op = waitEnd(t, s, enqueue(t, r, s, "panics"), nil)
	e = ops.DecodeError(op.Error)
	if op.Status != meta.StatusFailed || e.Code != "InternalServerError" || e.Message == "secret detail" {
		t.Fatalf("panic: %+v %+v", op, e)
	}
	op = waitEnd(t, s, enqueue(t, r, s, "flaky"), advance)
	if op.Status != meta.StatusSucceeded || op.Attempts != 2 {
		t.Fatalf("flaky: %+v", op)
	}
	op = waitEnd(t, s, enqueue(t, r, s, "hopeless"), advance)
	if op.Status != meta.StatusFailed || hopeless.Load() != 5 || ops.DecodeError(op.Error).Code != "Busy" {
		t.Fatalf("hopeless: %+v after %d attempts", op, hopeless.Load())
	}
}

// TestStaleLeaseReleasedOnStart: an operation leased by this node before a
// crash is run again as soon as the node starts, not after the lease ends.
func TestStaleLeaseReleasedOnStart(t *testing.T) {
	r, s := newRunner(t, clock.Real{})
	ran := make(chan struct{}, 1)
	r.Register("k", func(context.Context, meta.Operation) (any, error) { ran <- struct{}{}; return nil, nil })
	id := enqueue(t, r, s, "k")
	if _, ok, err := s.ClaimOperation(context.Background(), "node-1", time.Now(), time.Hour); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	start(t, r)
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the stale lease kept the operation from running")
	}
	if op := waitEnd(t, s, id, nil); op.Status != meta.StatusSucceeded {
		t.Fatalf("%+v", op)
	}
}

// within bounds a wait on the runner's goroutines: a limit on a hang, not
// a measurement.
func within(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestStepDelayWaitsOnTheClock: the step delay is a wait on the runner's
// clock, so an hour of it passes in one Advance.
func TestStepDelayWaitsOnTheClock(t *testing.T) {
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r, s := newRunnerConfig(t, fake, ops.Config{StepDelay: time.Hour})
	var runs atomic.Int32
	r.Register("k", func(context.Context, meta.Operation) (any, error) { runs.Add(1); return nil, nil })
	start(t, r)
	id := enqueue(t, r, s, "k")
	// Two workers' poll tickers, the lease's timer and the step delay's.
	ctx := within(t)
	if err := fake.BlockUntil(ctx, 4); err != nil {
		t.Fatalf("the step delay is not waiting on the clock: %v (%d waiters)", err, fake.Waiters())
	}
	fake.Advance(time.Hour - time.Nanosecond)
	if err := fake.BlockUntil(ctx, 4); err != nil { // the lease renewals are done
		t.Fatal(err)
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("the handler ran %d times before its delay ended", n)
	}
	fake.Advance(time.Nanosecond)
	if op := waitEnd(t, s, id, nil); op.Status != meta.StatusSucceeded || runs.Load() != 1 {
		t.Fatalf("%+v after %d runs", op, runs.Load())
	}
}

// TestLeaseRenewedWhileHandlerRuns: a handler that outlives its lease
// keeps it, so neither this node's other worker nor another node takes
// the operation and runs it a second time.
func TestLeaseRenewedWhileHandlerRuns(t *testing.T) {
	const lease = 30 * time.Second
	fake := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r, s := newRunnerConfig(t, fake, ops.Config{Lease: lease, Poll: time.Second})
	var runs atomic.Int32
	started, release := make(chan struct{}, 2), make(chan struct{})
	r.Register("slow", func(ctx context.Context, _ meta.Operation) (any, error) {
		runs.Add(1)
		started <- struct{}{}
		select {
		case <-release:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	start(t, r)
	id := enqueue(t, r, s, "slow")
	ctx := within(t)
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the operation never started")
	}
	// Three leases long, a third of one at a time. Waiting for the lease's
	// timer to be armed again (with the two poll tickers) waits for the
	// renewal before it to end.
	for range 9 {
		if err := fake.BlockUntil(ctx, 3); err != nil {
			t.Fatalf("the lease is not renewed on the clock: %v (%d waiters)", err, fake.Waiters())
		}
		fake.Advance(lease / 3)
	}
	if err := fake.BlockUntil(ctx, 3); err != nil {
		t.Fatal(err)
	}
	op, err := s.GetOperation(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if op.LeaseOwner != "node-1" || !op.LeaseUntil.Equal(fake.Now().Add(lease)) {
		t.Fatalf("lease %s until %s, want node-1 until %s", op.LeaseOwner, op.LeaseUntil, fake.Now().Add(lease))
	}
	if _, ok, err := s.ClaimOperation(ctx, "node-2", fake.Now(), lease); ok || err != nil {
		t.Fatalf("another node took a leased operation: %v %v", ok, err)
	}
	close(release)
	if op := waitEnd(t, s, id, nil); op.Status != meta.StatusSucceeded || runs.Load() != 1 {
		t.Fatalf("%+v after %d runs", op, runs.Load())
	}
}
