package chunk

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"gocloud.dev/gcerrors"
)

// RetryOptions tune NewRetry; the zero value is the defaults.
type RetryOptions struct {
	// MaxAttempts bounds the calls one operation makes, the first
	// included; default 6.
	MaxAttempts int
	// Initial is the backoff before the second attempt, doubled before
	// each further one up to Max; defaults 250ms and 5s. Each wait is
	// drawn from [d/2, d] so workers that failed together do not retry
	// together.
	Initial, Max time.Duration
	// Clock is what the backoff waits on; default clock.Real.
	Clock clock.Clock
}

// Retry is a Backend that retries its inner backend's transient failures
// (restic's backend/retry is the model): a dropped connection, a 5xx, a
// timeout, throttling. It gives up after MaxAttempts with the last error,
// at once when ctx ends, and never retries what will not change: a missing
// object, an object that exists, a refused request (errors wrapping
// ErrObjectNotFound or ErrObjectExists, and gocloud's NotFound,
// AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied and
// Unimplemented).
//
// Every Backend method is safe to repeat: Write replaces the whole object,
// so a write that failed half way (or landed and lost its answer) and is
// retried leaves the complete object; List, retried, skips the objects it
// already passed to fn.
type Retry struct {
	Backend
	opts RetryOptions
	// sleep waits d on the options' clock or until ctx ends; a field so
	// tests need not wait.
	sleep func(ctx context.Context, d time.Duration) error
}

var _ Backend = (*Retry)(nil)

// NewRetry wraps b.
func NewRetry(b Backend, opts RetryOptions) *Retry {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 6
	}
	if opts.Initial <= 0 {
		opts.Initial = 250 * time.Millisecond
	}
	if opts.Max <= 0 {
		opts.Max = 5 * time.Second
	}
	c := opts.Clock
	if c == nil {
		c = clock.Real{}
	}
	return &Retry{Backend: b, opts: opts, sleep: func(ctx context.Context, d time.Duration) error { return clock.Sleep(ctx, c, d) }}
}

// Permanent reports whether err is a backend failure that repeating the
// call cannot change.
func Permanent(err error) bool {
	if errors.Is(err, ErrObjectNotFound) || errors.Is(err, ErrObjectExists) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var tooLarge *ObjectTooLargeError
	if errors.As(err, &tooLarge) {
		return true
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.FailedPrecondition,
		gcerrors.InvalidArgument, gcerrors.PermissionDenied, gcerrors.Unimplemented:
		return true
	}
	return false
}

// do calls fn until it succeeds, fails permanently, has been called
// MaxAttempts times, or ctx ends.
func (r *Retry) do(ctx context.Context, fn func() error) error {
	wait := r.opts.Initial
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || errors.Is(err, errStopList) || Permanent(err) || attempt >= r.opts.MaxAttempts {
			return err
		}
		if ctx.Err() != nil {
			return err // the call's own error says more than "canceled"
		}
		d := wait/2 + rand.N(wait/2+1)
		if serr := r.sleep(ctx, d); serr != nil {
			return err
		}
		wait = min(2*wait, r.opts.Max)
	}
}

// Write implements Backend.
func (r *Retry) Write(ctx context.Context, key string, body []byte, ifAbsent bool) error {
	return r.do(ctx, func() error { return r.Backend.Write(ctx, key, body, ifAbsent) })
}

// Read implements Backend.
func (r *Retry) Read(ctx context.Context, key string, buf []byte) ([]byte, error) {
	var body []byte
	err := r.do(ctx, func() error {
		var err error
		body, err = r.Backend.Read(ctx, key, buf)
		return err
	})
	return body, err
}

// ReadRange implements Backend.
func (r *Retry) ReadRange(ctx context.Context, key string, off, n int64, buf []byte) ([]byte, error) {
	var body []byte
	err := r.do(ctx, func() error {
		var err error
		body, err = r.Backend.ReadRange(ctx, key, off, n, buf)
		return err
	})
	return body, err
}

// Exists implements Backend.
func (r *Retry) Exists(ctx context.Context, key string) (bool, error) {
	var ok bool
	err := r.do(ctx, func() error {
		var err error
		ok, err = r.Backend.Exists(ctx, key)
		return err
	})
	return ok, err
}

// Delete implements Backend.
func (r *Retry) Delete(ctx context.Context, key string) error {
	return r.do(ctx, func() error { return r.Backend.Delete(ctx, key) })
}

// List implements Backend. An error from fn ends the listing at once and
// is returned as it is; it is never retried.
func (r *Retry) List(ctx context.Context, prefix string, fn func(Object) error) error {
	seen := map[string]struct{}{}
	var fnErr error
	err := r.do(ctx, func() error {
		return r.Backend.List(ctx, prefix, func(obj Object) error {
			if _, ok := seen[obj.Key]; ok {
				return nil
			}
			seen[obj.Key] = struct{}{}
			if err := fn(obj); err != nil {
				fnErr = err
				return errStopList
			}
			return nil
		})
	})
	if errors.Is(err, errStopList) {
		return fnErr
	}
	return err
}

// errStopList carries fn's error out of a listing; do does not retry it.
var errStopList = errors.New("listing stopped by its caller")
