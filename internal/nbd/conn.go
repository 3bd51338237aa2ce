package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// handshakeTimeout bounds option haggling so an idle client cannot hold a
// connection slot forever before choosing an export.
const handshakeTimeout = 30 * time.Second

// errProtocol marks a client that broke the protocol; its connection is
// dropped (a hard disconnect), nothing else is affected.
var errProtocol = errors.New("nbd protocol violation")

// conn is one client connection.
type conn struct {
	s   *Server
	raw net.Conn // the accepted connection; closing it ends everything
	nc  net.Conn // raw, or a TLS connection over it
	br  *bufio.Reader
	bw  *bufio.Writer
	log *slog.Logger

	stopping atomic.Bool

	// Negotiated in option haggling: structured replies, and the export
	// base:allocation was selected for (allocation is false if none).
	structured     bool
	allocation     bool
	allocationName string

	// Transmission phase.
	exp      Export
	resident Residency // exp, if it is one (inline reads)
	release  func()
	size     int64
	tflags   uint16
	wrote    atomic.Bool
	reqs     chan request
	inflight chan struct{} // a token per request read and not yet answered
	workerWG sync.WaitGroup
	hdr      [requestHeaderLen]byte

	// Replies (see send). qmu guards queue, spare and writing; the fields
	// after it belong to the goroutine holding the writing role.
	qmu      sync.Mutex
	queue    []reply
	spare    []reply
	writing  bool
	buffered bool // write through bw (TLS) instead of writev
	failed   bool
	hdrs     []byte
	vec      net.Buffers
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{
		s:   s,
		raw: nc,
		nc:  nc,
		br:  bufio.NewReaderSize(nc, 256<<10),
		bw:  bufio.NewWriterSize(nc, 64<<10),
		log: s.logger().With("remote", nc.RemoteAddr().String()),
	}
}

// stopReading makes the request loop (or the handshake) end at its next
// read; requests already read still complete.
func (c *conn) stopReading() {
	c.stopping.Store(true)
	_ = c.raw.SetReadDeadline(time.Now())
}

func (c *conn) serve() {
	defer c.raw.Close()
	ctx, cancel := context.WithCancel(c.s.ctx)
	defer cancel()
	_ = c.raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if c.stopping.Load() {
		return
	}
	// Registered before the handshake: it can enter an export and still
	// fail (the client hangs up before the export's reply is flushed).
	defer func() {
		if c.release != nil {
			c.release()
		}
	}()
	ok, err := c.handshake(ctx)
	if err != nil {
		if !c.stopping.Load() && !errors.Is(err, io.EOF) {
			c.log.Info("nbd handshake ended", "err", err)
		}
		return
	}
	if !ok {
		return
	}
	_ = c.raw.SetDeadline(time.Time{})
	if c.stopping.Load() { // Shutdown raced with the handshake
		_ = c.raw.SetReadDeadline(time.Now())
	}
	c.transmit()
}

// --- handshake ---

