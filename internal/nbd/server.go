package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("nbd: server closed")

// Server serves exports over the NBD protocol (fixed newstyle handshake,
// simple or structured replies, base:allocation block status). The exported fields must be set before Serve and not
// changed after.
type Server struct {
	// Lookup resolves an export name. The release function, if not nil, is
	// called once the connection that looked the export up is done with
	// it. An error of kind errs.NotFound is reported to the client as an
	// unknown export, errs.Forbidden as a policy refusal.
	Lookup func(ctx context.Context, name string) (Export, func(), error)
	// List returns the export names a client may see with NBD_OPT_LIST.
	// Nil refuses listing.
	List func(ctx context.Context) []string
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// TLS, if set, makes TLS mandatory: options other than STARTTLS and
	// ABORT are refused until the client upgrades.
	TLS *tls.Config
	// Workers is how many requests one connection runs at once; 0 means 16.
	Workers int

	initOnce  sync.Once
	ctx       context.Context // cancelled when Shutdown gives up waiting
	cancel    context.CancelFunc
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	wg        sync.WaitGroup
	pool      bufPool
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) workers() int {
	if s.Workers > 0 {
		return s.Workers
	}
	return 16
}

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			_ = nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Shutdown stops accepting connections, stops reading new requests, lets
// requests already read finish and be answered, flushes exports that were
// written, and closes the connections. If ctx ends first, connections are
// closed hard and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.raw.Close()
		}
		s.mu.Unlock()
		// Requests stuck inside the export cannot be interrupted; their
		// goroutines finish on their own.
		return ctx.Err()
	}
}
