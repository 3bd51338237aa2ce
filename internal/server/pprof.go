package server

import (
	"context"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// PprofFile, in the data directory, holds the http URL of the profiling
// listener while serve runs with --debug-pprof-addr.
const PprofFile = "pprof-endpoint"

// servePprof serves net/http/pprof on addr, on a listener of its own and
// without TLS or tokens, so it is meant for loopback only (a hidden flag,
// for benchmarks). It stops when ctx ends.
func servePprof(ctx context.Context, addr string, dir DataDir) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := os.WriteFile(dir.Path(PprofFile), []byte("http://"+ln.Addr().String()+"\n"), 0o644); err != nil {
		ln.Close()
		return err
	}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return nil
}