func (c *conn) handshake(ctx context.Context) (bool, error) {
	var b [18]byte
	binary.BigEndian.PutUint64(b[0:], magicNBD)
	binary.BigEndian.PutUint64(b[8:], magicIHaveOpt)
	binary.BigEndian.PutUint16(b[16:], flagFixedNewstyle|flagNoZeroes)
	if _, err := c.bw.Write(b[:]); err != nil {
		return false, err
	}
	if err := c.bw.Flush(); err != nil {
		return false, err
	}
	if _, err := io.ReadFull(c.br, b[:4]); err != nil {
		return false, err
	}
	cflags := binary.BigEndian.Uint32(b[:4])
	if cflags&^(flagCFixedNewstyle|flagCNoZeroes) != 0 {
		return false, fmt.Errorf("%w: unknown client flags %#x", errProtocol, cflags)
	}
	noZeroes := cflags&flagCNoZeroes != 0
	tlsDone := false

	for {
		var h [16]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return false, err
		}
		if binary.BigEndian.Uint64(h[0:]) != magicIHaveOpt {
			return false, fmt.Errorf("%w: bad option magic", errProtocol)
		}
		opt := binary.BigEndian.Uint32(h[8:])
		n := binary.BigEndian.Uint32(h[12:])
		if n > maxOptionLen {
			if n > maxOptionDiscard {
				return false, fmt.Errorf("%w: option %d of %d bytes", errProtocol, opt, n)
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
				return false, err
			}
			if err := c.optReply(opt, repErrTooBig, []byte("option too large")); err != nil {
				return false, err
			}
			continue
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return false, err
		}

		// FORCEDTLS: nothing but STARTTLS and ABORT before the upgrade.
		if c.s.TLS != nil && !tlsDone && opt != optStartTLS && opt != optAbort {
			if opt == optExportName {
				return false, fmt.Errorf("%w: NBD_OPT_EXPORT_NAME without TLS", errProtocol)
			}
			if err := c.optReply(opt, repErrTLSReqd, []byte("TLS is required")); err != nil {
				return false, err
			}
			continue
		}

		switch opt {
		case optExportName:
			exp, release, err := c.lookup(ctx, string(data))
			if err != nil {
				// The client cannot be told why; dropping it is the protocol.
				return false, fmt.Errorf("export %q: %w", data, err)
			}
			c.enter(exp, release, string(data))
			reply := make([]byte, 10, 10+124)
			binary.BigEndian.PutUint64(reply[0:], uint64(c.size))
			binary.BigEndian.PutUint16(reply[8:], c.tflags)
			if !noZeroes {
				reply = reply[:10+124]
			}
			if _, err := c.bw.Write(reply); err != nil {
				return false, err
			}
			return true, c.bw.Flush()

		case optAbort:
			_ = c.optReply(opt, repAck, nil)
			return false, nil

		case optList:
			if err := c.optList(ctx, opt, data); err != nil {
				return false, err
			}

		case optStartTLS:
			switch {
			case c.s.TLS == nil:
				err := c.optReply(opt, repErrUnsup, []byte("TLS is not configured"))
				if err != nil {
					return false, err
				}
			case tlsDone:
				if err := c.optReply(opt, repErrInvalid, []byte("TLS is already active")); err != nil {
					return false, err
				}
			case len(data) != 0:
				if err := c.optReply(opt, repErrInvalid, []byte("STARTTLS takes no data")); err != nil {
					return false, err
				}
			default:
				if err := c.optReply(opt, repAck, nil); err != nil {
					return false, err
				}
				if c.br.Buffered() > 0 {
					return false, fmt.Errorf("%w: data sent before the TLS handshake", errProtocol)
				}
				tc := tls.Server(c.raw, c.s.TLS)
				if err := tc.HandshakeContext(ctx); err != nil {
					return false, fmt.Errorf("tls handshake: %w", err)
				}
				c.nc = tc
				c.br.Reset(tc)
				c.bw.Reset(tc)
				tlsDone = true
				// Nothing negotiated in plain text survives the upgrade.
				c.structured, c.allocation = false, false
			}

		case optInfo, optGo:
			done, err := c.optInfo(ctx, opt, data)
			if err != nil || done {
				return done, err
			}

		case optStructuredReply:
			typ, msg := uint32(repAck), ""
			if len(data) != 0 {
				typ, msg = repErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data"
			} else {
				c.structured = true
			}
			if err := c.optReply(opt, typ, []byte(msg)); err != nil {
				return false, err
			}

		case optListMetaContext, optSetMetaContext:
			if err := c.optMetaContext(opt, data); err != nil {
				return false, err
			}

		default:
			if err := c.optReply(opt, repErrUnsup, nil); err != nil {
				return false, err
			}
		}
	}
}

func (c *conn) optReply(opt, typ uint32, data []byte) error {
	var h [20]byte
	binary.BigEndian.PutUint64(h[0:], magicOptReply)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], typ)
	binary.BigEndian.PutUint32(h[16:], uint32(len(data)))
	if _, err := c.bw.Write(h[:]); err != nil {
		return err
	}
	if _, err := c.bw.Write(data); err != nil {
		return err
	}
	return c.bw.Flush()
}

