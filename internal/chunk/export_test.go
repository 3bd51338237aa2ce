package chunk

import (
	"context"
	"sync"
	"time"
)

// WorthCompressing exposes the compression heuristic to the external tests.
var WorthCompressing = worthCompressing

// RecordWaits makes r's backoff return at once and returns a function that
// reports the waits r asked for.
func RecordWaits(r *Retry) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	r.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return ctx.Err()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
}
