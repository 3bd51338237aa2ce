package nbd

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestMetaContextHaggling(t *testing.T) {
	ts := startServer(t, 4*MiB)
	rc := dialRaw(t, ts.addr)

	for _, tc := range []struct {
		name     string
		opt      uint32
		data     []byte
		wantLast uint32
		wantCtx  []uint32 // ids of the META_CONTEXT replies before the last
	}{
		{"set before structured replies", optSetMetaContext, metaData("disk", contextAllocation), repErrInvalid, nil},
		{"list before structured replies", optListMetaContext, metaData("disk"), repErrInvalid, nil},
		{"structured reply with data", optStructuredReply, []byte{1}, repErrInvalid, nil},
		{"structured reply", optStructuredReply, nil, repAck, nil},
		{"structured reply again", optStructuredReply, nil, repAck, nil},
		{"list everything", optListMetaContext, metaData("disk"), repAck, []uint32{0}},
		{"list namespace", optListMetaContext, metaData("disk", "base:"), repAck, []uint32{0}},
		{"list by name", optListMetaContext, metaData("disk", contextAllocation), repAck, []uint32{0}},
		{"list unknown context", optListMetaContext, metaData("disk", "qemu:dirty-bitmap:x"), repAck, nil},
		{"list short name", optListMetaContext, []byte{0, 0, 0, 9, 'd'}, repErrInvalid, nil},
		{"list missing query", optListMetaContext, metaData("disk", "base:")[:12], repErrInvalid, nil},
		{"list trailing bytes", optListMetaContext, append(metaData("disk"), 0), repErrInvalid, nil},
		{"list query count too high", optListMetaContext, append(metaData("disk")[:8], 0, 0, 0, 2, 0, 0, 0, 0), repErrInvalid, nil},
		{"set namespace selects nothing", optSetMetaContext, metaData("disk", "base:"), repAck, nil},
		{"set", optSetMetaContext, metaData("disk", "x-other:thing", contextAllocation), repAck, []uint32{contextAllocationID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := rc.opt(tc.opt, tc.data)
			last := rs[len(rs)-1]
			if last.typ != tc.wantLast || len(rs) != len(tc.wantCtx)+1 {
				t.Fatalf("got %d replies ending in %#x, want %d ending in %#x", len(rs), last.typ, len(tc.wantCtx)+1, tc.wantLast)
			}
			for i, id := range tc.wantCtx {
				r := rs[i]
				if r.typ != repMetaContext || binary.BigEndian.Uint32(r.data) != id || string(r.data[4:]) != contextAllocation {
					t.Fatalf("reply %d: type %#x data %q, want context %d %s", i, r.typ, r.data, id, contextAllocation)
				}
			}
		})
	}
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	if rc.tflags&tflagSendDF == 0 {
		t.Fatalf("flags %#x lack SEND_DF after structured replies", rc.tflags)
	}
	cs := rc.chunks(cmdBlockStatus, 0, 0, 4096)
	if len(cs) != 1 || cs[0].typ != chunkBlockStatus {
		t.Fatalf("block status reply %+v", cs)
	}
}

// structuredClient negotiates structured replies (and, if ctx, the
// allocation context for export) and attaches to export.
func structuredClient(t *testing.T, ts *testServer, export string, ctx bool) *rawClient {
	t.Helper()
	rc := dialRaw(t, ts.addr)
	if rs := rc.opt(optStructuredReply, nil); rs[0].typ != repAck {
		t.Fatalf("STRUCTURED_REPLY = %#x", rs[0].typ)
	}
	if ctx {
		if rs := rc.opt(optSetMetaContext, metaData(export, contextAllocation)); len(rs) != 2 {
			t.Fatalf("SET_META_CONTEXT: %d replies", len(rs))
		}
	}
	if typ := rc.goExport(export); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}
	return rc
}

type statusExtent struct {
	len   uint32
	flags uint32
}

func blockStatus(t *testing.T, rc *rawClient, flags uint16, off int64, length uint32) []statusExtent {
	t.Helper()
	cs := rc.chunks(cmdBlockStatus, flags, off, length)
	if len(cs) != 1 || cs[0].typ != chunkBlockStatus {
		t.Fatalf("block status reply %+v", cs)
	}
	p := cs[0].payload
	if len(p) < 12 || (len(p)-4)%8 != 0 || binary.BigEndian.Uint32(p) != contextAllocationID {
		t.Fatalf("block status payload % x", p)
	}
	var out []statusExtent
	for p = p[4:]; len(p) > 0; p = p[8:] {
		out = append(out, statusExtent{binary.BigEndian.Uint32(p), binary.BigEndian.Uint32(p[4:])})
	}
	return out
}

