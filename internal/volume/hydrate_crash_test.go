package volume

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCopyOnReadPersistsAfterSync: a block a reader fetched is local at
// once (the reader and the hydration do not fetch it again) but joins the
// persisted bitmap only once a persist has synced its bytes.
func TestCopyOnReadPersistsAfterSync(t *testing.T) {
	const size = 8 << 20
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := CreateBacked(dir, size, "snapshots/p")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	open := make(chan struct{})
	close(open)
	src := &patternReader{open: open}
	v.SetBacking(src)
	got := make([]byte, 4096)
	for range 2 {
		if _, err := v.ReadAt(got, 3<<20+100); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(src.reads()); n != 1 {
		t.Fatalf("two reads of one extent fetched it %d times", n)
	}
	for i, c := range got {
		if c != patternByte(3<<20+100+int64(i)) {
			t.Fatal("copy on read returned other bytes")
		}
	}
	h, per := v.hydr, hydrateExtent/v.blockSize
	persisted := func(b int64) bool { return h.words[b>>6]&(1<<(uint(b)&63)) != 0 }
	for b := 3 * per; b < 4*per; b++ {
		if !h.has(b) {
			t.Fatalf("block %d fetched by a reader is not local", b)
		}
		if persisted(b) {
			t.Fatalf("block %d is in the persisted bitmap before its bytes were synced", b)
		}
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	for b := 3 * per; b < 4*per; b++ {
		if !persisted(b) {
			t.Fatalf("block %d is not in the persisted bitmap after Flush", b)
		}
	}
	if persisted(2*per) || h.has(2*per) {
		t.Fatal("a block no one read is marked")
	}
}

// gateReader is a backing of pattern bytes that holds every read longer
// than one block (a reader's or the hydration's fetch of an extent) until
// release is closed, and says on held when one is waiting. Reads of one
// block (a writer bringing its block local) pass.
type gateReader struct {
	block   int64
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

func (r *gateReader) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) > r.block {
		r.once.Do(func() { close(r.held) })
		<-r.release
	}
	for i := range p {
		p[i] = patternByte(off + int64(i))
	}
	return len(p), nil
}

// TestWriteRacingCopyOnRead: a write that lands in a block while a reader
// (or the hydration) is fetching that block's extent is never overwritten
// by the fetched bytes, which are older.
func TestWriteRacingCopyOnRead(t *testing.T) {
	for _, fetcher := range []string{"reader", "hydration"} {
		t.Run(fetcher, func(t *testing.T) {
			const size = 4 << 20
			dir := filepath.Join(t.TempDir(), "vol")
			v, err := CreateBacked(dir, size, "snapshots/r")
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			src := &gateReader{block: v.blockSize, held: make(chan struct{}), release: make(chan struct{})}
			v.SetBacking(src)
			fetched := make(chan error, 1)
			go func() {
				if fetcher == "reader" {
					_, err := v.ReadAt(make([]byte, 4096), 2<<20)
					fetched <- err
					return
				}
				fetched <- v.Hydrate(t.Context(), nil)
			}()
			<-src.held
			// The write's block is in the extent being fetched (the
			// hydration starts at extent 0; the reader fetches extent 2).
			off := int64(2<<20 + 5*4096)
			if fetcher == "hydration" {
				off = 5 * 4096
			}
			data := randomBytes(t, 4096)
			if _, err := v.WriteAt(data, off); err != nil {
				t.Fatal(err)
			}
			close(src.release)
			if err := <-fetched; err != nil {
				t.Fatal(err)
			}
			if err := v.Hydrate(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, v, size)
			if !bytes.Equal(got[off:off+4096], data) {
				t.Fatal("the fetched extent overwrote a write made while it was fetched")
			}
			for i, c := range got {
				if (int64(i) < off || int64(i) >= off+4096) && c != patternByte(int64(i)) {
					t.Fatalf("byte %d is not the backing's", i)
				}
			}
		})
	}
}

// The hydration crash test runs the test binary again as a child that
// hydrates a volume from a slow backing while it writes and flushes, until
// it is killed with SIGKILL; the parent reopens the volume, checks every
// flushed write and every other byte, and finishes the hydration.
const hydrateCrashEnv = "COFFER_VOLUME_HYDRATE_CRASH_DIR"

// slowPattern is the child's backing: pattern bytes, read at 20 MiB/s so
// the kill lands mid-hydration.
type slowPattern struct{}

func (slowPattern) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(time.Duration(len(p)) * 50 * time.Millisecond >> 20)
	for i := range p {
		p[i] = patternByte(off + int64(i))
	}
	return len(p), nil
}

