package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/testenv"
	"github.com/coffer-backup/coffer/internal/volume"
)

const MiB = 1 << 20

func requireTool(t *testing.T, names ...string) { t.Helper(); testenv.Tool(t, names...) }

// run runs a command with a timeout and returns its combined output.
func run(t *testing.T, name string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return out, err
}

func mustRun(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// testServer is a server on 127.0.0.1 over one volume, exported read-write
// as "disk" and read-only as "ro". Only "disk" is listed.
type testServer struct {
	srv *Server
	vol *volume.Volume
	// read counts the bytes read through the "disk" and "ro" exports.
	read *atomic.Int64
	addr string
	done chan error
}

func (ts *testServer) uri(export string) string { return "nbd://" + ts.addr + "/" + export }

func startServer(t *testing.T, size int64, opts ...func(*Server)) *testServer {
	t.Helper()
	vol, err := volume.Create(filepath.Join(t.TempDir(), "vol"), size)
	if err != nil {
		t.Fatal(err)
	}
	return serveVolume(t, vol, opts...)
}

func serveVolume(t testing.TB, vol *volume.Volume, opts ...func(*Server)) *testServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	read := new(atomic.Int64)
	srv := &Server{
		Lookup: func(_ context.Context, name string) (Export, func(), error) {
			switch name {
			case "disk":
				return mappedVolume{vol, read}, nil, nil
			case "ro":
				return ReadOnly(mappedVolume{vol, read}), nil, nil
			case "unmapped": // an export that cannot tell where its data is
				return vol, nil, nil
			case "secret":
				return nil, nil, errs.E(errs.Forbidden, "Denied", "no")
			}
			return nil, nil, errs.E(errs.NotFound, "ExportNotFound", "no export %q", name)
		},
		List:   func(context.Context) []string { return []string{"disk"} },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if os.Getenv("COFFER_NBD_DEBUG") != "" {
		srv.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(srv)
	}
	ts := &testServer{srv: srv, vol: vol, read: read, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.done; err != ErrServerClosed {
			t.Errorf("Serve returned %v", err)
		}
		if err := vol.Close(); err != nil {
			t.Errorf("close volume: %v", err)
		}
	})
	return ts
}

// mappedVolume is a volume as internal/disk exports it: with its
// allocation map in the nbd package's terms.
type mappedVolume struct {
	*volume.Volume
	read *atomic.Int64
}

var _ Mapper = mappedVolume{}

func (m mappedVolume) ReadAt(p []byte, off int64) (int, error) {
	m.read.Add(int64(len(p)))
	return m.Volume.ReadAt(p, off)
}

func (m mappedVolume) Extents(off, n int64) ([]Extent, error) {
	exts, err := m.Volume.Extents(off, n)
	out := make([]Extent, len(exts))
	for i, x := range exts {
		out[i] = Extent{Len: x.Len, Hole: x.Hole, Zero: x.Zero}
	}
	return out, err
}

// rawClient speaks just enough NBD to send malformed and edge-case
// requests that real clients never send.
type rawClient struct {
	t      testing.TB
	c      net.Conn
	br     *bufio.Reader
	size   int64
	tflags uint16
}

type optReply struct {
	opt, typ uint32
	data     []byte
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawClient{t: t, c: c, br: bufio.NewReader(c)}
	var g [18]byte
	rc.readFull(g[:])
	if binary.BigEndian.Uint64(g[0:]) != magicNBD || binary.BigEndian.Uint64(g[8:]) != magicIHaveOpt {
		t.Fatalf("bad greeting % x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != flagFixedNewstyle|flagNoZeroes {
		t.Fatalf("handshake flags %#x", f)
	}
	rc.write(binary.BigEndian.AppendUint32(nil, flagCFixedNewstyle|flagCNoZeroes))
	return rc
}

func (rc *rawClient) readFull(b []byte) {
	rc.t.Helper()
	if _, err := io.ReadFull(rc.br, b); err != nil {
		rc.t.Fatalf("read: %v", err)
	}
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

func (rc *rawClient) sendOpt(opt uint32, data []byte) {
	rc.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	rc.write(append(b, data...))
}

func (rc *rawClient) readOptReply() optReply {
	rc.t.Helper()
	var h [20]byte
	rc.readFull(h[:])
	if binary.BigEndian.Uint64(h[0:]) != magicOptReply {
		rc.t.Fatalf("bad option reply magic % x", h)
	}
	r := optReply{opt: binary.BigEndian.Uint32(h[8:]), typ: binary.BigEndian.Uint32(h[12:])}
	r.data = make([]byte, binary.BigEndian.Uint32(h[16:]))
	rc.readFull(r.data)
	return r
}

// opt sends an option and collects replies up to the final one (an ACK or
// an error).
func (rc *rawClient) opt(opt uint32, data []byte) []optReply {
	rc.t.Helper()
	rc.sendOpt(opt, data)
	var rs []optReply
	for {
		r := rc.readOptReply()
		if r.opt != opt {
			rc.t.Fatalf("reply for option %d, sent %d", r.opt, opt)
		}
		rs = append(rs, r)
		if r.typ == repAck || r.typ&repFlagError != 0 {
			return rs
		}
	}
}

func infoData(name string, reqs ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(reqs)))
	for _, r := range reqs {
		b = binary.BigEndian.AppendUint16(b, r)
	}
	return b
}

