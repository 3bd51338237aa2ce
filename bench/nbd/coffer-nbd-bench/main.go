// Command coffer-nbd-bench serves one volume over coffer's NBD server for
// bench/nbd/run. It is a benchmark harness, not part of coffer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/internal/nbd"
	"github.com/coffer-backup/coffer/internal/volume"
)

func main() {
	dir := flag.String("dir", "", "volume directory (created if it holds no volume)")
	size := flag.Int64("size", 2<<30, "volume size in bytes when creating")
	addr := flag.String("addr", "127.0.0.1:10809", "listen address")
	workers := flag.Int("workers", 0, "requests run at once per connection (0: server default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "coffer-nbd-bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*dir, *size, *addr, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "coffer-nbd-bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(dir string, size int64, addr string, workers int) error {
	if dir == "" {
		return errors.New("-dir is required")
	}
	v, err := volume.Open(dir)
	if err != nil {
		v, err = volume.Create(dir, size)
	}
	if err != nil {
		return err
	}
	defer v.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &nbd.Server{
		Lookup:  func(context.Context, string) (nbd.Export, func(), error) { return mapped{v}, nil, nil },
		List:    func(context.Context) []string { return []string{"disk"} },
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Workers: workers,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("serving %s (%d bytes) on nbd://%s/disk\n", dir, v.Size(), ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, nbd.ErrServerClosed) {
		return err
	}
	return nil
}

// mapped exports the volume with its allocation map, as coffer's disk
// engine does, so structured reads and block status cost here what they
// cost in the server.
type mapped struct{ *volume.Volume }

var _ nbd.Mapper = mapped{}

func (m mapped) Extents(off, n int64) ([]nbd.Extent, error) {
	exts, err := m.Volume.Extents(off, n)
	out := make([]nbd.Extent, len(exts))
	for i, x := range exts {
		out[i] = nbd.Extent{Len: x.Len, Hole: x.Hole, Zero: x.Zero}
	}
	return out, err
}
