package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/volume"
)

// residencyExport is a volume whose Resident answer the test sets, which
// records what it was asked, and whose reads at gateOff wait for gate.
type residencyExport struct {
	*volume.Volume
	resident func(off, n int64) bool
	gateOff  int64
	gate     chan struct{}
	entered  chan int64 // each ReadAt's offset, as it starts

	mu    sync.Mutex
	asked []askedRange
}

// askedRange is a range the server asked Resident about.
type askedRange struct{ Off, Len int64 }

var _ Residency = (*residencyExport)(nil)

func (e *residencyExport) Resident(off, n int64) bool {
	e.mu.Lock()
	e.asked = append(e.asked, askedRange{off, n})
	e.mu.Unlock()
	return e.resident(off, n)
}

func (e *residencyExport) ReadAt(p []byte, off int64) (int, error) {
	if e.entered != nil {
		e.entered <- off
	}
	if e.gate != nil && off == e.gateOff {
		<-e.gate
	}
	return e.Volume.ReadAt(p, off)
}

func (e *residencyExport) askedRanges() []askedRange {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]askedRange(nil), e.asked...)
}

func serveExport(t *testing.T, exp Export) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{
		Lookup: func(context.Context, string) (Export, func(), error) { return exp, nil, nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		<-done
	})
	return ln.Addr().String()
}

func newVolume(t *testing.T, size int64) *volume.Volume {
	t.Helper()
	v, err := volume.Create(filepath.Join(t.TempDir(), "vol"), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestSmallReadsAskWhetherResident: the server asks a Residency export
// about each small read (the reads it may run without a hand-off), and
// about nothing else; the data read is the volume's whichever way the
// read ran.
func TestSmallReadsAskWhetherResident(t *testing.T) {
	v := newVolume(t, 4*MiB)
	want := bytes.Repeat([]byte("coffer"), MiB/6+1)[:MiB]
	if _, err := v.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	for _, answer := range []bool{true, false} {
		exp := &residencyExport{Volume: v, resident: func(int64, int64) bool { return answer }}
		rc := dialRaw(t, serveExport(t, exp))
		if typ := rc.goExport("disk"); typ != repAck {
			t.Fatalf("GO = %#x", typ)
		}
		for _, r := range []askedRange{{4096, 4096}, {100, 1000}, {0, inlineReadMax}} {
			errno, got := rc.do(cmdRead, 0, r.Off, uint32(r.Len), nil)
			if errno != 0 || !bytes.Equal(got, want[r.Off:r.Off+r.Len]) {
				t.Fatalf("resident=%v: read %v: errno %d, data differs: %v", answer, r, errno, !bytes.Equal(got, want[r.Off:r.Off+r.Len]))
			}
		}
		// Not asked: a read too large to run inline, a write, a flush.
		if errno, _ := rc.do(cmdRead, 0, 0, inlineReadMax+4096, nil); errno != 0 {
			t.Fatalf("large read: errno %d", errno)
		}
		if errno, _ := rc.do(cmdWrite, 0, 2*MiB, 4096, make([]byte, 4096)); errno != 0 {
			t.Fatalf("write: errno %d", errno)
		}
		if errno, _ := rc.do(cmdFlush, 0, 0, 0, nil); errno != 0 {
			t.Fatalf("flush: errno %d", errno)
		}
		wantAsked := []askedRange{{4096, 4096}, {100, 1000}, {0, inlineReadMax}}
		if got := exp.askedRanges(); len(got) != len(wantAsked) || got[0] != wantAsked[0] || got[1] != wantAsked[1] || got[2] != wantAsked[2] {
			t.Fatalf("resident=%v: asked about %v, want %v", answer, got, wantAsked)
		}
	}
}

// TestReadNotResidentDoesNotHoldUpOthers: a read the export does not vouch
// for goes to a worker, so while it waits (a device, a remote store) the
// requests behind it are still received and answered.
func TestReadNotResidentDoesNotHoldUpOthers(t *testing.T) {
	v := newVolume(t, 4*MiB)
	exp := &residencyExport{
		Volume:   v,
		resident: func(off, _ int64) bool { return off != MiB },
		gateOff:  MiB,
		gate:     make(chan struct{}),
		entered:  make(chan int64, 8),
	}
	rc := dialRaw(t, serveExport(t, exp))
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	rc.request(cmdRead, 0, 1, MiB, 4096, nil)
	if off := <-exp.entered; off != MiB {
		t.Fatalf("first read at %d", off)
	}
	// The slow read is inside the export now; a resident read behind it
	// must be answered before it is let go.
	rc.request(cmdRead, 0, 2, 0, 4096, nil)
	h, errno := rc.reply()
	if h != 2 || errno != 0 {
		t.Fatalf("first reply: handle %d errno %d, want the read behind the slow one", h, errno)
	}
	rc.readFull(make([]byte, 4096))
	close(exp.gate)
	if h, errno := rc.reply(); h != 1 || errno != 0 {
		t.Fatalf("second reply: handle %d errno %d", h, errno)
	}
}

// TestHeldRepliesAreNotKeptWaiting: replies to inline reads, held back to
// go out together, are written before the server waits on the client:
// for the rest of a write's payload, or after NBD_CMD_DISC.
func TestHeldRepliesAreNotKeptWaiting(t *testing.T) {
	v := newVolume(t, 4*MiB)
	exp := &residencyExport{Volume: v, resident: func(int64, int64) bool { return true }}
	addr := serveExport(t, exp)

	t.Run("write payload", func(t *testing.T) {
		rc := dialRaw(t, addr)
		if typ := rc.goExport("disk"); typ != repAck {
			t.Fatalf("GO = %#x", typ)
		}
		// A read and the start of a write in one segment; the rest of the
		// payload only once the read is answered.
		var b bytes.Buffer
		for _, r := range []struct {
			typ    uint16
			handle uint64
			off    int64
		}{{cmdRead, 1, 0}, {cmdWrite, 2, MiB}} {
			h := make([]byte, requestHeaderLen)
			putRequest(h, r.typ, r.handle, r.off, 4096)
			b.Write(h)
		}
		b.Write(make([]byte, 100))
		rc.write(b.Bytes())
		if h, errno := rc.reply(); h != 1 || errno != 0 {
			t.Fatalf("reply handle %d errno %d, want the read's", h, errno)
		}
		rc.readFull(make([]byte, 4096))
		rc.write(make([]byte, 4096-100))
		if h, errno := rc.reply(); h != 2 || errno != 0 {
			t.Fatalf("reply handle %d errno %d, want the write's", h, errno)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		rc := dialRaw(t, addr)
		if typ := rc.goExport("disk"); typ != repAck {
			t.Fatalf("GO = %#x", typ)
		}
		const n = 5
		var b []byte
		for i := range n {
			h := make([]byte, requestHeaderLen)
			putRequest(h, cmdRead, uint64(i), int64(i)*4096, 4096)
			b = append(b, h...)
		}
		h := make([]byte, requestHeaderLen)
		putRequest(h, cmdDisc, 99, 0, 0)
		rc.write(append(b, h...))
		for range n {
			if _, errno := rc.reply(); errno != 0 {
				t.Fatalf("errno %d", errno)
			}
			rc.readFull(make([]byte, 4096))
		}
	})
}

func putRequest(b []byte, typ uint16, handle uint64, off int64, length uint32) {
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], 0)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], uint64(off))
	binary.BigEndian.PutUint32(b[24:], length)
}
