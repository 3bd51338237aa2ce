package nbd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

func TestOptionHaggling(t *testing.T) {
	ts := startServer(t, 4*MiB)
	rc := dialRaw(t, ts.addr)

	for _, tc := range []struct {
		name     string
		opt      uint32
		data     []byte
		wantLast uint32
		wantN    int
	}{
		{"list", optList, nil, repAck, 2},
		{"list with data", optList, []byte{1}, repErrInvalid, 1},
		{"structured reply with data", optStructuredReply, []byte{0}, repErrInvalid, 1},
		{"unknown option", 999, []byte("junk"), repErrUnsup, 1},
		{"starttls without tls", optStartTLS, nil, repErrUnsup, 1},
		{"info unknown export", optInfo, infoData("nope"), repErrUnknown, 1},
		{"info forbidden export", optInfo, infoData("secret"), repErrPolicy, 1},
		{"info bad name length", optInfo, []byte{0, 0, 0, 9, 'a', 0, 0}, repErrInvalid, 1},
		{"info bad request count", optInfo, append(infoData("disk"), 0), repErrInvalid, 1},
		{"info", optInfo, infoData("disk", infoBlockSize), repAck, 3},
		{"info read-only", optInfo, infoData("ro"), repAck, 3},
		{"go unknown export", optGo, infoData("nope"), repErrUnknown, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := rc.opt(tc.opt, tc.data)
			if last := rs[len(rs)-1].typ; last != tc.wantLast || len(rs) != tc.wantN {
				t.Fatalf("got %d replies ending in %#x, want %d ending in %#x", len(rs), last, tc.wantN, tc.wantLast)
			}
			switch tc.name {
			case "list":
				if n := binary.BigEndian.Uint32(rs[0].data); string(rs[0].data[4:4+n]) != "disk" {
					t.Fatalf("listed %q", rs[0].data)
				}
			case "info", "info read-only":
				for _, r := range rs[:2] {
					switch binary.BigEndian.Uint16(r.data) {
					case infoExport:
						size, fl := binary.BigEndian.Uint64(r.data[2:]), binary.BigEndian.Uint16(r.data[10:])
						want := uint16(tflagHasFlags | tflagSendFlush | tflagCanMultiConn | tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes)
						if tc.name == "info read-only" {
							want = tflagHasFlags | tflagSendFlush | tflagCanMultiConn | tflagReadOnly
						}
						if size != 4*MiB || fl != want {
							t.Fatalf("export info size %d flags %#x, want %#x", size, fl, want)
						}
					case infoBlockSize:
						mn, pr, mx := binary.BigEndian.Uint32(r.data[2:]), binary.BigEndian.Uint32(r.data[6:]), binary.BigEndian.Uint32(r.data[10:])
						if mn != 1 || pr != 4096 || mx != 32*MiB {
							t.Fatalf("block sizes %d/%d/%d", mn, pr, mx)
						}
					default:
						t.Fatalf("unexpected info % x", r.data)
					}
				}
			}
		})
	}
	// The connection survived all of that and can still attach.
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	if errno, _ := rc.do(cmdRead, 0, 0, 512, nil); errno != 0 {
		t.Fatal(fmtErrno(errno))
	}
}

func TestExportNameAndAbort(t *testing.T) {
	ts := startServer(t, 4*MiB)
	t.Run("export name with zeroes", func(t *testing.T) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc := &rawClient{t: t, c: c, br: newReader(c)}
		var g [18]byte
		rc.readFull(g[:])
		rc.write([]byte{0, 0, 0, flagCFixedNewstyle}) // no NO_ZEROES
		rc.sendOpt(optExportName, []byte("disk"))
		var r [8 + 2 + 124]byte
		rc.readFull(r[:])
		if binary.BigEndian.Uint64(r[:]) != 4*MiB || !bytes.Equal(r[10:], make([]byte, 124)) {
			t.Fatalf("export name reply % x", r[:12])
		}
		rc.write(bytes.Repeat([]byte{0}, 0))
		if errno, _ := rc.do(cmdFlush, 0, 0, 0, nil); errno != 0 {
			t.Fatal(fmtErrno(errno))
		}
	})
	t.Run("export name unknown drops", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.sendOpt(optExportName, []byte("nope"))
		if _, err := io.ReadFull(rc.br, make([]byte, 1)); err == nil {
			t.Fatal("server answered an unknown NBD_OPT_EXPORT_NAME")
		}
	})
	t.Run("abort", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		if rs := rc.opt(optAbort, nil); rs[0].typ != repAck {
			t.Fatalf("abort reply %#x", rs[0].typ)
		}
		if _, err := io.ReadFull(rc.br, make([]byte, 1)); err != io.EOF {
			t.Fatalf("after abort: %v, want EOF", err)
		}
	})
	t.Run("unknown client flags drop", func(t *testing.T) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc := &rawClient{t: t, c: c, br: newReader(c)}
		rc.readFull(make([]byte, 18))
		rc.write([]byte{0, 0, 0x80, 1})
		if _, err := io.ReadFull(rc.br, make([]byte, 1)); err == nil {
			t.Fatal("server kept a client with unknown flags")
		}
	})
}

