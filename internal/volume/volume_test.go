package volume

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

const MiB = 1 << 20

func newVolume(t testing.TB, size int64) *Volume {
	t.Helper()
	v, err := Create(filepath.Join(t.TempDir(), "vol"), size)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func diskBlocks(t *testing.T, v *Volume) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(v.dir, dataName), &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestCreateRejectsBadSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{
		{"zero", 0},
		{"negative", -512},
		{"unaligned", 1000},
		{"sub-sector", 511},
		{"too large", MaxSize + 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(filepath.Join(t.TempDir(), "v"), tc.size)
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("Create(%d) = %v, want kind Invalid", tc.size, err)
			}
		})
	}
}

func TestCreateRefusesExistingAndOpenRefusesTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	v, err := Create(dir, MiB)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := Create(dir, MiB); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second Create = %v, want Conflict", err)
	}
	if _, err := Open(dir); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second Open = %v, want Conflict", err)
	}
	if _, err := Open(t.TempDir()); !errs.Is(err, errs.NotFound) {
		t.Fatalf("Open(empty) = %v, want NotFound", err)
	}
}

func TestRandomRoundTrips(t *testing.T) {
	const size = 16 * MiB
	v := newVolume(t, size)
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		n := rng.IntN(256<<10) + 1
		off := rng.Int64N(size - int64(n) + 1)
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if w, err := v.WriteAt(p, off); err != nil || w != n {
			t.Fatalf("write %d: WriteAt(%d, %d) = %d, %v", i, n, off, w, err)
		}
		copy(model[off:], p)
		// Read back a random range overlapping the write.
		roff := max(0, off-int64(rng.IntN(4096)))
		rn := min(int64(n+rng.IntN(8192)), size-roff)
		got := make([]byte, rn)
		if r, err := v.ReadAt(got, roff); err != nil || int64(r) != rn {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", rn, roff, r, err)
		}
		if !bytes.Equal(got, model[roff:roff+rn]) {
			t.Fatalf("round trip %d: data mismatch at [%d, +%d)", i, roff, rn)
		}
	}
	// And the whole volume after reopen.
	dir := v.dir
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	got := make([]byte, size)
	if _, err := v2.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, model) {
		t.Fatal("content differs after reopen")
	}
}

func TestSparse(t *testing.T) {
	const size = 1 << 30
	v := newVolume(t, size)
	if b := diskBlocks(t, v); b != 0 {
		t.Fatalf("fresh 1 GiB volume uses %d bytes, want 0", b)
	}
	buf := bytes.Repeat([]byte{0xab}, 4096)
	if _, err := v.WriteAt(buf, 512*MiB); err != nil {
		t.Fatal(err)
	}
	if b := diskBlocks(t, v); b > 64<<10 {
		t.Fatalf("one 4 KiB write uses %d bytes on disk", b)
	}
	got := make([]byte, MiB)
	if _, err := v.ReadAt(got, 100*MiB); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, MiB)) {
		t.Fatal("unwritten range does not read as zeros")
	}
	r, err := v.Allocated()
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 1 || r[0].Off > 512*MiB || r[0].Off+r[0].Len < 512*MiB+4096 {
		t.Fatalf("Allocated = %v, want one range covering [512MiB, +4096)", r)
	}
}

func TestZero(t *testing.T) {
	const size = 8 * MiB
	for _, tc := range []struct {
		name      string
		off, n    int64
		fill      bool
		wantHoles bool
	}{
		{"aligned punch", MiB, 2 * MiB, false, true},
		{"unaligned punch", MiB + 100, 2*MiB - 300, false, true},
		{"fill keeps allocation", MiB, 2 * MiB, true, false},
		{"zero length", MiB, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVolume(t, size)
			data := bytes.Repeat([]byte{0x5a}, size)
			if _, err := v.WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
			before := diskBlocks(t, v)
			zero := v.Zero
			if tc.fill {
				zero = v.ZeroFill
			}
			if err := zero(tc.off, tc.n); err != nil {
				t.Fatal(err)
			}
			clear(data[tc.off : tc.off+tc.n])
			got := make([]byte, size)
			if _, err := v.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("content after zero differs")
			}
			after := diskBlocks(t, v)
			if tc.wantHoles && after > before-tc.n+8192 {
				t.Fatalf("punch of %d bytes freed only %d", tc.n, before-after)
			}
			if !tc.wantHoles && after < before {
				t.Fatalf("allocation shrank from %d to %d", before, after)
			}
			if tc.n > 0 && !v.Changed().Test(tc.off/v.BlockSize()) {
				t.Fatal("zeroed block not marked changed")
			}
		})
	}
}

