package server

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// logged hands each record to the test, which waits for the one it needs.
type logged chan slog.Record

func (l logged) Enabled(context.Context, slog.Level) bool { return true }
func (l logged) Handle(_ context.Context, r slog.Record) error {
	l <- r.Clone()
	return nil
}
func (l logged) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logged) WithGroup(string) slog.Handler      { return l }

// next returns the next record with message msg.
func (l logged) next(ctx context.Context, t *testing.T, msg string) slog.Record {
	t.Helper()
	for {
		select {
		case r := <-l:
			if r.Message == msg {
				return r
			}
		case <-ctx.Done():
			t.Fatalf("no %q logged: %v", msg, ctx.Err())
		}
	}
}

func attr(r slog.Record, key string) any {
	var v any
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.Any()
			return false
		}
		return true
	})
	return v
}

// TestMaintenanceRunsOnTheClock: a day of the maintenance schedule passes
// in one Advance; at GCInterval the unreferenced chunk goes and the
// snapshot's stays, at VerifyInterval the snapshot's chunk is read back.
func TestMaintenanceRunsOnTheClock(t *testing.T) {
	const gcEvery, verifyEvery = 24 * time.Hour, 36 * time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a limit on a hang
	defer cancel()
	chunks, err := chunk.Open(ctx, "", t.TempDir(), chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer chunks.Close()
	kept, _, err := chunks.Put(ctx, bytes.Repeat([]byte("k"), 4096))
	if err != nil {
		t.Fatal(err)
	}
	garbage, _, err := chunks.Put(ctx, bytes.Repeat([]byte("g"), 4096))
	if err != nil {
		t.Fatal(err)
	}
	if err := chunks.PutIndex(ctx, "snap", chunk.Index{DiskSize: 4096, ChunkSize: 4096, Digests: []chunk.Digest{kept},
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	// The chunks' ages come from the bucket's wall clock; the fake starts
	// where they are past the default grace.
	fake := clock.NewFake(time.Now().Add(2 * snapshot.DefaultGrace))
	log := make(logged, 16)
	m := &Maintenance{Chunks: chunks, InFlight: snapshot.NewInFlight(), Clock: fake, Log: slog.New(log),
		GCInterval: gcEvery, VerifyInterval: verifyEvery}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	has := func(d chunk.Digest) bool {
		t.Helper()
		ok, err := chunks.Has(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if err := fake.BlockUntil(ctx, 2); err != nil {
		t.Fatalf("maintenance does not wait on the clock: %v (%d waiters)", err, fake.Waiters())
	}
	fake.Advance(gcEvery - time.Nanosecond)
	if !has(garbage) {
		t.Fatal("collected before GCInterval")
	}
	fake.Advance(time.Nanosecond)
	r := log.next(ctx, t, "garbage collection")
	if st, _ := attr(r, "stats").(snapshot.GCStats); st.Deleted != 1 || st.Indexes != 1 {
		t.Fatalf("stats %+v, want one chunk deleted and one index marked", st)
	}
	if has(garbage) || !has(kept) {
		t.Fatalf("after GC: garbage there %v, snapshot's chunk there %v", has(garbage), has(kept))
	}

	fake.Advance(verifyEvery - gcEvery)
	r = log.next(ctx, t, "verify")
	if checked := attr(r, "checked"); checked != int64(1) { // slog keeps ints as int64
		t.Fatalf("verify checked %v, want 1", checked)
	}
}