func TestHydrationKilledMidway(t *testing.T) {
	if dir := os.Getenv(hydrateCrashEnv); dir != "" {
		hydrateCrashChild(t, dir)
		return
	}
	const size = 256 << 20
	dir := filepath.Join(t.TempDir(), "v")
	v, err := CreateBacked(dir, size, "snapshots/k")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	cmd, out := startChild(t, "TestHydrationKilledMidway", hydrateCrashEnv, dir)
	flushed := map[int64]bool{}
	maybe := map[int64]bool{} // written, perhaps not flushed
	var hydrated int64        // blocks the child's hydration reported done
	// A child that never reports (a hung hydration) is killed too, and
	// the checks below say what it reached.
	stuck := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	defer stuck.Stop()
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		s, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "writing":
			maybe[s] = true
		case "flushed":
			flushed[s] = true
		case "hydrated":
			hydrated = s
		}
		if len(flushed) >= 10 && hydrated > 0 && !killed {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before being killed, with %d flushed writes and %d blocks hydrated: %v", len(flushed), hydrated, err)
	}

	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Backing() == "" {
		t.Fatal("the child finished its hydration before the kill: nothing was tested")
	}
	var persisted int64
	for b := range nblocksFor(size, v.blockSize) {
		if v.hydr.words[b>>6]&(1<<(uint(b)&63)) != 0 {
			persisted++
		}
	}
	t.Logf("killed with %d flushed writes, %d blocks hydrated, %d of %d blocks persisted as local",
		len(flushed), hydrated, persisted, nblocksFor(size, v.blockSize))
	open := make(chan struct{})
	close(open)
	v.SetBacking(&patternReader{open: open})
	check := func(when string) {
		got := readAll(t, v, size)
		want := make([]byte, crashSlot)
		for s := int64(0); s < size/crashSlot; s++ {
			slot := got[s*crashSlot : (s+1)*crashSlot]
			crashPattern(s, want)
			if bytes.Equal(slot, want) {
				if !maybe[s] {
					t.Fatalf("%s: slot %d holds a write never made", when, s)
				}
				continue
			}
			if flushed[s] {
				t.Fatalf("%s: flushed write to slot %d lost", when, s)
			}
			for i, c := range slot {
				if c != patternByte(s*crashSlot+int64(i)) {
					t.Fatalf("%s: slot %d is neither the backing's nor the write's", when, s)
				}
			}
		}
	}
	check("after the kill")
	if err := v.Hydrate(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if v.Backing() != "" {
		t.Fatal("the hydration did not finish")
	}
	check("after the hydration")
}

// hydrateCrashChild hydrates the volume in dir while it writes slots
// scattered over it, printing "writing N" before and "flushed N" after
// each write and Flush, and "hydrated N" as the hydration progresses.
func hydrateCrashChild(t *testing.T, dir string) {
	v, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	v.SetBacking(slowPattern{})
	nslots := v.Size() / crashSlot
	w := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	say := func(what string, s int64) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, "%s %d\n", what, s)
		_ = w.Flush()
	}
	go func() { _ = v.Hydrate(t.Context(), func(done, _ int64) { say("hydrated", done) }) }()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			p := make([]byte, crashSlot)
			for {
				s := (next.Add(1) * 7919) % nslots
				crashPattern(s, p)
				say("writing", s)
				if _, err := v.WriteAt(p, s*crashSlot); err != nil {
					panic(err)
				}
				if err := v.Flush(); err != nil {
					panic(err)
				}
				say("flushed", s)
			}
		})
	}
	wg.Wait()
}