func TestGrow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	v, err := Create(dir, 4*MiB)
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{1}, 4096)
	if _, err := v.WriteAt(p, 4*MiB); !errs.Is(err, errs.Invalid) {
		t.Fatalf("write past end before grow = %v, want Invalid", err)
	}
	for _, bad := range []int64{2 * MiB, 4*MiB + 1, -1} {
		if err := v.Grow(bad); !errs.Is(err, errs.Invalid) {
			t.Fatalf("Grow(%d) = %v, want Invalid", bad, err)
		}
	}
	// Grow far enough that the tracking slots need a new mapping.
	const newSize = 64 << 30
	if err := v.Grow(newSize); err != nil {
		t.Fatal(err)
	}
	if v.Size() != newSize {
		t.Fatalf("Size = %d", v.Size())
	}
	if _, err := v.WriteAt(p, newSize-4096); err != nil {
		t.Fatal(err)
	}
	if !v.Changed().Test((newSize - 4096) / v.BlockSize()) {
		t.Fatal("write in the grown range not tracked")
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Size() != newSize {
		t.Fatalf("Size after reopen = %d", v.Size())
	}
	got := make([]byte, 8192)
	if _, err := v.ReadAt(got, newSize-8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[4096:], p) || !bytes.Equal(got[:4096], make([]byte, 4096)) {
		t.Fatal("grown range content wrong after reopen")
	}
	if !v.Changed().Test((newSize - 4096) / v.BlockSize()) {
		t.Fatal("tracking bit in grown range lost across reopen")
	}
}

func TestOutOfRange(t *testing.T) {
	const size = MiB
	v := newVolume(t, size)
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		op   func() error
	}{
		{"read past end", func() error { _, err := v.ReadAt(buf, size-100); return err }},
		{"read negative", func() error { _, err := v.ReadAt(buf, -1); return err }},
		{"read at end", func() error { _, err := v.ReadAt(buf, size); return err }},
		{"write past end", func() error { _, err := v.WriteAt(buf, size-100); return err }},
		{"write negative", func() error { _, err := v.WriteAt(buf, -4096); return err }},
		{"write huge offset", func() error { _, err := v.WriteAt(buf, 1<<62); return err }},
		{"zero past end", func() error { return v.Zero(size-512, 1024) }},
		{"zero negative length", func() error { return v.Zero(0, -1) }},
		{"zerofill past end", func() error { return v.ZeroFill(size, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.op(); !errs.Is(err, errs.Invalid) {
				t.Fatalf("got %v, want kind Invalid", err)
			}
		})
	}
	if n, err := v.ReadAt(nil, size); n != 0 || err != nil {
		t.Fatalf("empty read at end = %d, %v", n, err)
	}
	if v.Changed().Count() != 0 {
		t.Fatal("refused writes were tracked")
	}
}

