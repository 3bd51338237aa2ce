package nbd

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// memExport is an export in memory, so a fuzz iteration touches no disk.
type memExport struct {
	mu   sync.Mutex
	data []byte
}

func (m *memExport) Size() int64 { return int64(len(m.data)) }
func (m *memExport) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.data[off:]), nil
}
func (m *memExport) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.data[off:], p), nil
}
func (m *memExport) Zero(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.data[off : off+n])
	return nil
}
func (m *memExport) Flush() error { return nil }

// Extents reports 4 KiB blocks of zeros as holes, so fuzzed reads and
// block status queries walk runs of both kinds.
func (m *memExport) Extents(off, n int64) ([]Extent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Extent
	for pos := off; pos < off+n; {
		end := min((pos/4096+1)*4096, off+n)
		zero := allZeros(m.data[pos:end])
		if k := len(out); k > 0 && out[k-1].Zero == zero {
			out[k-1].Len += end - pos
		} else {
			out = append(out, Extent{Len: end - pos, Hole: zero, Zero: zero})
		}
		pos = end
	}
	return out, nil
}

func allZeros(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
func (m *memExport) ReadOnly() bool { return false }

// Resident vouches for reads that start in the first half of each 128 KiB,
// so fuzzed reads take both the inline path and the workers'.
func (m *memExport) Resident(off, _ int64) bool { return off&(64<<10) == 0 }

var _ Residency = (*memExport)(nil)

// Client preludes the fuzzer's bytes may follow, so that mutations start
// from each phase of the protocol rather than all at the first magic.
const (
	preludeNone       = iota // the fuzzer's bytes are the whole client
	preludeFlags             // client flags sent; options follow
	preludeExportName        // NBD_OPT_EXPORT_NAME "disk"; requests follow
	preludeGo                // NBD_OPT_GO "disk"; requests follow
	preludeGoReadOnly        // NBD_OPT_GO "ro"; requests follow
	preludeStructured        // structured replies, base:allocation, GO "disk"
	preludes
)

func nbdOption(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func nbdGo(name string) []byte {
	d := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	d = append(d, name...)
	d = binary.BigEndian.AppendUint16(d, 1)
	d = binary.BigEndian.AppendUint16(d, infoBlockSize)
	return nbdOption(optGo, d)
}

func nbdRequest(typ, flags uint16, handle uint64, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func prelude(kind uint8) []byte {
	flags := binary.BigEndian.AppendUint32(nil, flagCFixedNewstyle|flagCNoZeroes)
	switch kind % preludes {
	case preludeFlags:
		return flags
	case preludeExportName:
		return append(flags, nbdOption(optExportName, []byte("disk"))...)
	case preludeGo:
		return append(flags, nbdGo("disk")...)
	case preludeGoReadOnly:
		return append(flags, nbdGo("ro")...)
	case preludeStructured:
		b := append(flags, nbdOption(optStructuredReply, nil)...)
		b = append(b, nbdOption(optSetMetaContext, metaData("disk", contextAllocation))...)
		return append(b, nbdGo("disk")...)
	}
	return nil
}

// FuzzServer plays a client that sends fuzzed bytes (after one of the
// preludes) and then hangs up. The server must not panic, must reply only
// in whole frames it can account for, must end the connection within a
// deadline once the client is gone, and must release every export it
// looked up.
func FuzzServer(f *testing.F) {
	var noZeroes [4]byte
	binary.BigEndian.PutUint32(noZeroes[:], flagCFixedNewstyle|flagCNoZeroes)
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	f.Add(uint8(preludeNone), []byte{})
	f.Add(uint8(preludeNone), cat(noZeroes[:], nbdOption(optList, nil), nbdOption(optAbort, nil)))
	f.Add(uint8(preludeNone), cat(noZeroes[:], nbdOption(optExportName, []byte("disk")), nbdRequest(cmdRead, 0, 1, 0, 512, nil)))
	f.Add(uint8(preludeNone), []byte{0, 0, 0, 0xff})
	f.Add(uint8(preludeFlags), nbdOption(optInfo, nbdGo("disk")[16:]))
	f.Add(uint8(preludeFlags), cat(nbdOption(optStartTLS, nil), nbdOption(optStructuredReply, nil), nbdGo("secret")))
	f.Add(uint8(preludeFlags), cat(nbdGo("missing"), nbdOption(optGo, []byte{0, 0, 0, 9, 'x'}), nbdOption(optList, []byte("x"))))
	f.Add(uint8(preludeFlags), nbdOption(optExportName, make([]byte, 70000)))
	f.Add(uint8(preludeFlags), cat(nbdOption(99, nil)[:12], []byte{0x01, 0, 0, 0}))
	f.Add(uint8(preludeGo), cat(nbdRequest(cmdWrite, cmdFlagFUA, 2, 512, 4, []byte("abcd")), nbdRequest(cmdRead, 0, 3, 512, 4, nil),
		nbdRequest(cmdDisc, 0, 4, 0, 0, nil)))
	f.Add(uint8(preludeGo), cat(nbdRequest(cmdTrim, 0, 5, 0, 4096, nil), nbdRequest(cmdWriteZeroes, cmdFlagNoHole, 6, 4096, 4096, nil),
		nbdRequest(cmdFlush, 0, 7, 99, 99, nil)))
	f.Add(uint8(preludeGo), cat(nbdRequest(cmdRead, 0, 8, 1<<63, 1, nil), nbdRequest(cmdRead, 0, 9, 1<<20-1, 2, nil),
		nbdRequest(cmdWrite, 0, 10, 1<<20, 1, []byte("x")), nbdRequest(cmdRead, 4, 11, 0, 1, nil), nbdRequest(77, 0, 12, 0, 0, nil)))
	f.Add(uint8(preludeGo), nbdRequest(cmdRead, 0, 13, 0, maxPayload+1, nil))
	f.Add(uint8(preludeExportName), nbdRequest(cmdWrite, 0, 14, 0, 8, []byte("short")))
	f.Add(uint8(preludeFlags), cat(nbdOption(optSetMetaContext, metaData("disk", contextAllocation)), nbdOption(optStructuredReply, []byte{1}),
		nbdOption(optStructuredReply, nil), nbdOption(optListMetaContext, metaData("disk")), nbdOption(optListMetaContext, metaData("disk", "base:", "x-y:z")),
		nbdOption(optSetMetaContext, metaData("ro", contextAllocation)), nbdGo("disk"), nbdRequest(cmdBlockStatus, 0, 20, 0, 4096, nil),
		nbdRequest(cmdRead, cmdFlagDF, 21, 0, 4096, nil)))
	f.Add(uint8(preludeFlags), cat(nbdOption(optStructuredReply, nil), nbdOption(optSetMetaContext, []byte{0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0, 0, 9, 0}),
		nbdOption(optListMetaContext, metaData("disk", "base:")[:10])))
	f.Add(uint8(preludeStructured), cat(nbdRequest(cmdWrite, 0, 22, 70000, 5, []byte("hello")), nbdRequest(cmdBlockStatus, 0, 23, 0, 1<<20, nil),
		nbdRequest(cmdBlockStatus, cmdFlagReqOne, 24, 65536, 8192, nil), nbdRequest(cmdRead, 0, 25, 0, 1<<20, nil),
		nbdRequest(cmdRead, cmdFlagDF, 26, 0, 1<<20, nil), nbdRequest(cmdRead, 0, 27, 0, 0, nil)))
	f.Add(uint8(preludeStructured), cat(nbdRequest(cmdBlockStatus, 0, 28, 0, 0, nil), nbdRequest(cmdBlockStatus, cmdFlagFUA, 29, 0, 1, nil),
		nbdRequest(cmdBlockStatus, 0, 30, 1<<20-1, 2, nil), nbdRequest(cmdRead, cmdFlagReqOne, 31, 0, 1, nil), nbdRequest(cmdRead, 0, 32, 1<<63, 1, nil)))
	f.Add(uint8(preludeGoReadOnly), cat(nbdRequest(cmdWrite, 0, 15, 0, 3, []byte("abc")), nbdRequest(cmdTrim, 0, 16, 0, 3, nil)))

	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		var looked, released atomic.Int64
		exp := &memExport{data: make([]byte, 1<<20)}
		s := &Server{
			Workers: 2,
			List:    func(context.Context) []string { return []string{"disk"} },
			Lookup: func(_ context.Context, name string) (Export, func(), error) {
				var e Export
				switch name {
				case "disk":
					e = exp
				case "ro":
					e = ReadOnly(exp)
				case "secret":
					return nil, nil, errs.E(errs.Forbidden, "Denied", "no")
				default:
					return nil, nil, errs.E(errs.NotFound, "ExportNotFound", "no export %q", name)
				}
				looked.Add(1)
				return e, func() { released.Add(1) }, nil
			},
		}
		s.init()
		client, server := net.Pipe()
		served := make(chan struct{})
		go func() {
			defer close(served)
			newConn(s, server).serve()
		}()
		// The client reads everything the server says until it hangs up.
		got := make(chan int64, 1)
		go func() {
			n, _ := io.Copy(io.Discard, client)
			got <- n
		}()
		go func() {
			_, _ = client.Write(append(prelude(kind), data...))
			_ = client.Close()
		}()

		deadline := time.After(10 * time.Second)
		select {
		case <-served:
		case <-deadline:
			t.Fatalf("prelude %d, %d bytes: the server did not end the connection", kind%preludes, len(data))
		}
		select {
		case n := <-got:
			if n < 18 {
				t.Fatalf("the server sent %d bytes, less than its greeting", n)
			}
		case <-deadline:
			t.Fatal("the server's end stayed open")
		}
		if looked.Load() != released.Load() {
			t.Fatalf("%d exports looked up, %d released", looked.Load(), released.Load())
		}
	})
}
