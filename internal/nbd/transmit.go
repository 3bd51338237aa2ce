package nbd

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/coffer-backup/coffer/internal/errs"
)

// request is one transmission-phase command handed to a worker.
type request struct {
	typ    uint16
	flags  uint16
	handle uint64
	off    int64
	length uint32
	data   *[]byte // write payload, from the pool
}

// reply is one reply handed to the writer: a simple reply, one
// OFFSET_DATA chunk (the common structured read), or chunks encoded in
// full by the worker.
type reply struct {
	handle uint64
	kind   uint8
	errno  uint32  // replySimple
	off    int64   // replyData: the offset of data
	data   []byte  // replySimple, replyData: read payload, sent after the header
	buf    *[]byte // returned to the pool once sent
	parts  [][]byte
}

const (
	replySimple = iota
	replyData   // one OFFSET_DATA chunk with the DONE flag
	replyChunks // parts hold every byte of the reply
)

// transmit runs the transmission phase. This goroutine reads requests (and
// write payloads) and hands them to a fixed pool of workers. Replies are
// serialised by a mutex with "flat combining": a finished worker queues its
// reply and, if nobody is writing, becomes the writer and sends everything
// queued in one writev; if someone is, it returns at once and that writer
// sends its reply too. So a lone reply costs no goroutine hand-off and a
// burst costs one system call. Replies may go out of order, which the
// protocol allows (the client matches handles).
//
// inflight bounds the requests read but not yet answered, and so the memory
// a client that stops reading replies can make the server hold.
func (c *conn) transmit() {
	n := c.s.workers()
	c.reqs = make(chan request, n)
	c.inflight = make(chan struct{}, 4*n)
	_, c.buffered = c.nc.(*tls.Conn)
	c.resident, _ = c.exp.(Residency)
	c.workerWG.Add(n)
	for range n {
		go c.workLoop()
	}

	err := c.readLoop()
	c.flush() // replies held back when the loop ended (NBD_CMD_DISC read with them)
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case c.stopping.Load():
	case errors.Is(err, errProtocol):
		c.log.Warn("nbd client broke the protocol; closing its connection", "err", err)
		_ = c.raw.Close()
	default:
		c.log.Info("nbd connection ended", "err", err)
	}

	close(c.reqs)
	c.workerWG.Wait() // every reply has been sent (or dropped) by now
	if c.wrote.Load() {
		if err := c.exp.Flush(); err != nil {
			c.log.Error("nbd flush at disconnect failed", "err", err)
		}
	}
}

// readLoop reads requests until NBD_CMD_DISC (nil), the end of the stream,
// a protocol violation, or Shutdown.
func (c *conn) readLoop() error {
	held := 0 // replies to inline reads queued but not yet written
	for {
		// Replies held back are written before the receiver may block (on
		// the socket, a write's payload, the in-flight bound), and at
		// least every maxHeld replies.
		if held > 0 && (held >= maxHeld || c.br.Buffered() < requestHeaderLen) {
			c.flush()
			held = 0
		}
		if _, err := io.ReadFull(c.br, c.hdr[:]); err != nil {
			return err
		}
		h := c.hdr[:]
		if binary.BigEndian.Uint32(h[0:]) != magicRequest {
			return errProtocol
		}
		r := request{
			flags:  binary.BigEndian.Uint16(h[4:]),
			typ:    binary.BigEndian.Uint16(h[6:]),
			handle: binary.BigEndian.Uint64(h[8:]),
			off:    int64(binary.BigEndian.Uint64(h[16:])),
			length: binary.BigEndian.Uint32(h[24:]),
		}
		if r.typ == cmdDisc {
			return nil
		}
		select {
		case c.inflight <- struct{}{}:
		default: // full: workers hold the rest, maybe for a long time
			if held > 0 {
				c.flush()
				held = 0
			}
			c.inflight <- struct{}{}
		}
		if r.typ == cmdWrite {
			if errno := c.check(r); errno != 0 {
				// The payload must still be consumed to stay in step.
				if _, err := io.CopyN(io.Discard, c.br, int64(r.length)); err != nil {
					<-c.inflight
					return err
				}
				c.send(c.errReply(r, errno))
				continue
			}
			if held > 0 && c.br.Buffered() < int(r.length) {
				c.flush()
				held = 0
			}
			r.data = c.s.pool.get(int(r.length))
			if _, err := io.ReadFull(c.br, *r.data); err != nil {
				c.s.pool.put(r.data)
				<-c.inflight
				return err
			}
		} else if errno := c.check(r); errno != 0 {
			c.send(c.errReply(r, errno))
			continue
		}
		if c.inline(r) {
			c.hold(c.do(r))
			held++
			continue
		}
		c.reqs <- r
	}
}