func (c *conn) optList(ctx context.Context, opt uint32, data []byte) error {
	if len(data) != 0 {
		return c.optReply(opt, repErrInvalid, []byte("NBD_OPT_LIST takes no data"))
	}
	if c.s.List == nil {
		return c.optReply(opt, repErrPolicy, []byte("listing is disabled"))
	}
	for _, name := range c.s.List(ctx) {
		b := make([]byte, 4, 4+len(name))
		binary.BigEndian.PutUint32(b, uint32(len(name)))
		if err := c.optReply(opt, repServer, append(b, name...)); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

// optInfo answers NBD_OPT_INFO and NBD_OPT_GO; it reports true when GO
// succeeded and transmission starts.
func (c *conn) optInfo(ctx context.Context, opt uint32, data []byte) (bool, error) {
	// Data: u32 name length, name, u16 count, count * u16 info requests.
	if len(data) < 6 {
		return false, c.optReply(opt, repErrInvalid, []byte("option too short"))
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return false, c.optReply(opt, repErrInvalid, []byte("bad name length"))
	}
	name := string(data[4 : 4+nameLen])
	nreq := binary.BigEndian.Uint16(data[4+nameLen:])
	if len(data) != int(4+nameLen+2+2*uint32(nreq)) {
		return false, c.optReply(opt, repErrInvalid, []byte("bad information request count"))
	}
	exp, release, err := c.lookup(ctx, name)
	if err != nil {
		typ := uint32(repErrUnknown)
		msg := "unknown export"
		switch {
		case c.stopping.Load():
			typ, msg = repErrShutdown, "server is shutting down"
		case errs.Is(err, errs.Forbidden), errs.Is(err, errs.Unauthenticated):
			typ, msg = repErrPolicy, "access to the export is denied"
		case !errs.Is(err, errs.NotFound):
			// The export name may be a secret (coffer's attach keys): log a
			// prefix that identifies it to its owner, not the name.
			c.log.Error("nbd export lookup failed", "export_prefix", name[:min(4, len(name))], "err", err)
		}
		return false, c.optReply(opt, typ, []byte(msg))
	}
	size, tflags := c.exportInfo(exp)
	var info [14]byte
	binary.BigEndian.PutUint16(info[0:], infoExport)
	binary.BigEndian.PutUint64(info[2:], uint64(size))
	binary.BigEndian.PutUint16(info[10:], tflags)
	err = c.optReply(opt, repInfo, info[:12])
	if err == nil {
		binary.BigEndian.PutUint16(info[0:], infoBlockSize)
		binary.BigEndian.PutUint32(info[2:], minBlock)
		binary.BigEndian.PutUint32(info[6:], preferredBlock)
		binary.BigEndian.PutUint32(info[10:], maxPayload)
		err = c.optReply(opt, repInfo, info[:14])
	}
	if err == nil {
		err = c.optReply(opt, repAck, nil)
	}
	if err != nil || opt == optInfo {
		if release != nil {
			release()
		}
		return false, err
	}
	c.enter(exp, release, name)
	return true, nil
}

// optMetaContext answers NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT. The only context is base:allocation; a SET
// replaces the selection (with nothing, if no query names it) for the
// export it names.
func (c *conn) optMetaContext(opt uint32, data []byte) error {
	if !c.structured {
		return c.optReply(opt, repErrInvalid, []byte("negotiate structured replies first"))
	}
	// Data: u32 name length, name, u32 query count, count * (u32 length, query).
	name, rest, ok := cutString(data)
	if !ok || len(rest) < 4 {
		return c.optReply(opt, repErrInvalid, []byte("bad export name"))
	}
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	match := opt == optListMetaContext && n == 0 // no query lists everything
	for range n {
		var q string
		if q, rest, ok = cutString(rest); !ok {
			return c.optReply(opt, repErrInvalid, []byte("bad query"))
		}
		switch {
		case q == contextAllocation:
			match = true
		case opt == optListMetaContext && q == "base:":
			match = true // a namespace alone lists what it holds
		}
	}
	if len(rest) != 0 {
		return c.optReply(opt, repErrInvalid, []byte("bad query count"))
	}
	id := uint32(0) // what LIST sends: ids mean nothing outside SET
	if opt == optSetMetaContext {
		c.allocation, c.allocationName = match, name
		id = contextAllocationID
	}
	if match {
		b := binary.BigEndian.AppendUint32(nil, id)
		if err := c.optReply(opt, repMetaContext, append(b, contextAllocation...)); err != nil {
			return err
		}
	}
	return c.optReply(opt, repAck, nil)
}

// cutString splits a u32-length-prefixed string off b.
func cutString(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

func (c *conn) lookup(ctx context.Context, name string) (Export, func(), error) {
	if c.s.Lookup == nil {
		return nil, nil, errs.E(errs.NotFound, "ExportNotFound", "no exports")
	}
	exp, release, err := c.s.Lookup(ctx, name)
	if err == nil && exp == nil {
		err = errs.E(errs.NotFound, "ExportNotFound", "export %q not found", name)
	}
	if err != nil && release != nil {
		release()
	}
	return exp, release, err
}

func (c *conn) exportInfo(exp Export) (int64, uint16) {
	f := uint16(tflagHasFlags | tflagSendFlush | tflagCanMultiConn)
	if c.structured {
		f |= tflagSendDF
	}
	if exp.ReadOnly() {
		f |= tflagReadOnly
	} else {
		f |= tflagSendFUA | tflagSendTrim | tflagSendWriteZeroes
	}
	return exp.Size(), f
}

func (c *conn) enter(exp Export, release func(), name string) {
	c.exp, c.release = exp, release
	c.size, c.tflags = c.exportInfo(exp)
	if c.allocationName != name {
		c.allocation = false // contexts were selected for another export
	}
	c.log = c.log.With("export", name)
	c.log.Debug("nbd transmission started", "size", c.size)
}
