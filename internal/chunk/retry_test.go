package chunk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"gocloud.dev/blob/memblob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
)

const attempts = 4

var retryOpts = chunk.RetryOptions{MaxAttempts: attempts, Initial: 100 * time.Millisecond, Max: 300 * time.Millisecond}

// retrying returns a Retry over a fault injector over an in-memory bucket
// holding objects a/0 .. a/9, and the recorder of its backoff waits.
func retrying(t *testing.T) (*chunk.Retry, *chunktest.Faulty, func() []time.Duration) {
	t.Helper()
	b := memblob.OpenBucket(nil)
	t.Cleanup(func() { b.Close() })
	faulty := chunktest.NewFaulty(&chunk.BucketBackend{Bucket: b})
	for i := range 10 {
		if err := faulty.Write(t.Context(), fmt.Sprintf("a/%d", i), []byte(fmt.Sprint("object ", i)), false); err != nil {
			t.Fatal(err)
		}
	}
	r := chunk.NewRetry(faulty, retryOpts)
	return r, faulty, chunk.RecordWaits(r)
}

// call runs op once through r and checks its result.
func call(t *testing.T, r chunk.Backend, op chunktest.Op) error {
	ctx := t.Context()
	switch op {
	case chunktest.OpWrite:
		if err := r.Write(ctx, "b", []byte("new"), false); err != nil {
			return err
		}
	case chunktest.OpRead:
		got, err := r.Read(ctx, "a/3", nil)
		if err != nil {
			return err
		}
		if string(got) != "object 3" {
			t.Errorf("Read = %q", got)
		}
	case chunktest.OpExists:
		ok, err := r.Exists(ctx, "a/3")
		if err != nil {
			return err
		}
		if !ok {
			t.Error("Exists = false")
		}
	case chunktest.OpDelete:
		if err := r.Delete(ctx, "a/3"); err != nil {
			return err
		}
	case chunktest.OpList:
		var keys []string
		if err := r.List(ctx, "a/", func(o chunk.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
			return err
		}
		slices.Sort(keys)
		if len(keys) != 10 || slices.Compact(slices.Clone(keys))[9] != keys[9] {
			t.Errorf("List = %v, want a/0..a/9 once each", keys)
		}
	}
	return nil
}

var ops = []chunktest.Op{chunktest.OpWrite, chunktest.OpRead, chunktest.OpExists, chunktest.OpDelete, chunktest.OpList}

// TestRetrySurvivesTransientFailures: attempts-1 failures in a row of any
// method cost only time, waited out with capped exponential backoff.
func TestRetrySurvivesTransientFailures(t *testing.T) {
	for _, op := range ops {
		t.Run(string(op), func(t *testing.T) {
			r, faulty, waits := retrying(t)
			before := faulty.Calls(op)
			fault := chunktest.Fault{Repeat: attempts - 1}
			if op == chunktest.OpList {
				fault.After = 3 // fail mid-listing: the retry must not pass objects twice
			}
			faulty.Inject(op, fault)
			if err := call(t, r, op); err != nil {
				t.Fatalf("%s after %d transient failures: %v", op, attempts-1, err)
			}
			if got := faulty.Calls(op) - before; got != attempts {
				t.Errorf("%d calls, want %d", got, attempts)
			}
			w := waits()
			if len(w) != attempts-1 {
				t.Fatalf("waits %v, want %d", w, attempts-1)
			}
			for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
				if w[i] < want/2 || w[i] > want {
					t.Errorf("wait %d = %v, want within [%v, %v]", i, w[i], want/2, want)
				}
			}
		})
	}
}

// TestRetryGivesUp: past the bound the caller gets the last attempt's
// error.
func TestRetryGivesUp(t *testing.T) {
	for _, op := range ops {
		t.Run(string(op), func(t *testing.T) {
			r, faulty, _ := retrying(t)
			before := faulty.Calls(op)
			var last error
			for i := range attempts + 2 {
				last = fmt.Errorf("fault %d: %w", i, chunktest.ErrInjected)
				faulty.Inject(op, chunktest.Fault{Err: last})
			}
			last = fmt.Errorf("fault %d", attempts-1) // the last one the retry sees
			err := call(t, r, op)
			if err == nil || err.Error() != last.Error()+": "+chunktest.ErrInjected.Error() {
				t.Errorf("%s = %v, want the last attempt's %q", op, err, last)
			}
			if got := faulty.Calls(op) - before; got != attempts {
				t.Errorf("%d calls, want %d", got, attempts)
			}
		})
	}
}

