// Command harness drives coffer's snapshot engine for bench/backup/run: it
// makes the test image, loads it into a volume, and runs (and times) a full
// snapshot, an incremental, a restore and a raw chunk Put baseline. Each
// step is its own invocation so the script can drop caches between them.
// Results are printed as "RESULT key value" lines.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/bench/internal/pattern"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
)

const mib = 1 << 20

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: harness mkimage|mkvol|load|change|full|incr|restore|rawput|s3count [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	img := fs.String("img", "", "image file")
	vol := fs.String("vol", "", "volume directory")
	data := fs.String("data", "", "coffer data directory (chunk store in <data>/blobs)")
	name := fs.String("name", "", "snapshot name")
	prev := fs.String("prev", "", "previous snapshot name")
	out := fs.String("out", "", "restore target file")
	size := fs.Int64("size", 4<<30, "image or volume size in bytes")
	seed := fs.Uint64("seed", 1, "random seed")
	extents := fs.Int("extents", 10, "change: how many extents to overwrite")
	extent := fs.Int64("extent", 4*mib, "change: extent size")
	workers := fs.Int("workers", 0, "workers (0 = default)")
	hydrate := fs.Bool("hydrate", true, "readdisk: hydrate in the background meanwhile, as the service does")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here")
	blobURL := fs.String("blob", "", "s3count: the S3 server, as an s3:// blob URL (the bucket name is replaced)")
	packSize := fs.Int64("packsize", 0, "s3count: chunk.Options.PackSize (negative: one object a chunk)")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "mkimage":
		err = mkimage(*img, *size, *seed)
	case "mkvol":
		err = mkvol(*vol, *size, *seed)
	case "load":
		err = load(*img, *vol)
	case "change":
		err = change(*vol, *img, *seed, *extents, *extent)
	case "full", "incr":
		err = upload(ctx, *vol, *data, *name, *prev, *workers)
	case "restore":
		err = restore(ctx, *data, *name, *out)
	case "fold":
		err = foldImage(*img)
	case "readdisk":
		err = readDisk(ctx, *data, *name, *out, *workers, *hydrate)
	case "rawput":
		err = rawput(ctx, *img, *data, *workers)
	case "s3count":
		err = s3count(ctx, *img, *blobURL, *data, *packSize, *workers)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func result(key string, v any) { fmt.Printf("RESULT %s %v\n", key, v) }

func mkimage(path string, size int64, seed uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	if err := pattern.Write(size, seed, func(p []byte, off int64) error { _, err := f.WriteAt(p, off); return err }); err != nil {
		return err
	}
	return f.Sync()
}

// mkvol creates a volume holding the pattern directly (the 16 GiB disk,
// which needs no image file) and starts its change epoch.
func mkvol(dir string, size int64, seed uint64) error {
	v, err := volume.Create(dir, size)
	if err != nil {
		return err
	}
	defer v.Close()
	if err := pattern.Write(size, seed, func(p []byte, off int64) error { _, err := v.WriteAt(p, off); return err }); err != nil {
		return err
	}
	return v.Flush()
}

// load copies the image's data ranges into a new volume of its size.
func load(imgPath, dir string) error {
	f, err := os.Open(imgPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	v, err := volume.Create(dir, fi.Size())
	if err != nil {
		return err
	}
	defer v.Close()
	buf := make([]byte, 8*mib)
	for off := int64(0); off < fi.Size(); {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return err
		}
		h, err := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		for at := d; at < h; {
			n := min(int64(len(buf)), h-at)
			if _, err := f.ReadAt(buf[:n], at); err != nil {
				return err
			}
			if _, err := v.WriteAt(buf[:n], at); err != nil {
				return err
			}
			at += n
		}
		off = h
	}
	return v.Flush()
}

// change overwrites extents random extent-aligned extents with new random
// bytes (pattern.Change), in the volume and, if given, at the same offsets
// in the image.
func change(dir, imgPath string, seed uint64, extents int, extent int64) error {
	v, err := volume.Open(dir)
	if err != nil {
		return err
	}
	defer v.Close()
	ws := []func(p []byte, off int64) error{func(p []byte, off int64) error { _, err := v.WriteAt(p, off); return err }}
	var img *os.File
	if imgPath != "" {
		if img, err = os.OpenFile(imgPath, os.O_RDWR, 0); err != nil {
			return err
		}
		defer img.Close()
		ws = append(ws, func(p []byte, off int64) error { _, err := img.WriteAt(p, off); return err })
	}
	n, err := pattern.Change(v.Size(), seed, extents, extent, ws...)
	if err != nil {
		return err
	}
	if img != nil {
		if err := img.Sync(); err != nil {
			return err
		}
	}
	result("changed_bytes", n)
	return v.Flush()
}

// openStore opens the store in data. PACKSIZE in the environment, if set,
// is chunk.Options.PackSize (negative: version 1, one object a chunk), so
// one run can compare the layouts.
func openStore(ctx context.Context, data string) (*chunk.Store, error) {
	var opts chunk.Options
	if v := os.Getenv("PACKSIZE"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("PACKSIZE: %w", err)
		}
		opts.PackSize = n
	}
	return chunk.Open(ctx, "", data, opts)
}