func TestBadRequestsGetErrorsAndServerGoesOn(t *testing.T) {
	const size = 8 * MiB
	ts := startServer(t, size)
	rc := dialRaw(t, ts.addr)
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	big := make([]byte, 33*MiB)
	for _, tc := range []struct {
		name    string
		typ     uint16
		flags   uint16
		off     int64
		length  uint32
		payload []byte
		want    uint32
	}{
		{"oversize read", cmdRead, 0, 0, 33 * MiB, nil, errInval},
		{"oversize write", cmdWrite, 0, 0, 33 * MiB, big, errInval},
		{"read past end", cmdRead, 0, size - 512, 1024, nil, errInval},
		{"read at huge offset", cmdRead, 0, 1 << 62, 512, nil, errInval},
		{"write past end", cmdWrite, 0, size - 512, 1024, make([]byte, 1024), errNoSpc},
		{"trim past end", cmdTrim, 0, size, 512, nil, errNoSpc},
		{"write zeroes past end", cmdWriteZeroes, 0, size - 1, 2, nil, errNoSpc},
		{"unknown command", 42, 0, 0, 512, nil, errInval},
		{"block status not negotiated", 7, 0, 0, 512, nil, errInval},
		{"unknown flag on read", cmdRead, 1 << 9, 0, 512, nil, errInval},
		{"no-hole on write", cmdWrite, cmdFlagNoHole, 0, 4, []byte("abcd"), errInval},
		{"read at end, zero length", cmdRead, 0, size, 0, nil, 0},
		{"write", cmdWrite, cmdFlagFUA, 4096, 4, []byte("abcd"), 0},
		{"write zeroes no hole", cmdWriteZeroes, cmdFlagNoHole | cmdFlagFUA, 8192, 4096, nil, 0},
		{"trim", cmdTrim, 0, 1 * MiB, MiB, nil, 0},
		{"flush", cmdFlush, 0, 0, 0, nil, 0},
		{"flush with fua", cmdFlush, cmdFlagFUA, 0, 0, nil, 0},
		{"flush with no-hole", cmdFlush, cmdFlagNoHole, 0, 0, nil, errInval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if errno, _ := rc.do(tc.typ, tc.flags, tc.off, tc.length, tc.payload); errno != tc.want {
				t.Fatalf("got %s, want %s", fmtErrno(errno), fmtErrno(tc.want))
			}
		})
	}
	// The same connection still reads what it wrote.
	if errno, data := rc.do(cmdRead, 0, 4096, 4, nil); errno != 0 || string(data) != "abcd" {
		t.Fatalf("read back: %s %q", fmtErrno(errno), data)
	}

	// Broken framing drops that connection only.
	rc.write(bytes.Repeat([]byte{0xff}, requestHeaderLen))
	if _, err := io.ReadFull(rc.br, make([]byte, 1)); err == nil {
		t.Fatal("server kept a connection after a bad request magic")
	}
	rc2 := dialRaw(t, ts.addr)
	if typ := rc2.goExport("disk"); typ != repAck {
		t.Fatalf("GO after violation = %#x", typ)
	}
	if errno, data := rc2.do(cmdRead, 0, 4096, 4, nil); errno != 0 || string(data) != "abcd" {
		t.Fatalf("second connection read: %s %q", fmtErrno(errno), data)
	}
}