func TestTrackingBits(t *testing.T) {
	const size = 64 * MiB
	v := newVolume(t, size)
	bs := v.BlockSize()
	for _, w := range []struct{ off, n int64 }{
		{0, 1},              // first byte
		{bs - 1, 2},         // straddles blocks 0 and 1
		{10 * bs, 4096},     // inside block 10
		{20*bs + 5, 3 * bs}, // blocks 20..23
		{size - 512, 512},   // last block
		{64 * bs, 130 * bs}, // crosses several bitmap words
	} {
		if _, err := v.WriteAt(make([]byte, w.n), w.off); err != nil {
			t.Fatal(err)
		}
	}
	want := NewBitmap(size / bs)
	for _, b := range []int64{0, 1, 10, 20, 21, 22, 23, size/bs - 1} {
		want.Set(b)
	}
	want.SetRange(64, 194)
	got := v.Changed()
	if !bytes.Equal(bitsOf(got), bitsOf(want)) {
		t.Fatalf("changed = %v\nwant      %v", runs(got), runs(want))
	}

	// Cut: the returned set has the writes, the live set starts empty.
	cut1, e1, err := v.SwapChanged()
	if err != nil {
		t.Fatal(err)
	}
	if cut1.Count() != want.Count() {
		t.Fatalf("cut has %d blocks, want %d", cut1.Count(), want.Count())
	}
	if _, err := v.WriteAt([]byte{1}, 300*bs); err != nil {
		t.Fatal(err)
	}
	// Uncommitted: Changed still reports the old bits plus the new one.
	if c := v.Changed(); c.Count() != want.Count()+1 || !c.Test(300) {
		t.Fatalf("Changed before commit = %v", runs(c))
	}
	if err := v.CommitChanged(e1); err != nil {
		t.Fatal(err)
	}
	if c := v.Changed(); c.Count() != 1 || !c.Test(300) {
		t.Fatalf("Changed after commit = %v, want [300]", runs(c))
	}
	if err := v.CommitChanged(e1); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second commit = %v, want Conflict", err)
	}

	// A cut that is never committed folds into the next one.
	cut2, _, err := v.SwapChanged()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt([]byte{1}, 400*bs); err != nil {
		t.Fatal(err)
	}
	cut3, e3, err := v.SwapChanged()
	if err != nil {
		t.Fatal(err)
	}
	if cut2.Count() != 1 || cut3.Count() != 2 || !cut3.Test(300) || !cut3.Test(400) {
		t.Fatalf("cut2 = %v, cut3 = %v", runs(cut2), runs(cut3))
	}

	// Tracking state survives a clean reopen, pending cut included.
	dir := v.dir
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if c := v2.Changed(); c.Count() != 2 {
		t.Fatalf("Changed after reopen = %v", runs(c))
	}
	if err := v2.CommitChanged(e3); err != nil {
		t.Fatal(err)
	}
	if c := v2.Changed(); c.Count() != 0 {
		t.Fatalf("Changed after commit = %v", runs(c))
	}
}

// TestUncleanRebootMarksEverything fakes a volume left open by a kernel that
// has since rebooted: its bitmap may have lost bits, so all blocks count.
func TestUncleanRebootMarksEverything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v")
	v, err := Create(dir, 10*MiB)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "cbt.meta"))
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(meta[metaState*8:], stateOpen)
	copy(meta[metaBootOff:], "00000000-0000-0000-0000-000000000000")
	if err := os.WriteFile(filepath.Join(dir, "cbt.meta"), meta, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if c := v.Changed(); c.Count() != c.Len() || c.Len() != 10*MiB/v.BlockSize() {
		t.Fatalf("after unclean reboot Changed = %d of %d blocks", c.Count(), c.Len())
	}
}