// upload takes a snapshot the way the service does: freeze the volume
// (the copy-on-write view, which also cuts the change set), upload from
// the view (full when there is no previous snapshot), commit the change
// set and release the view.
func upload(ctx context.Context, dir, data, name, prevName string, workers int) error {
	start := time.Now()
	phase := func(what string) { result("t_"+what, fmt.Sprintf("%.3f", time.Since(start).Seconds())) }
	v, err := volume.Open(dir)
	if err != nil {
		return err
	}
	defer v.Close()
	phase("open_volume")
	store, err := openStore(ctx, data)
	if err != nil {
		return err
	}
	defer store.Close()
	phase("open_store")
	view, err := v.Snapshot()
	if err != nil {
		return err
	}
	defer view.Release()
	phase("freeze")
	req := snapshot.UploadRequest{Name: name, Source: view, Workers: workers, InFlight: snapshot.NewInFlight()}
	if prevName != "" {
		prev, err := store.GetIndex(ctx, prevName)
		if err != nil {
			return err
		}
		req.Previous, req.PreviousName = &prev, prevName
		req.Changed, req.ChangedBlockSize = view.Changed(), view.BlockSize()
	}
	phase("previous")
	var putsDone time.Duration
	req.Progress = func(done, total int64) {
		if done == total {
			putsDone = time.Since(start)
		}
	}
	_, st, err := snapshot.Upload(ctx, store, req)
	result("t_chunks_put", fmt.Sprintf("%.3f", putsDone.Seconds()))
	if err != nil {
		return err
	}
	phase("upload")
	if err := view.Commit(); err != nil {
		return err
	}
	phase("commit")
	sec := time.Since(start).Seconds()
	result("seconds", fmt.Sprintf("%.3f", sec))
	result("full", st.Full)
	result("chunks", st.Chunks)
	result("chunks_read", st.ChunksRead)
	result("chunks_stored", st.ChunksStored)
	result("zero_chunks", st.ZeroChunks)
	result("reused", st.Reused)
	result("bytes_read", st.BytesRead)
	result("bytes_stored", st.BytesStored)
	result("read_MBps", fmt.Sprintf("%.0f", float64(st.BytesRead)/sec/1e6))
	return nil
}

// backedDisk makes what the service makes for a disk created from snapshot
// name: a volume at out backed by a reader of the snapshot (with the
// service's 64-chunk cache). done closes the volume and the store.
func backedDisk(ctx context.Context, data, name, out string) (v *volume.Volume, idx chunk.Index, done func(), err error) {
	store, err := openStore(ctx, data)
	if err != nil {
		return nil, idx, nil, err
	}
	if idx, err = store.GetIndex(ctx, name); err == nil {
		v, err = volume.CreateBacked(out, idx.DiskSize, name)
	}
	if err != nil {
		store.Close()
		return nil, idx, nil, err
	}
	v.SetBacking(snapshot.NewReader(store, idx, snapshot.ReaderOptions{CacheChunks: 64}))
	return v, idx, func() { v.Close(); store.Close() }, nil
}