func TestReadOnlyExport(t *testing.T) {
	ts := startServer(t, 4*MiB)
	rc := dialRaw(t, ts.addr)
	if typ := rc.goExport("ro"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	if rc.tflags&tflagReadOnly == 0 {
		t.Fatalf("flags %#x lack READ_ONLY", rc.tflags)
	}
	for _, typ := range []uint16{cmdWrite, cmdTrim, cmdWriteZeroes} {
		var payload []byte
		if typ == cmdWrite {
			payload = make([]byte, 512)
		}
		if errno, _ := rc.do(typ, 0, 0, 512, payload); errno != errPerm {
			t.Fatalf("command %d on read-only export: %s, want EPERM", typ, fmtErrno(errno))
		}
	}
	if errno, _ := rc.do(cmdRead, 0, 0, 512, nil); errno != 0 {
		t.Fatal(fmtErrno(errno))
	}
}

// TestPipelinedRequests sends many requests before reading any reply, as
// a client with a deep queue does, and matches the replies by handle.
func TestPipelinedRequests(t *testing.T) {
	ts := startServer(t, 16*MiB)
	rc := dialRaw(t, ts.addr)
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	const n = 256
	go func() {
		for i := range n {
			p := bytes.Repeat([]byte{byte(i)}, 4096)
			rc.request(cmdWrite, 0, uint64(i), int64(i)*4096, 4096, p)
		}
	}()
	seen := map[uint64]bool{}
	for range n {
		h, errno := rc.reply()
		if errno != 0 || seen[h] || h >= n {
			t.Fatalf("reply handle %d errno %d (dup %v)", h, errno, seen[h])
		}
		seen[h] = true
	}
	got := make([]byte, n*4096)
	if _, err := ts.vol.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if got[i*4096] != byte(i) || got[i*4096+4095] != byte(i) {
			t.Fatalf("block %d holds %d", i, got[i*4096])
		}
	}
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	ts := startServer(t, 16*MiB)
	rc := dialRaw(t, ts.addr)
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	const n = 64
	for i := range n {
		rc.request(cmdWrite, 0, uint64(i), int64(i)*65536, 65536, bytes.Repeat([]byte{byte(i + 1)}, 65536))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Every reply that arrived is for a write that is in the volume, and
	// the connection ends cleanly after the last one.
	replied := 0
	for {
		var h [16]byte
		if _, err := io.ReadFull(rc.br, h[:]); err != nil {
			break
		}
		handle := binary.BigEndian.Uint64(h[8:])
		if binary.BigEndian.Uint32(h[4:]) != 0 {
			t.Fatalf("write %d failed", handle)
		}
		b := make([]byte, 1)
		if _, err := ts.vol.ReadAt(b, int64(handle)*65536+65535); err != nil || b[0] != byte(handle+1) {
			t.Fatalf("acknowledged write %d not in the volume", handle)
		}
		replied++
	}
	t.Logf("%d of %d pipelined writes were read and answered before shutdown", replied, n)
	if _, err := net.Dial("tcp", ts.addr); err == nil {
		t.Fatal("server still accepts after Shutdown")
	}
}

func TestTLS(t *testing.T) {
	cert := selfSigned(t)
	ts := startServer(t, 4*MiB, func(s *Server) {
		s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	rc := dialRaw(t, ts.addr)
	if rs := rc.opt(optList, nil); rs[0].typ != repErrTLSReqd {
		t.Fatalf("LIST before TLS: %#x, want TLS_REQD", rs[0].typ)
	}
	if rs := rc.opt(optStartTLS, nil); rs[0].typ != repAck {
		t.Fatalf("STARTTLS: %#x", rs[0].typ)
	}
	tc := tls.Client(rc.c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test cert
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	rc.c, rc.br = tc, newReader(tc)
	if rs := rc.opt(optStartTLS, nil); rs[0].typ != repErrInvalid {
		t.Fatalf("second STARTTLS: %#x", rs[0].typ)
	}
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	if errno, _ := rc.do(cmdWrite, 0, 512, 5, []byte("hello")); errno != 0 {
		t.Fatal(fmtErrno(errno))
	}
	if errno, data := rc.do(cmdRead, 0, 512, 5, nil); errno != 0 || string(data) != "hello" {
		t.Fatalf("read over TLS: %s %q", fmtErrno(errno), data)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestBufPoolClasses(t *testing.T) {
	var p bufPool
	for _, tc := range []struct{ n, wantCap int }{
		{1, 4096}, {4096, 4096}, {4097, 8192}, {65536, 65536}, {maxPayload, maxPayload},
	} {
		b := p.get(tc.n)
		if len(*b) != tc.n || cap(*b) != tc.wantCap {
			t.Fatalf("get(%d): len %d cap %d, want cap %d", tc.n, len(*b), cap(*b), tc.wantCap)
		}
		p.put(b)
	}
}