// goExport negotiates NBD_OPT_GO and returns the final reply type.
func (rc *rawClient) goExport(name string) uint32 {
	rc.t.Helper()
	rs := rc.opt(optGo, infoData(name, infoBlockSize))
	for _, r := range rs {
		if r.typ == repInfo && binary.BigEndian.Uint16(r.data) == infoExport {
			rc.size = int64(binary.BigEndian.Uint64(r.data[2:]))
			rc.tflags = binary.BigEndian.Uint16(r.data[10:])
		}
	}
	return rs[len(rs)-1].typ
}

func (rc *rawClient) request(typ, flags uint16, handle uint64, off int64, length uint32, payload []byte) {
	rc.t.Helper()
	b := make([]byte, requestHeaderLen, requestHeaderLen+len(payload))
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], flags)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], uint64(off))
	binary.BigEndian.PutUint32(b[24:], length)
	rc.write(append(b, payload...))
}

// reply reads one simple reply header.
func (rc *rawClient) reply() (handle uint64, errno uint32) {
	rc.t.Helper()
	var h [16]byte
	rc.readFull(h[:])
	if binary.BigEndian.Uint32(h[0:]) != magicSimpleRep {
		rc.t.Fatalf("bad reply magic % x", h)
	}
	return binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:])
}

// do sends one request and waits for its reply; for a successful read it
// returns the data.
func (rc *rawClient) do(typ, flags uint16, off int64, length uint32, payload []byte) (uint32, []byte) {
	rc.t.Helper()
	rc.request(typ, flags, 0x1234, off, length, payload)
	h, errno := rc.reply()
	if h != 0x1234 {
		rc.t.Fatalf("reply handle %#x", h)
	}
	if typ == cmdRead && errno == 0 {
		data := make([]byte, length)
		rc.readFull(data)
		return 0, data
	}
	return errno, nil
}

// chunk is one structured reply chunk.
type chunk struct {
	flags, typ uint16
	handle     uint64
	payload    []byte
}

// readChunk reads one structured reply chunk.
func (rc *rawClient) readChunk() chunk {
	rc.t.Helper()
	var h [chunkHeaderLen]byte
	rc.readFull(h[:])
	if binary.BigEndian.Uint32(h[0:]) != magicChunk {
		rc.t.Fatalf("bad chunk magic % x", h)
	}
	c := chunk{
		flags:  binary.BigEndian.Uint16(h[4:]),
		typ:    binary.BigEndian.Uint16(h[6:]),
		handle: binary.BigEndian.Uint64(h[8:]),
	}
	c.payload = make([]byte, binary.BigEndian.Uint32(h[16:]))
	rc.readFull(c.payload)
	return c
}

// chunks sends one request and reads its structured reply up to the chunk
// marked done.
func (rc *rawClient) chunks(typ, flags uint16, off int64, length uint32) []chunk {
	rc.t.Helper()
	rc.request(typ, flags, 0x5678, off, length, nil)
	var cs []chunk
	for {
		c := rc.readChunk()
		if c.handle != 0x5678 {
			rc.t.Fatalf("chunk for handle %#x", c.handle)
		}
		cs = append(cs, c)
		if c.flags&chunkFlagDone != 0 {
			return cs
		}
	}
}

// metaData is the data of LIST/SET_META_CONTEXT: an export name and queries.
func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

func fmtErrno(e uint32) string { return fmt.Sprintf("errno %d", e) }

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