// TestRetryNeverRetriesPermanent: a missing object, an existing one, or
// an error the caller's fn returns, is final on the first call.
func TestRetryNeverRetriesPermanent(t *testing.T) {
	ctx := t.Context()
	r, faulty, waits := retrying(t)
	if _, err := r.Read(ctx, "missing", nil); !errors.Is(err, chunk.ErrObjectNotFound) {
		t.Errorf("Read(missing) = %v, want ErrObjectNotFound", err)
	}
	if n := faulty.Calls(chunktest.OpRead); n != 1 {
		t.Errorf("Read(missing): %d calls, want 1", n)
	}
	writes := faulty.Calls(chunktest.OpWrite)
	if err := r.Write(ctx, "a/1", []byte("x"), true); !errors.Is(err, chunk.ErrObjectExists) {
		t.Errorf("Write(ifAbsent) of an existing object = %v, want ErrObjectExists", err)
	}
	if n := faulty.Calls(chunktest.OpWrite) - writes; n != 1 {
		t.Errorf("Write(ifAbsent): %d calls, want 1", n)
	}
	// A backend that says not found (for the bucket, say) is not asked
	// again either.
	faulty.Inject(chunktest.OpDelete, chunktest.Fault{Err: fmt.Errorf("bucket: %w", chunk.ErrObjectNotFound), Repeat: 5})
	if err := r.Delete(ctx, "a/1"); !errors.Is(err, chunk.ErrObjectNotFound) {
		t.Errorf("Delete = %v", err)
	}
	if n := faulty.Calls(chunktest.OpDelete); n != 1 {
		t.Errorf("Delete: %d calls, want 1", n)
	}
	stop := errors.New("stop")
	if err := r.List(ctx, "a/", func(chunk.Object) error { return stop }); err != stop {
		t.Errorf("List = %v, want fn's error", err)
	}
	if n := faulty.Calls(chunktest.OpList); n != 1 {
		t.Errorf("List: %d calls, want 1", n)
	}
	if w := waits(); len(w) != 0 {
		t.Errorf("waited %v for permanent errors", w)
	}
}

// TestRetryHonoursContext: a slow call whose ctx ends returns the ctx's
// error, and nothing is retried after it.
func TestRetryHonoursContext(t *testing.T) {
	r, faulty, waits := retrying(t)
	faulty.Inject(chunktest.OpRead, chunktest.Fault{Delay: time.Hour, Repeat: attempts})
	ctx, cancel := context.WithCancel(t.Context())
	go cancel()
	if _, err := r.Read(ctx, "a/1", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v, want context.Canceled", err)
	}
	if n := faulty.Calls(chunktest.OpRead); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
	if w := waits(); len(w) != 0 {
		t.Errorf("waited %v after the ctx ended", w)
	}
}

// TestRetryTornWrite: a write that stored part of the body and failed,
// retried, leaves the whole object.
func TestRetryTornWrite(t *testing.T) {
	ctx := t.Context()
	r, faulty, _ := retrying(t)
	body := bytes.Repeat([]byte("0123456789"), 100)

	// The fault does tear: without the retry the object is short.
	faulty.Inject(chunktest.OpWrite, chunktest.Fault{Torn: 10})
	if err := faulty.Write(ctx, "torn", body, false); !errors.Is(err, chunktest.ErrInjected) {
		t.Fatalf("torn Write = %v", err)
	}
	if got, err := faulty.Read(ctx, "torn", nil); err != nil || len(got) != 10 {
		t.Fatalf("after a torn write: %d bytes, %v; want 10", len(got), err)
	}

	faulty.Inject(chunktest.OpWrite, chunktest.Fault{Torn: 10, Repeat: attempts - 1})
	if err := r.Write(ctx, "torn", body, false); err != nil {
		t.Fatalf("Write through the retry: %v", err)
	}
	if got, err := r.Read(ctx, "torn", nil); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("after retried torn writes: %d bytes, %v; want the %d-byte body", len(got), err, len(body))
	}
}