func TestBlockStatus(t *testing.T) {
	const size = 8 * MiB
	ts := startServer(t, size)
	// Data at [1 MiB, 1 MiB+64 KiB) and [4 MiB, 6 MiB); the rest unwritten.
	if _, err := ts.vol.WriteAt(bytes.Repeat([]byte{1}, 64<<10), MiB); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.vol.WriteAt(bytes.Repeat([]byte{2}, 2*MiB), 4*MiB); err != nil {
		t.Fatal(err)
	}
	const hz = stateHole | stateZero
	rc := structuredClient(t, ts, "disk", true)
	for _, tc := range []struct {
		name   string
		flags  uint16
		off    int64
		length uint32
		want   []statusExtent
	}{
		{"whole export", 0, 0, size, []statusExtent{{MiB, hz}, {64 << 10, 0}, {3*MiB - 64<<10, hz}, {2 * MiB, 0}, {2 * MiB, hz}}},
		{"inside data", 0, 4*MiB + 512, 4096, []statusExtent{{4096, 0}}},
		{"across an edge", 0, 3 * MiB, 2 * MiB, []statusExtent{{MiB, hz}, {MiB, 0}}},
		{"req one", cmdFlagReqOne, 0, size, []statusExtent{{MiB, hz}}},
		{"req one clipped to the request", cmdFlagReqOne, 4 * MiB, 4096, []statusExtent{{4096, 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := blockStatus(t, rc, tc.flags, tc.off, tc.length)
			if len(got) != len(tc.want) {
				t.Fatalf("extents %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("extents %v, want %v", got, tc.want)
				}
			}
		})
	}

	// Bad block status requests get a structured EINVAL; the connection goes on.
	for _, tc := range []struct {
		name   string
		flags  uint16
		off    int64
		length uint32
	}{
		{"zero length", 0, 0, 0},
		{"past the end", 0, size - 512, 1024},
		{"unknown flag", cmdFlagFUA, 0, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStructuredError(t, rc, cmdBlockStatus, tc.flags, tc.off, tc.length, errInval)
		})
	}
	if got := blockStatus(t, rc, 0, MiB, 4096); len(got) != 1 || got[0] != (statusExtent{4096, 0}) {
		t.Fatalf("after errors: %v", got)
	}

	t.Run("export without a map is all data", func(t *testing.T) {
		rc := structuredClient(t, ts, "unmapped", true)
		if got := blockStatus(t, rc, 0, 0, size); len(got) != 1 || got[0] != (statusExtent{size, 0}) {
			t.Fatalf("extents %v", got)
		}
	})
	t.Run("read-only export keeps the map", func(t *testing.T) {
		rc := structuredClient(t, ts, "ro", true)
		if got := blockStatus(t, rc, 0, 0, 2*MiB); len(got) != 3 || got[0] != (statusExtent{MiB, hz}) {
			t.Fatalf("extents %v", got)
		}
	})
}

func wantStructuredError(t *testing.T, rc *rawClient, typ, flags uint16, off int64, length uint32, errno uint32) {
	t.Helper()
	cs := rc.chunks(typ, flags, off, length)
	if len(cs) != 1 || cs[0].typ != chunkError || len(cs[0].payload) != 6 || binary.BigEndian.Uint32(cs[0].payload) != errno {
		t.Fatalf("reply %+v, want one error chunk with %s", cs, fmtErrno(errno))
	}
}

func TestBlockStatusNeedsAContext(t *testing.T) {
	ts := startServer(t, 4*MiB)
	t.Run("structured replies, no context", func(t *testing.T) {
		rc := structuredClient(t, ts, "disk", false)
		wantStructuredError(t, rc, cmdBlockStatus, 0, 0, 4096, errInval)
	})
	t.Run("context selected for another export", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.opt(optStructuredReply, nil)
		if rs := rc.opt(optSetMetaContext, metaData("ro", contextAllocation)); len(rs) != 2 {
			t.Fatalf("SET_META_CONTEXT: %d replies", len(rs))
		}
		if typ := rc.goExport("disk"); typ != repAck {
			t.Fatalf("GO = %#x", typ)
		}
		wantStructuredError(t, rc, cmdBlockStatus, 0, 0, 4096, errInval)
	})
	t.Run("context cleared by a later SET", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.opt(optStructuredReply, nil)
		rc.opt(optSetMetaContext, metaData("disk", contextAllocation))
		if rs := rc.opt(optSetMetaContext, metaData("disk")); len(rs) != 1 || rs[0].typ != repAck {
			t.Fatalf("empty SET_META_CONTEXT: %+v", rs)
		}
		rc.goExport("disk")
		wantStructuredError(t, rc, cmdBlockStatus, 0, 0, 4096, errInval)
	})
	t.Run("simple replies", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.goExport("disk")
		if rc.tflags&tflagSendDF != 0 {
			t.Fatalf("SEND_DF advertised without structured replies: %#x", rc.tflags)
		}
		if errno, _ := rc.do(cmdBlockStatus, 0, 0, 4096, nil); errno != errInval {
			t.Fatalf("got %s", fmtErrno(errno))
		}
		if errno, _ := rc.do(cmdRead, cmdFlagDF, 0, 4096, nil); errno != errInval {
			t.Fatalf("DF without structured replies: %s", fmtErrno(errno))
		}
	})
}

