package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
)

// nbdClient speaks the least NBD the benchmark needs that the Debian
// tools do not offer: a timed read of a few bytes and writes of chosen
// ranges. Fixed newstyle, NBD_OPT_GO, simple replies, one request at a
// time.
type nbdClient struct {
	mu   sync.Mutex
	conn net.Conn
	br   *bufio.Reader
	size int64
	seq  uint64
}

const (
	nbdMagic       = 0x4e42444d41474943
	nbdIHaveOpt    = 0x49484156454F5054
	nbdOptReply    = 0x0003e889045565a9
	nbdRequest     = 0x25609513
	nbdSimpleReply = 0x67446698
	nbdOptGo       = 7
	nbdRepAck      = 1
	nbdRepInfo     = 3
	nbdCmdRead     = 0
	nbdCmdWrite    = 1
	nbdCmdDisc     = 2
	nbdCmdFlush    = 3
)

// dialNBD connects to an nbd://host:port/export URI.
func dialNBD(uri string) (*nbdClient, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "nbd" {
		return nil, fmt.Errorf("not an nbd:// URI: %q", uri)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, err
	}
	c := &nbdClient{conn: conn, br: bufio.NewReader(conn)}
	if err := c.handshake(strings.TrimPrefix(u.Path, "/")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("nbd handshake: %w", err)
	}
	return c, nil
}

func (c *nbdClient) handshake(export string) error {
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint64(g[0:]) != nbdMagic || binary.BigEndian.Uint64(g[8:]) != nbdIHaveOpt {
		return errors.New("not a newstyle NBD server")
	}
	const fixedNewstyle, noZeroes = 1, 2
	b := binary.BigEndian.AppendUint32(nil, fixedNewstyle|noZeroes)
	// NBD_OPT_GO: name length, name, no information requests.
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 0)
	b = binary.BigEndian.AppendUint64(b, nbdIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, nbdOptGo)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	if _, err := c.conn.Write(append(b, data...)); err != nil {
		return err
	}
	for {
		var h [20]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint64(h[0:]) != nbdOptReply {
			return errors.New("bad option reply")
		}
		typ := binary.BigEndian.Uint32(h[12:])
		payload := make([]byte, binary.BigEndian.Uint32(h[16:]))
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return err
		}
		switch {
		case typ == nbdRepAck:
			if c.size == 0 {
				return errors.New("no export size")
			}
			return nil
		case typ == nbdRepInfo && len(payload) >= 12 && binary.BigEndian.Uint16(payload) == 0:
			c.size = int64(binary.BigEndian.Uint64(payload[2:]))
		case typ&(1<<31) != 0:
			return fmt.Errorf("option refused (%#x): %s", typ, payload)
		}
	}
}

func (c *nbdClient) request(cmd uint16, off int64, n int, payload []byte) error {
	c.seq++
	b := binary.BigEndian.AppendUint32(nil, nbdRequest)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, cmd)
	b = binary.BigEndian.AppendUint64(b, c.seq)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	_, err := c.conn.Write(append(b, payload...))
	return err
}

func (c *nbdClient) reply(into []byte) error {
	var h [16]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(h[0:]) != nbdSimpleReply || binary.BigEndian.Uint64(h[8:]) != c.seq {
		return errors.New("unexpected NBD reply")
	}
	if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
		return fmt.Errorf("NBD error %d", e)
	}
	_, err := io.ReadFull(c.br, into)
	return err
}

// ReadAt reads len(p) bytes at off (at most the server's payload limit).
func (c *nbdClient) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.request(nbdCmdRead, off, len(p), nil); err != nil {
		return 0, err
	}
	if err := c.reply(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAt writes p at off.
func (c *nbdClient) WriteAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.request(nbdCmdWrite, off, len(p), p); err != nil {
		return 0, err
	}
	if err := c.reply(nil); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush makes the writes so far durable.
func (c *nbdClient) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.request(nbdCmdFlush, 0, 0, nil); err != nil {
		return err
	}
	return c.reply(nil)
}

// Close disconnects cleanly.
func (c *nbdClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.request(nbdCmdDisc, 0, 0, nil)
	return c.conn.Close()
}