// restore does what a disk created from the snapshot does: a volume backed
// by the snapshot, hydrated to the end. The disk is then the volume's data
// file, which the script compares with the image.
func restore(ctx context.Context, data, name, out string) error {
	start := time.Now()
	v, idx, done, err := backedDisk(ctx, data, name, out)
	if err != nil {
		return err
	}
	defer done()
	if err := v.Hydrate(ctx, nil); err != nil {
		return err
	}
	sec := time.Since(start).Seconds()
	var n int64
	for i, d := range idx.Digests {
		if !d.IsZero() {
			n += int64(idx.ChunkLen(i))
		}
	}
	result("seconds", fmt.Sprintf("%.3f", sec))
	result("bytes_written", n)
	result("write_MBps", fmt.Sprintf("%.0f", float64(n)/sec/1e6))
	return nil
}

// readDisk does what a client of a disk created from the snapshot sees: the
// disk is usable at once (a volume backed by the snapshot, hydrating in the
// background as the service's is) and is read end to end, 1 MiB at a time
// by workers readers as nbdcopy does. Timed to the last byte read.
func readDisk(ctx context.Context, data, name, out string, workers int, hydrate bool) error {
	if workers <= 0 {
		workers = 8
	}
	start := time.Now()
	v, idx, done, err := backedDisk(ctx, data, name, out)
	if err != nil {
		return err
	}
	defer done()
	hctx, stop := context.WithCancel(ctx)
	defer stop()
	hydrated := make(chan error, 1)
	if hydrate {
		go func() { hydrated <- v.Hydrate(hctx, nil) }()
	}
	result("t_usable", fmt.Sprintf("%.3f", time.Since(start).Seconds()))
	next := make(chan int64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var readErr error
	var sum uint64
	for range workers {
		wg.Go(func() {
			buf := make([]byte, mib)
			var local uint64
			for off := range next {
				n, err := v.ReadAt(buf[:min(mib, idx.DiskSize-off)], off)
				if err != nil {
					mu.Lock()
					readErr = errors.Join(readErr, err)
					mu.Unlock()
					return
				}
				local += fold(buf[:n])
			}
			mu.Lock()
			sum += local
			mu.Unlock()
		})
	}
	for off := int64(0); off < idx.DiskSize; off += mib {
		next <- off
	}
	close(next)
	wg.Wait()
	if readErr != nil {
		return readErr
	}
	sec := time.Since(start).Seconds()
	result("seconds", fmt.Sprintf("%.3f", sec))
	result("fold", sum)
	stop()
	if hydrate {
		<-hydrated
	}
	return nil
}

// fold is a cheap check of what a read returned, one word a page: it
// catches chunks out of place or missing without costing the read a hash.
func fold(p []byte) uint64 {
	var s uint64
	for i := 0; i+8 <= len(p); i += 4096 {
		s += binary.LittleEndian.Uint64(p[i:])
	}
	return s
}

// foldImage prints the fold of a whole image, to compare with readdisk's.
func foldImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, mib)
	var sum uint64
	for off := int64(0); ; off += mib {
		n, err := f.ReadAt(buf, off)
		sum += fold(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	result("fold", sum)
	return nil
}

// rawput is the baseline for the pipeline: Put every non-zero 1 MiB chunk
// of the image, read into memory first (not timed), from workers
// goroutines into a fresh store.
func rawput(ctx context.Context, imgPath, data string, workers int) error {
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	b, err := os.ReadFile(imgPath)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, data)
	if err != nil {
		return err
	}
	defer store.Close()
	start := time.Now()
	next := make(chan []byte, workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var putErr error
	var total int64
	for range workers {
		wg.Go(func() {
			for c := range next {
				if _, _, err := store.Put(ctx, c); err != nil {
					mu.Lock()
					putErr = errors.Join(putErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for off := 0; off < len(b); off += mib {
		next <- b[off:min(off+mib, len(b))]
		total += int64(min(mib, len(b)-off))
	}
	close(next)
	wg.Wait()
	if putErr != nil {
		return putErr
	}
	if err := store.Sync(ctx); err != nil {
		return err
	}
	sec := time.Since(start).Seconds()
	result("seconds", fmt.Sprintf("%.3f", sec))
	result("MBps", fmt.Sprintf("%.0f", float64(total)/sec/1e6))
	return nil
}