// TestSwapIsAtomicWithConcurrentWrites checks the epoch contract: a write
// that returned before a cut began is in that cut or an earlier one, and a
// write that began after a cut returned is in a later one.
func TestSwapIsAtomicWithConcurrentWrites(t *testing.T) {
	const size = 256 * MiB
	v := newVolume(t, size)
	nblocks := size / v.BlockSize()
	var started, done atomic.Int64 // cuts begun, cuts finished
	type rec struct{ block, doneBefore, startedAfter int64 }
	recs := make([][]rec, 8)
	var next atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				b := next.Add(1) - 1
				if b >= nblocks {
					return
				}
				d := done.Load()
				if _, err := v.WriteAt(p, b*v.BlockSize()); err != nil {
					t.Error(err)
					return
				}
				recs[g] = append(recs[g], rec{b, d, started.Load()})
			}
		}()
	}
	var cuts []*Bitmap
	for range 50 {
		started.Add(1)
		c, e, err := v.SwapChanged()
		if err != nil {
			t.Fatal(err)
		}
		done.Add(1)
		if err := v.CommitChanged(e); err != nil {
			t.Fatal(err)
		}
		cuts = append(cuts, c)
		time.Sleep(200 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	cuts = append(cuts, v.Changed()) // the live set is cut number len(cuts)
	n := 0
	for _, rs := range recs {
		for _, r := range rs {
			n++
			in := -1
			for i, c := range cuts {
				if c.Test(r.block) {
					if in >= 0 {
						t.Fatalf("block %d in cuts %d and %d", r.block, in, i)
					}
					in = i
				}
			}
			// Cut i (0-based) is the (i+1)th SwapChanged.
			if in < 0 || int64(in) < r.doneBefore || int64(in) > r.startedAfter {
				t.Fatalf("block %d in cut %d; write began after %d cuts finished and returned before cut %d began",
					r.block, in, r.doneBefore, r.startedAfter+1)
			}
		}
	}
	t.Logf("%d writes across %d cuts", n, len(cuts))
}

func TestBitmap(t *testing.T) {
	b := NewBitmap(200)
	b.SetRange(3, 7)
	b.Set(63)
	b.Set(64)
	b.SetRange(120, 200)
	b.Set(500) // ignored
	if b.Count() != 4+2+80 {
		t.Fatalf("Count = %d", b.Count())
	}
	if got, want := runs(b), "[3+4 63+2 120+80]"; got != want {
		t.Fatalf("runs = %s, want %s", got, want)
	}
	o := NewBitmap(300)
	o.Set(250)
	o.Set(4)
	b.Or(o)
	if b.Len() != 300 || !b.Test(250) || b.Count() != 87 {
		t.Fatalf("after Or: len %d count %d runs %s", b.Len(), b.Count(), runs(b))
	}
	c := b.Clone()
	c.Set(0)
	if b.Test(0) {
		t.Fatal("Clone shares storage")
	}
}

func bitsOf(b *Bitmap) []byte {
	var out []byte
	for i := range b.Len() {
		if b.Test(i) {
			out = append(out, 1)
		} else {
			out = append(out, 0)
		}
	}
	return out
}

func runs(b *Bitmap) string {
	var s []string
	b.ForEach(func(start, n int64) bool {
		s = append(s, fmt.Sprintf("%d+%d", start, n))
		return true
	})
	return "[" + strings.Join(s, " ") + "]"
}

// The crash test runs the test binary again as a child that writes until it
// is killed with SIGKILL; the parent then checks every acknowledged write.
const crashEnv = "COFFER_VOLUME_CRASH_DIR"

const crashSlot = 4096

func crashPattern(slot int64, p []byte) {
	binary.LittleEndian.PutUint64(p, uint64(slot))
	for i := 8; i < len(p); i++ {
		p[i] = byte(slot*31 + int64(i))
	}
}

func TestCrashKeepsAcknowledgedWritesAndTracking(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	const size = 64 * MiB
	dir := filepath.Join(t.TempDir(), "v")
	v, err := Create(dir, size)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	cmd, out := startChild(t, "TestCrashKeepsAcknowledgedWritesAndTracking", crashEnv, dir)
	acked := map[int64]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "ack" {
			continue
		}
		s, _ := strconv.ParseInt(f[1], 10, 64)
		acked[s] = true
		if len(acked) == 3000 && !killed {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before being killed: %v", err)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child state %v, want killed by SIGKILL", cmd.ProcessState)
	}

	v, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	changed := v.Changed()
	want := make([]byte, crashSlot)
	got := make([]byte, crashSlot)
	for s := range acked {
		crashPattern(s, want)
		if _, err := v.ReadAt(got, s*crashSlot); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("acknowledged write to slot %d lost", s)
		}
		if !changed.Test(s * crashSlot / v.BlockSize()) {
			t.Fatalf("acknowledged write to slot %d missing from the changed set", s)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL; changed set has %d blocks", len(acked), changed.Count())
}

// crashChild writes distinct 4 KiB slots from several goroutines and prints
// "ack N" after each WriteAt returns. It also cuts epochs without committing
// them, so the crash can land in the middle of a cut.
func crashChild(t *testing.T, dir string) {
	v, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	nslots := v.Size() / crashSlot
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var next atomic.Int64
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, crashSlot)
			for time.Now().Before(deadline) {
				// Slots in a scattered order so many tracking blocks are hit.
				s := (next.Add(1) * 7919) % nslots
				crashPattern(s, p)
				if _, err := v.WriteAt(p, s*crashSlot); err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Fprintf(w, "ack %d\n", s)
				_ = w.Flush()
				mu.Unlock()
			}
		}()
	}
	go func() {
		for time.Now().Before(deadline) {
			if _, _, err := v.SwapChanged(); err != nil {
				panic(err)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	t.Fatal("child was not killed")
}

// startChild runs test in a child process of this test binary with env set
// to dir, and returns it with its stdout, where the child reports what it
// did before it is killed.
func startChild(t *testing.T, test, env, dir string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}
