package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/google/uuid"
)

// Handler does the work of one kind of operation. It returns the result
// document (marshalled to JSON) or an error. Handlers must be idempotent:
// after a crash the same operation is handed to a handler again.
type Handler func(ctx context.Context, op meta.Operation) (result any, err error)

// Config tunes a Runner.
type Config struct {
	Owner       string        // this node's id; leases carry it
	Workers     int           // concurrent operations; default 4
	Lease       time.Duration // default 30s
	Poll        time.Duration // how often to look for work without a wake-up; default 1s
	MaxAttempts int           // default 5
	// StepDelay delays every attempt; a fault-injection knob that lets tests
	// kill the server in the middle of an operation.
	StepDelay time.Duration
}

// Runner claims and runs operations.
type Runner struct {
	store    meta.Store
	clock    clock.Clock
	log      *slog.Logger
	cfg      Config
	handlers map[string]Handler
	wake     chan struct{}
	wg       sync.WaitGroup
}

// New returns a Runner; register handlers before Start.
func New(store meta.Store, c clock.Clock, log *slog.Logger, cfg Config) *Runner {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Owner == "" {
		cfg.Owner = uuid.NewString()
	}
	return &Runner{store: store, clock: c, log: log, cfg: cfg, handlers: map[string]Handler{}, wake: make(chan struct{}, 1)}
}

// Register sets the handler of kind. It panics on a duplicate, a wiring bug.
func (r *Runner) Register(kind string, h Handler) {
	if _, dup := r.handlers[kind]; dup {
		panic("ops: duplicate handler for " + kind)
	}
	r.handlers[kind] = h
}

// Enqueue records a new operation in tx; it runs once tx commits and Wake
// (or the next poll) finds it.
func (r *Runner) Enqueue(ctx context.Context, tx meta.Tx, kind, resourceID string, input any) (meta.Operation, error) {
	return r.enqueue(ctx, tx, uuid.NewString(), kind, resourceID, input)
}

// EnqueueOnce is Enqueue under a caller's deterministic id: the operation
// is created unless one with that id exists, in which case that one is
// returned and created is false. Work that must happen once however many
// nodes ask and however often (a scheduled backup's slot) takes its id from
// what it is. Two transactions that race both see none; the second to
// commit fails on the id's uniqueness, and nothing of it is kept.
func (r *Runner) EnqueueOnce(ctx context.Context, tx meta.Tx, id, kind, resourceID string, input any) (op meta.Operation, created bool, err error) {
	existing, err := tx.GetOperation(ctx, id)
	if err == nil {
		return existing, false, nil
	}
	if !errs.Is(err, errs.NotFound) {
		return meta.Operation{}, false, err
	}
	op, err = r.enqueue(ctx, tx, id, kind, resourceID, input)
	return op, err == nil, err
}

func (r *Runner) enqueue(ctx context.Context, tx meta.Tx, id, kind, resourceID string, input any) (meta.Operation, error) {
	if _, ok := r.handlers[kind]; !ok {
		return meta.Operation{}, fmt.Errorf("ops: no handler for %q", kind)
	}
	raw, err := json.Marshal(input)
	if err != nil {
		return meta.Operation{}, err
	}
	// The operation is pinned to this node for a lease: the node that
	// accepted the request runs it (it may hold state the work needs, such
	// as a frozen snapshot view or the disk's volume), and another node
	// takes it only if this one dies.
	now := r.clock.Now()
	op := meta.Operation{
		ID:         id,
		Kind:       kind,
		ResourceID: resourceID,
		Status:     meta.StatusInProgress,
		Input:      raw,
		StartedAt:  now,
		LeaseOwner: r.cfg.Owner,
		LeaseUntil: now.Add(r.cfg.Lease),
	}
	return op, tx.CreateOperation(ctx, op)
}

// Wake tells the workers there may be new work.
func (r *Runner) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Start drops this node's stale leases and starts the workers; they stop
// when ctx is done, and Wait waits for them.
func (r *Runner) Start(ctx context.Context) error {
	if err := r.store.ReleaseLeases(ctx, r.cfg.Owner); err != nil {
		return fmt.Errorf("release stale leases: %w", err)
	}
	for i := 0; i < r.cfg.Workers; i++ {
		r.wg.Add(1)
		go r.work(ctx)
	}
	return nil
}

// RunDue claims and runs, on the caller's goroutine, every operation that
// is runnable now, until none is; it returns how many it ran. It is how a
// simulation (weeks on a fake clock) or a one-shot tool drives operations
// without the workers' timing.
func (r *Runner) RunDue(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		op, ok, err := r.store.ClaimOperation(ctx, r.cfg.Owner, r.clock.Now(), r.cfg.Lease)
		if err != nil || !ok {
			return n, err
		}
		r.run(ctx, op)
		n++
	}
	return n, ctx.Err()
}