// inlineReadMax is the largest read the receiving goroutine runs itself;
// past it the copy, not the hand-off, is what a read costs.
const inlineReadMax = 64 << 10

// maxHeld bounds the replies to inline reads held back to go out in one
// write, so the first of a long burst is not kept waiting for the last.
const maxHeld = 16

// inline reports whether the goroutine that received r runs it itself
// instead of handing it to a worker: a small read that the export says is
// in memory. A 4 KiB read from the page cache costs less than the wake-up
// of the worker it would be handed to; a read that may wait for a device
// is handed off, so it does not hold up receiving the requests behind it.
func (c *conn) inline(r request) bool {
	return c.resident != nil && r.typ == cmdRead && r.length > 0 && r.length <= inlineReadMax &&
		c.resident.Resident(r.off, int64(r.length))
}

// check validates a request before it is run; it returns an NBD error or 0.
func (c *conn) check(r request) uint32 {
	var allowed uint16
	write := false
	switch r.typ {
	case cmdRead:
		allowed = cmdFlagFUA // harmless on a read; some clients set it
		if c.structured {
			allowed |= cmdFlagDF
		}
	case cmdBlockStatus:
		if !c.allocation || r.length == 0 {
			return errInval
		}
		allowed = cmdFlagReqOne
	case cmdWrite, cmdTrim:
		allowed, write = cmdFlagFUA, true
	case cmdWriteZeroes:
		allowed, write = cmdFlagFUA|cmdFlagNoHole, true
	case cmdFlush:
		allowed = cmdFlagFUA
	default:
		return errInval
	}
	if r.flags&^allowed != 0 {
		return errInval
	}
	if r.typ == cmdFlush {
		return 0 // offset and length are reserved; tolerate junk in them
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > maxPayload {
		return errInval
	}
	if write && c.tflags&tflagReadOnly != 0 {
		return errPerm
	}
	if r.off < 0 || int64(r.length) > c.size-r.off {
		if write {
			return errNoSpc
		}
		return errInval
	}
	return 0
}

func (c *conn) workLoop() {
	defer c.workerWG.Done()
	for r := range c.reqs {
		c.send(c.do(r))
	}
}

// do runs one validated request and returns its reply.
func (c *conn) do(r request) reply {
	rep := reply{handle: r.handle}
	var err error
	switch r.typ {
	case cmdRead:
		if c.structured {
			return c.readChunks(r)
		}
		rep.buf = c.s.pool.get(int(r.length))
		_, err = c.exp.ReadAt(*rep.buf, r.off)
		if err == nil {
			rep.data = *rep.buf
		} else {
			c.s.pool.put(rep.buf)
			rep.buf = nil
		}
	case cmdWrite:
		c.wrote.Store(true)
		_, err = c.exp.WriteAt(*r.data, r.off)
		c.s.pool.put(r.data)
	case cmdTrim:
		c.wrote.Store(true)
		err = c.exp.Zero(r.off, int64(r.length))
	case cmdWriteZeroes:
		c.wrote.Store(true)
		err = c.writeZeroes(r)
	case cmdFlush:
		err = c.exp.Flush()
	case cmdBlockStatus:
		return c.blockStatus(r)
	}
	if err == nil && r.flags&cmdFlagFUA != 0 && r.typ != cmdRead && r.typ != cmdFlush {
		err = c.exp.Flush()
	}
	if err != nil {
		rep.errno = c.errno(r, err)
	}
	return rep
}

// errReply is the error reply to r: structured for the commands whose
// replies must be (a READ once structured replies are on) and for
// BLOCK_STATUS, simple for the rest.
func (c *conn) errReply(r request, errno uint32) reply {
	if !c.structured || (r.typ != cmdRead && r.typ != cmdBlockStatus) {
		return reply{handle: r.handle, errno: errno}
	}
	b := chunkHeader(nil, chunkFlagDone, chunkError, r.handle, 6)
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint16(b, 0) // no message
	return reply{handle: r.handle, kind: replyChunks, parts: [][]byte{b}}
}

func chunkHeader(b []byte, flags, typ uint16, handle uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, magicChunk)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	return binary.BigEndian.AppendUint32(b, length)
}

// holeReadMin is the smallest read that asks the export where its holes
// are: the question costs two lseeks a file, which pays for itself when
// it saves reading and sending a long zero run, not on a 4 KiB read.
const holeReadMin = 64 << 10

