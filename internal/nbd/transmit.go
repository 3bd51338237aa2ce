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

// reply is one simple reply handed to the writer goroutine.
type reply struct {
	handle uint64
	errno  uint32
	data   []byte  // read payload, sent after the header
	buf    *[]byte // returned to the pool once sent
}

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
	c.workerWG.Add(n)
	for range n {
		go c.workLoop()
	}

	err := c.readLoop()
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
	for {
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
		c.inflight <- struct{}{}
		if r.typ == cmdWrite {
			if errno := c.check(r); errno != 0 {
				// The payload must still be consumed to stay in step.
				if _, err := io.CopyN(io.Discard, c.br, int64(r.length)); err != nil {
					<-c.inflight
					return err
				}
				c.send(reply{handle: r.handle, errno: errno})
				continue
			}
			r.data = c.s.pool.get(int(r.length))
			if _, err := io.ReadFull(c.br, *r.data); err != nil {
				c.s.pool.put(r.data)
				<-c.inflight
				return err
			}
		} else if errno := c.check(r); errno != 0 {
			c.send(reply{handle: r.handle, errno: errno})
			continue
		}
		c.reqs <- r
	}
}

// check validates a request before it is run; it returns an NBD error or 0.
func (c *conn) check(r request) uint32 {
	var allowed uint16
	write := false
	switch r.typ {
	case cmdRead:
		allowed = cmdFlagFUA // harmless on a read; some clients set it
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
	}
	if err == nil && r.flags&cmdFlagFUA != 0 && r.typ != cmdRead && r.typ != cmdFlush {
		err = c.exp.Flush()
	}
	if err != nil {
		rep.errno = c.errno(r, err)
	}
	return rep
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
	if c.writing {
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
	if need := len(batch) * replyHeaderLen; len(c.hdrs) < need {
		c.hdrs = make([]byte, need)
	}
	c.vec = c.vec[:0]
	for i, r := range batch {
		h := c.hdrs[i*replyHeaderLen : (i+1)*replyHeaderLen]
		binary.BigEndian.PutUint32(h[0:], magicSimpleRep)
		binary.BigEndian.PutUint32(h[4:], r.errno)
		binary.BigEndian.PutUint64(h[8:], r.handle)
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