// Wait blocks until the workers started by Start have returned.
func (r *Runner) Wait() { r.wg.Wait() }

func (r *Runner) work(ctx context.Context) {
	defer r.wg.Done()
	t := r.clock.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			op, ok, err := r.store.ClaimOperation(ctx, r.cfg.Owner, r.clock.Now(), r.cfg.Lease)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Error("claim operation", "err", err)
				}
				break
			}
			if !ok {
				break
			}
			r.run(ctx, op)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C():
		}
	}
}

func (r *Runner) run(ctx context.Context, op meta.Operation) {
	log := r.log.With("operation", op.ID, "kind", op.Kind, "attempt", op.Attempts)
	h := r.handlers[op.Kind]
	if h == nil {
		r.finish(ctx, op, nil, fmt.Errorf("no handler for operation kind %q", op.Kind), log)
		return
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.keepLease(runCtx, op.ID, cancel, log)

	if clock.Sleep(runCtx, r.clock, r.cfg.StepDelay) != nil {
		return
	}
	result, err := r.call(runCtx, h, op)
	if ctx.Err() != nil {
		// Shutting down: leave the operation for the next start, which
		// releases our leases and runs it again.
		return
	}
	if err != nil && errs.Is(err, errs.Transient) && op.Attempts < r.cfg.MaxAttempts {
		backoff := time.Duration(1<<min(op.Attempts, 6)) * time.Second
		log.Warn("operation will be retried", "err", err, "after", backoff)
		if err := r.store.ReleaseOperation(ctx, op.ID, r.cfg.Owner, r.clock.Now().Add(backoff)); err != nil {
			log.Error("release operation", "err", err)
		}
		return
	}
	r.finish(ctx, op, result, err, log)
}

func (r *Runner) call(ctx context.Context, h Handler, op meta.Operation) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx, op)
}

// keepLease renews the lease until ctx ends; losing it cancels the work,
// because another node now owns the operation. Each renewal is a third of a
// lease after the last one ended, so a slow store never queues renewals.
func (r *Runner) keepLease(ctx context.Context, id string, lost func(), log *slog.Logger) {
	every := r.cfg.Lease / 3
	t := r.clock.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			ok, err := r.store.RenewLease(ctx, id, r.cfg.Owner, r.clock.Now().Add(r.cfg.Lease))
			if err != nil && ctx.Err() == nil {
				log.Error("renew lease", "err", err)
			}
			if err == nil && !ok {
				log.Warn("lease lost; stopping work")
				lost()
				return
			}
			t.Reset(every)
		}
	}
}

func (r *Runner) finish(ctx context.Context, op meta.Operation, result any, err error, log *slog.Logger) {
	done := meta.Operation{ID: op.ID, Status: meta.StatusSucceeded, EndedAt: r.clock.Now()}
	if err != nil {
		done.Status = meta.StatusFailed
		done.Error = EncodeError(err)
		log.Warn("operation failed", "err", err)
	} else if result != nil {
		raw, mErr := json.Marshal(result)
		if mErr != nil {
			done.Status = meta.StatusFailed
			done.Error = EncodeError(mErr)
		}
		done.Result = raw
	}
	if _, err := r.store.FinishOperation(ctx, done); err != nil {
		log.Error("record operation end", "err", err)
		return
	}
	log.Info("operation ended", "status", done.Status)
}

// StoredError is the client-safe error kept with a failed operation.
type StoredError struct {
	Kind           errs.Kind             `json:"kind"`
	Code           string                `json:"code"`
	Message        string                `json:"message"`
	Target         string                `json:"target,omitempty"`
	AdditionalInfo []errs.AdditionalInfo `json:"additionalInfo,omitempty"`
}

// EncodeError keeps what the client may see of err; an error without a
// kind becomes a generic internal error (its detail is only logged).
func EncodeError(err error) json.RawMessage {
	var e *errs.Error
	se := StoredError{Kind: errs.Internal, Code: "InternalServerError", Message: "The operation failed because of an internal error."}
	if errors.As(err, &e) && e.Kind != errs.Internal {
		se = StoredError{Kind: e.Kind, Code: e.Code, Message: e.Message, Target: e.Target, AdditionalInfo: e.AdditionalInfo}
	}
	raw, _ := json.Marshal(se)
	return raw
}

// DecodeError turns a stored error back into an *errs.Error.
func DecodeError(raw json.RawMessage) *errs.Error {
	var se StoredError
	if len(raw) == 0 || json.Unmarshal(raw, &se) != nil {
		return errs.E(errs.Internal, "InternalServerError", "The operation failed because of an internal error.")
	}
	return &errs.Error{Kind: se.Kind, Code: se.Code, Message: se.Message, Target: se.Target, AdditionalInfo: se.AdditionalInfo}
}