// readBack reassembles a structured read reply into bytes, checking that
// the chunks tile the range exactly once.
func readBack(t *testing.T, cs []chunk, off int64, length uint32) (data []byte, holes, datas int) {
	t.Helper()
	data = bytes.Repeat([]byte{0xee}, int(length))
	covered := make([]bool, length)
	mark := func(at int64, n int) {
		if at < off || at+int64(n) > off+int64(length) {
			t.Fatalf("chunk [%d, +%d) outside the read [%d, +%d)", at, n, off, length)
		}
		for i := at - off; i < at-off+int64(n); i++ {
			if covered[i] {
				t.Fatalf("byte %d sent twice", off+i)
			}
			covered[i] = true
		}
	}
	for i, c := range cs {
		if (c.flags&chunkFlagDone != 0) != (i == len(cs)-1) {
			t.Fatalf("chunk %d of %d has flags %#x", i, len(cs), c.flags)
		}
		switch c.typ {
		case chunkOffsetData:
			at := int64(binary.BigEndian.Uint64(c.payload))
			mark(at, len(c.payload)-8)
			copy(data[at-off:], c.payload[8:])
			datas++
		case chunkOffsetHole:
			if len(c.payload) != 12 {
				t.Fatalf("hole chunk payload % x", c.payload)
			}
			at, n := int64(binary.BigEndian.Uint64(c.payload)), int(binary.BigEndian.Uint32(c.payload[8:]))
			mark(at, n)
			clear(data[at-off : at-off+int64(n)])
			holes++
		default:
			t.Fatalf("chunk type %d in a read reply", c.typ)
		}
	}
	for i, ok := range covered {
		if !ok {
			t.Fatalf("byte %d not sent", off+int64(i))
		}
	}
	return data, holes, datas
}

func TestStructuredRead(t *testing.T) {
	const size = 8 * MiB
	ts := startServer(t, size)
	want := make([]byte, size)
	for _, r := range []struct{ off, n int64 }{{MiB, 64 << 10}, {MiB + 200<<10, 4096}, {3 * MiB, MiB}} {
		p := bytes.Repeat([]byte{byte(r.off >> 12)}, int(r.n))
		copy(want[r.off:], p)
		if _, err := ts.vol.WriteAt(p, r.off); err != nil {
			t.Fatal(err)
		}
	}
	rc := structuredClient(t, ts, "disk", false)
	for _, tc := range []struct {
		name       string
		flags      uint16
		off        int64
		length     uint32
		wantHoles  bool // at least one OFFSET_HOLE chunk
		wantChunks int  // 0: any
	}{
		{"partly allocated", 0, MiB - 128<<10, 2 * MiB, true, 0},
		{"whole export", 0, 0, size, true, 0},
		{"all data", 0, 3 * MiB, MiB, false, 1},
		{"all hole", 0, 5 * MiB, MiB, true, 1},
		{"small read over a hole", 0, 6 * MiB, 4096, false, 1},
		{"do not fragment", cmdFlagDF, MiB - 128<<10, 2 * MiB, false, 1},
		{"do not fragment with fua", cmdFlagDF | cmdFlagFUA, 0, size, false, 1},
		{"unaligned", 0, MiB + 1000, 300 << 10, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := rc.chunks(cmdRead, tc.flags, tc.off, tc.length)
			got, holes, _ := readBack(t, cs, tc.off, tc.length)
			if !bytes.Equal(got, want[tc.off:tc.off+int64(tc.length)]) {
				t.Fatal("structured read returned the wrong bytes")
			}
			if (holes > 0) != tc.wantHoles || (tc.wantChunks > 0 && len(cs) != tc.wantChunks) {
				t.Fatalf("%d chunks, %d holes; want holes %v, %d chunks", len(cs), holes, tc.wantHoles, tc.wantChunks)
			}
		})
	}
	t.Run("zero length", func(t *testing.T) {
		cs := rc.chunks(cmdRead, 0, 0, 0)
		if len(cs) != 1 || cs[0].typ != chunkNone || len(cs[0].payload) != 0 {
			t.Fatalf("reply %+v", cs)
		}
	})
	for _, tc := range []struct {
		name   string
		flags  uint16
		off    int64
		length uint32
	}{
		{"past the end", 0, size - 512, 1024},
		{"oversize", 0, 0, maxPayload + 1},
		{"unknown flag", cmdFlagReqOne, 0, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStructuredError(t, rc, cmdRead, tc.flags, tc.off, tc.length, errInval)
		})
	}
	// Writes still get simple replies, and the connection still works.
	if errno, _ := rc.do(cmdWrite, 0, 6*MiB, 4, []byte("abcd")); errno != 0 {
		t.Fatal(fmtErrno(errno))
	}
	got, _, _ := readBack(t, rc.chunks(cmdRead, 0, 6*MiB, 4), 6*MiB, 4)
	if string(got) != "abcd" {
		t.Fatalf("read back %q", got)
	}
}