// readChunks runs a READ with structured replies. A read that is all data
// (the common case, and every read with DF) is one OFFSET_DATA chunk; a
// read over holes sends them as OFFSET_HOLE chunks instead of zeros.
func (c *conn) readChunks(r request) reply {
	if r.length == 0 {
		return reply{handle: r.handle, kind: replyChunks, parts: [][]byte{chunkHeader(nil, chunkFlagDone, chunkNone, r.handle, 0)}}
	}
	var exts []Extent
	if r.length >= holeReadMin && r.flags&cmdFlagDF == 0 {
		var err error
		if exts, err = c.extents(r.off, int64(r.length), 0); err != nil {
			return c.errReply(r, c.errno(r, err))
		}
		if len(exts) == 1 && !exts[0].Zero {
			exts = nil // all data
		}
	}
	buf := c.s.pool.get(int(r.length))
	if exts == nil {
		if _, err := c.exp.ReadAt(*buf, r.off); err != nil {
			c.s.pool.put(buf)
			return c.errReply(r, c.errno(r, err))
		}
		return reply{handle: r.handle, kind: replyData, off: r.off, data: *buf, buf: buf}
	}
	// One header (and hole payload) a run, all in one allocation.
	meta := make([]byte, 0, len(exts)*(chunkHeaderLen+12))
	parts := make([][]byte, 0, 2*len(exts))
	pos := int64(0)
	for i, e := range exts {
		var flags uint16
		if i == len(exts)-1 {
			flags = chunkFlagDone
		}
		off := r.off + pos
		start := len(meta)
		if e.Zero {
			meta = chunkHeader(meta, flags, chunkOffsetHole, r.handle, 12)
			meta = binary.BigEndian.AppendUint64(meta, uint64(off))
			meta = binary.BigEndian.AppendUint32(meta, uint32(e.Len))
			parts = append(parts, meta[start:])
		} else {
			data := (*buf)[pos : pos+e.Len]
			if _, err := c.exp.ReadAt(data, off); err != nil {
				c.s.pool.put(buf)
				return c.errReply(r, c.errno(r, err))
			}
			meta = chunkHeader(meta, flags, chunkOffsetData, r.handle, uint32(8+e.Len))
			meta = binary.BigEndian.AppendUint64(meta, uint64(off))
			parts = append(parts, meta[start:], data)
		}
		pos += e.Len
	}
	return reply{handle: r.handle, kind: replyChunks, parts: parts, buf: buf}
}

// extents returns runs covering exactly [off, off+n), merged where their
// states match, asking the export as often as it needs; with limit > 0 it
// stops after that many runs (which then cover less).
func (c *conn) extents(off, n int64, limit int) ([]Extent, error) {
	var out []Extent
	for pos := int64(0); pos < n; {
		got, err := extentsOf(c.exp, off+pos, n-pos)
		if err != nil {
			return nil, err
		}
		if len(got) == 0 {
			return nil, errs.E(errs.Internal, "NoExtents", "the export described no extent at %d", off+pos)
		}
		for _, e := range got {
			e.Len = min(e.Len, n-pos)
			if e.Len <= 0 {
				return nil, errs.E(errs.Internal, "EmptyExtent", "the export described an empty extent at %d", off+pos)
			}
			if k := len(out); k > 0 && out[k-1].Hole == e.Hole && out[k-1].Zero == e.Zero {
				out[k-1].Len += e.Len
			} else {
				if limit > 0 && len(out) == limit {
					return out, nil
				}
				out = append(out, e)
			}
			pos += e.Len
			if pos == n {
				break
			}
		}
	}
	return out, nil
}

// maxStatusExtents bounds one BLOCK_STATUS reply; a client asks again
// from where it ends.
const maxStatusExtents = 1 << 14

// blockStatus answers NBD_CMD_BLOCK_STATUS for base:allocation, the only
// context (check refuses the command unless it was selected).
func (c *conn) blockStatus(r request) reply {
	limit := maxStatusExtents
	if r.flags&cmdFlagReqOne != 0 {
		limit = 1
	}
	exts, err := c.extents(r.off, int64(r.length), limit)
	if err != nil {
		return c.errReply(r, c.errno(r, err))
	}
	b := chunkHeader(make([]byte, 0, chunkHeaderLen+4+8*len(exts)), chunkFlagDone, chunkBlockStatus, r.handle, uint32(4+8*len(exts)))
	b = binary.BigEndian.AppendUint32(b, contextAllocationID)
	for _, e := range exts {
		var st uint32
		if e.Hole {
			st |= stateHole
		}
		if e.Zero {
			st |= stateZero
		}
		b = binary.BigEndian.AppendUint32(b, uint32(e.Len))
		b = binary.BigEndian.AppendUint32(b, st)
	}
	return reply{handle: r.handle, kind: replyChunks, parts: [][]byte{b}}
}

