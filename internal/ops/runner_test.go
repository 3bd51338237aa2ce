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
	s, err := meta.Open(context.Background(), filepath.Join(t.TempDir(), "ops.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := ops.New(s, c, slog.New(slog.NewTextHandler(io.Discard, nil)), ops.Config{Owner: "node-1", Poll: 5 * time.Millisecond, Workers: 2})
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
	advance := func() { fake.Advance(time.Minute) }

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