// TestStoreOverRetry: a Store whose backend fails now and then stores and
// reads chunks and indexes as if it did not.
func TestStoreOverRetry(t *testing.T) {
	ctx := t.Context()
	b := memblob.OpenBucket(nil)
	t.Cleanup(func() { b.Close() })
	faulty := chunktest.NewFaulty(&chunk.BucketBackend{Bucket: b})
	s, err := chunk.NewOnBackend(faulty, chunk.Options{Key: chunktest.Key(t), Wrap: func(be chunk.Backend) chunk.Backend {
		r := chunk.NewRetry(be, retryOpts)
		chunk.RecordWaits(r)
		return r
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, op := range ops {
		faulty.Inject(op, chunktest.Fault{Repeat: 2})
	}
	faulty.Inject(chunktest.OpWrite, chunktest.Fault{Torn: 7})
	plain := chunktest.Random(1 << 16)
	d, _, err := s.Put(ctx, plain)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	idx := chunk.Index{DiskSize: int64(len(plain)), ChunkSize: int64(len(plain)), Digests: []chunk.Digest{d}, CreatedAt: time.Unix(1, 0).UTC()}
	if err := s.PutIndex(ctx, "disk/snap", idx); err != nil {
		t.Fatalf("PutIndex: %v", err)
	}
	got, err := s.Get(ctx, d, len(plain))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Get: %v", err)
	}
	names, err := s.ListIndexes(ctx, "")
	if err != nil || !slices.Equal(names, []string{"disk/snap"}) {
		t.Fatalf("ListIndexes = %v, %v", names, err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// TestQuarantineOverRetry: quarantine reaches the objects only through the
// Store's Backend, so a store with no bucket under it (NewOnBackend) moves
// a damaged chunk aside, lists and deletes it, and a backend that fails
// now and then does not stop it.
func TestQuarantineOverRetry(t *testing.T) {
	ctx := t.Context()
	b := memblob.OpenBucket(nil)
	t.Cleanup(func() { b.Close() })
	raw := &chunk.BucketBackend{Bucket: b}
	faulty := chunktest.NewFaulty(raw)
	s, err := chunk.NewOnBackend(faulty, chunk.Options{Key: chunktest.Key(t), Wrap: func(be chunk.Backend) chunk.Backend {
		r := chunk.NewRetry(be, retryOpts)
		chunk.RecordWaits(r)
		return r
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain := chunktest.Random(1 << 16)
	d, _, err := s.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	loc, err := s.Locate(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	body, err := raw.Read(ctx, loc.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	body[loc.Off+loc.Len/2] ^= 1
	if err := raw.Write(ctx, loc.Key, body, false); err != nil {
		t.Fatal(err)
	}

	for _, op := range ops {
		faulty.Inject(op, chunktest.Fault{Repeat: 2})
	}
	writes := faulty.Calls(chunktest.OpWrite)
	_, err = s.ReadInto(ctx, d, len(plain), make([]byte, len(plain)))
	if !errors.Is(err, chunk.ErrQuarantined) {
		t.Fatalf("ReadInto of a damaged chunk: %v; want it quarantined", err)
	}
	if faulty.Calls(chunktest.OpWrite) == writes {
		t.Fatal("quarantine moved the object without going through the backend")
	}
	if ok, err := raw.Exists(ctx, chunk.QuarantineKey(d)); !ok || err != nil {
		t.Fatalf("quarantined object present = %v, %v", ok, err)
	}
	if _, err := s.Get(ctx, d, len(plain)); !errors.Is(err, chunk.ErrQuarantined) {
		t.Fatalf("Get after quarantine: %v; want ErrQuarantined", err)
	}
	var listed []chunk.Digest
	if err := s.ListQuarantine(ctx, func(i chunk.Info) error { listed = append(listed, i.Digest); return nil }); err != nil || !slices.Equal(listed, []chunk.Digest{d}) {
		t.Fatalf("ListQuarantine = %v, %v", listed, err)
	}
	if ok, err := s.Has(ctx, d); ok || err != nil {
		t.Fatalf("Has(quarantined) = %v, %v; want false", ok, err)
	}
	if _, stored, err := s.Put(ctx, plain); err != nil || stored == 0 {
		t.Fatalf("Put of a quarantined chunk's data = %d, %v; want it stored again", stored, err)
	}
	if got, err := s.Get(ctx, d, len(plain)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Get after the chunk was stored again: %v", err)
	}
	if err := s.DeleteQuarantined(ctx, d); err != nil {
		t.Fatal(err)
	}
	if ok, err := raw.Exists(ctx, chunk.QuarantineKey(d)); ok || err != nil {
		t.Fatalf("after DeleteQuarantined, present = %v, %v", ok, err)
	}
}