func (c *conn) writeZeroes(r request) error {
	if r.flags&cmdFlagNoHole == 0 {
		return c.exp.Zero(r.off, int64(r.length))
	}
	if zf, ok := c.exp.(ZeroFiller); ok {
		return zf.ZeroFill(r.off, int64(r.length))
	}
	bp := c.s.pool.get(int(min(r.length, 1<<20)))
	defer c.s.pool.put(bp)
	clear(*bp)
	for off, left := r.off, int64(r.length); left > 0; {
		n := min(left, int64(len(*bp)))
		if _, err := c.exp.WriteAt((*bp)[:n], off); err != nil {
			return err
		}
		off, left = off+n, left-n
	}
	return nil
}

// errno maps an export error to an NBD error value. Unexpected errors are
// logged here; the client only sees the number.
func (c *conn) errno(r request, err error) uint32 {
	switch {
	case errs.Is(err, errs.Forbidden):
		return errPerm
	case errs.Is(err, errs.Invalid):
		if r.typ == cmdRead {
			return errInval
		}
		return errNoSpc
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errNoSpc
	case errors.Is(err, os.ErrClosed):
		return errShutdown
	}
	c.log.Error("nbd request failed", "type", r.typ, "offset", r.off, "length", r.length, "err", err)
	return errIO
}

// send queues a reply and, unless another goroutine is already writing,
// writes out the queue until it is empty. After a write error replies are
// dropped and the connection is closed so the reader stops too.
func (c *conn) send(r reply) {
	c.qmu.Lock()
	c.queue = append(c.queue, r)
	c.writeQueued()
}

// hold queues a reply without writing it: the receiver, running a burst of
// inline reads, sends their replies in one write (flush), or whoever
// writes next sends them.
func (c *conn) hold(r reply) {
	c.qmu.Lock()
	c.queue = append(c.queue, r)
	c.qmu.Unlock()
}

// flush writes the queued replies unless another goroutine is writing.
func (c *conn) flush() {
	c.qmu.Lock()
	c.writeQueued()
}

// writeQueued is called with qmu held and releases it.
func (c *conn) writeQueued() {
	if c.writing || len(c.queue) == 0 {
		c.qmu.Unlock()
		return
	}
	c.writing = true
	for len(c.queue) > 0 {
		batch := c.queue
		c.queue = c.spare[:0]
		c.qmu.Unlock()

		c.writeReplies(batch)
		for i := range batch {
			c.s.pool.put(batch[i].buf)
			batch[i] = reply{}
			<-c.inflight
		}

		c.qmu.Lock()
		c.spare = batch[:0]
	}
	c.writing = false
	c.qmu.Unlock()
}

// writeReplies sends a batch: one writev on a plain connection, through the
// buffered writer on TLS. Only the goroutine holding the writing role calls
// it, so the scratch space (hdrs, vec) and the socket are its own.
func (c *conn) writeReplies(batch []reply) {
	if c.failed {
		return
	}
	const stride = chunkHeaderLen + 8 // the longest header written here
	if need := len(batch) * stride; len(c.hdrs) < need {
		c.hdrs = make([]byte, need)
	}
	c.vec = c.vec[:0]
	for i, r := range batch {
		h := c.hdrs[i*stride : i*stride : (i+1)*stride]
		switch r.kind {
		case replySimple:
			h = binary.BigEndian.AppendUint32(h, magicSimpleRep)
			h = binary.BigEndian.AppendUint32(h, r.errno)
			h = binary.BigEndian.AppendUint64(h, r.handle)
		case replyData:
			h = chunkHeader(h, chunkFlagDone, chunkOffsetData, r.handle, uint32(8+len(r.data)))
			h = binary.BigEndian.AppendUint64(h, uint64(r.off))
		case replyChunks:
			c.vec = append(c.vec, r.parts...)
			continue
		}
		c.vec = append(c.vec, h)
		if len(r.data) > 0 {
			c.vec = append(c.vec, r.data)
		}
	}
	var err error
	if c.buffered {
		for _, b := range c.vec {
			if _, err = c.bw.Write(b); err != nil {
				break
			}
		}
		if err == nil {
			err = c.bw.Flush()
		}
	} else {
		v := c.vec // WriteTo consumes its receiver
		_, err = v.WriteTo(c.nc)
	}
	clear(c.vec) // drop references to payloads going back to the pool
	if err != nil {
		c.failed = true
		if !c.stopping.Load() {
			c.log.Info("nbd reply write failed", "err", err)
		}
		_ = c.raw.Close()
	}
}
