package blobapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
)

// memDisk is a Disk in memory whose allocation is whatever was written, so
// a fuzz iteration costs no file system.
type memDisk struct {
	mu      sync.Mutex
	data    []byte
	written []Range
}

func (d *memDisk) Size() int64 { return int64(len(d.data)) }
func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return copy(p, d.data[off:]), nil
}
func (d *memDisk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.written = append(d.written, Range{Off: off, Len: int64(len(p))})
	return copy(d.data[off:], p), nil
}
func (d *memDisk) Zero(off, n int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.data[off : off+n])
	return nil
}
func (d *memDisk) Flush() error { return nil }
func (d *memDisk) Allocated() ([]Range, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Range{{Off: 3000, Len: 1}, {Off: 9000, Len: 20000}}, d.written...), nil
}

// fuzzDiskSize is not a multiple of the page size, so the last page is short.
const fuzzDiskSize = 64<<10 + 100

// FuzzRangeHeader sends Get Blob, Put Page and Get Page Ranges with fuzzed
// x-ms-range or Range headers and body lengths. The handler never answers
// 5xx; a 206 carries exactly the bytes its Content-Range names; a 201 wrote
// exactly the pages its range names; a page list is whole pages inside the
// disk, sorted and merged.
func FuzzRangeHeader(f *testing.F) {
	for _, s := range []struct {
		op     uint8
		xms    bool
		value  string
		length int64
	}{
		{0, true, "bytes=0-511", 0}, {0, false, "bytes=100-", 0}, {0, true, "bytes=0-99999999", 0},
		{0, true, "bytes=-5", 0}, {0, false, "bytes=5-4", 0}, {0, true, "bytes=65636-", 0},
		{0, true, "bytes=0-1,4-5", 0}, {0, true, "bytes=9223372036854775807-", 0}, {0, false, " bytes=1-2 ", 0},
		{1, true, "bytes=0-511", 512}, {1, true, "bytes=512-", 1024}, {1, true, "bytes=512-1023", 511},
		{1, true, "bytes=65024-65535", 512}, {1, true, "bytes=65536-66047", 512}, {1, true, "bytes=9223372036854775296-", 512},
		{1, false, "bytes=1-512", 512}, {2, true, "bytes=0-4095", 0}, {2, true, "bytes=0-", -1},
		{3, true, "bytes=2000-", 0}, {3, false, "bytes=65635-65635", 0}, {3, true, "bytes=99999-", 0},
	} {
		f.Add(s.op, s.xms, s.value, s.length)
	}
	clk := clock.NewFake(testStart)
	signer := Signer{Key: bytes.Repeat([]byte{7}, MinKeyLen), Clock: clk}
	d := &memDisk{data: make([]byte, fuzzDiskSize)}
	h := NewHandler(signer, func(context.Context, Grant) (Disk, func(), error) { return d, nil, nil }, nil)
	sas, err := url.Parse(signer.URL("https://coffer.test", Grant{AccessID: "a1", ResourceID: testResource, Write: true, Expires: testStart.Add(time.Hour)}))
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, op uint8, xms bool, value string, length int64) {
		header := "Range"
		if xms {
			header = "x-ms-range"
		}
		u := *sas
		method, mode := http.MethodGet, ""
		switch op % 4 {
		case 1:
			method, mode = http.MethodPut, "update"
			u.RawQuery += "&comp=page"
		case 2:
			method, mode = http.MethodPut, "clear"
			u.RawQuery += "&comp=page"
		case 3:
			u.RawQuery += "&comp=pagelist"
		}
		var body io.Reader = http.NoBody
		var payload []byte
		if mode == "update" && length > 0 {
			payload = bytes.Repeat([]byte{byte(length)}, int(min(length, 2*MaxPutPage)))
			body = bytes.NewReader(payload)
		}
		req := httptest.NewRequest(method, u.String(), body)
		req.ContentLength = length
		req.Header.Set(header, value)
		if mode != "" {
			req.Header.Set("x-ms-page-write", mode)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %s=%q length %d: %d %s", method, mode, header, value, length, w.Code, w.Body)
		}
		switch {
		case w.Code == http.StatusPartialContent:
			var s, e, size int64
			if _, err := fmt.Sscanf(w.Header().Get("Content-Range"), "bytes %d-%d/%d", &s, &e, &size); err != nil {
				t.Fatalf("Content-Range %q: %v", w.Header().Get("Content-Range"), err)
			}
			if size != fuzzDiskSize || s < 0 || e < s || e >= size {
				t.Fatalf("%q: Content-Range %q outside the disk", value, w.Header().Get("Content-Range"))
			}
			if !bytes.Equal(w.Body.Bytes(), d.data[s:e+1]) || w.Header().Get("Content-Length") != strconv.FormatInt(e-s+1, 10) {
				t.Fatalf("%q: %d bytes for range %d-%d", value, w.Body.Len(), s, e)
			}
		case w.Code == http.StatusCreated:
			start, end, ok := parseRange(value)
			if !ok {
				t.Fatalf("%q: written though it does not parse", value)
			}
			if end < 0 {
				end = start + length - 1
			}
			if start%PageSize != 0 || (end+1)%PageSize != 0 || end >= fuzzDiskSize {
				t.Fatalf("%q: wrote %d-%d, which is not whole pages of the disk", value, start, end)
			}
			want := payload
			if mode == "clear" {
				want = make([]byte, end-start+1)
			}
			if !bytes.Equal(d.data[start:end+1], want) {
				t.Fatalf("%s %q: the disk does not hold what was written", mode, value)
			}
		case w.Code == http.StatusOK && op%4 == 3:
			var list struct {
				Ranges []struct{ Start, End int64 } `xml:"PageRange"`
			}
			if err := xml.Unmarshal(w.Body.Bytes(), &list); err != nil {
				t.Fatalf("page list: %v: %s", err, w.Body)
			}
			prev := int64(-1)
			for _, r := range list.Ranges {
				if r.Start <= prev || r.End < r.Start || r.End >= fuzzDiskSize || r.Start%PageSize != 0 ||
					((r.End+1)%PageSize != 0 && r.End != fuzzDiskSize-1) {
					t.Fatalf("%q: page list %+v", value, list.Ranges)
				}
				prev = r.End + 1
			}
		}
		if len(d.written) > 64 {
			d.written = d.written[:0]
		}
	})
}

// FuzzPageRanges checks pageRanges on fuzzed lists (16 bytes a range: Off,
// Len) and windows: the result is sorted, merged, inside [lo, hi), page
// aligned except where the window cuts it, and covers every byte of the
// window that an input range covers.
func FuzzPageRanges(f *testing.F) {
	enc := func(rs ...Range) []byte {
		b := make([]byte, 0, 16*len(rs))
		for _, r := range rs {
			b = binary.BigEndian.AppendUint64(b, uint64(r.Off))
			b = binary.BigEndian.AppendUint64(b, uint64(r.Len))
		}
		return b
	}
	f.Add(enc(Range{0, 512}), int64(0), int64(1<<20))
	f.Add(enc(Range{4096, 1}, Range{0, 100}, Range{100, 412}), int64(0), int64(8192))
	f.Add(enc(Range{-1, 2}, Range{1 << 62, 1 << 62}), int64(0), int64(1<<62))
	f.Add(enc(Range{9000, 20000}, Range{3000, 1}), int64(1000), int64(12000))
	f.Add(enc(Range{0, -5}, Range{512, 0}), int64(512), int64(100))
	f.Add(enc(Range{1<<63 - 1, 1<<63 - 1}), int64(0), int64(1<<63-1))
	f.Fuzz(func(t *testing.T, raw []byte, lo, hi int64) {
		if lo < 0 || hi < 0 || len(raw) > 16*64 {
			return // the handler's windows are offsets into a disk
		}
		var in []Range
		for ; len(raw) >= 16; raw = raw[16:] {
			in = append(in, Range{Off: int64(binary.BigEndian.Uint64(raw)), Len: int64(binary.BigEndian.Uint64(raw[8:]))})
		}
		out := pageRanges(append([]Range(nil), in...), lo, hi)
		var prevEnd int64 = -1
		for _, r := range out {
			end := r.Off + r.Len
			if r.Len <= 0 || r.Off < lo || end > hi || end < r.Off {
				t.Fatalf("range %+v outside [%d, %d)", r, lo, hi)
			}
			if r.Off <= prevEnd {
				t.Fatalf("%+v: not sorted and merged", out)
			}
			if (r.Off%PageSize != 0 && r.Off != lo) || (end%PageSize != 0 && end != hi) {
				t.Fatalf("range %+v is not whole pages of [%d, %d)", r, lo, hi)
			}
			prevEnd = end
		}
		covered := func(x int64) bool {
			for _, r := range out {
				if x >= r.Off && x-r.Off < r.Len {
					return true
				}
			}
			return false
		}
		for _, r := range in {
			if r.Len <= 0 {
				continue
			}
			first := max(r.Off, lo)
			var last int64 // the last byte of r, saturating
			if r.Off > 0 && r.Len > (1<<63-1)-r.Off {
				last = 1<<63 - 1
			} else {
				last = r.Off + r.Len - 1
			}
			last = min(last, hi-1)
			if first > last {
				continue
			}
			if !covered(first) || !covered(last) {
				t.Fatalf("input %+v within [%d, %d) is not covered by %+v", r, lo, hi, out)
			}
		}
	})
}

// sasKey is the key FuzzSASVerify's signer holds; the fuzzer mutates
// queries, it cannot compute MACs with it.
var sasKey = []byte(strings.Repeat("fuzz-sas-key-", 3))

// sasIssued are the only grants signed with sasKey.
var sasIssued = []Grant{
	{AccessID: "0123456789abcdef0123456789abcdef", ResourceID: testResource, Write: false, Expires: testStart.Add(time.Hour)},
	{AccessID: "a", ResourceID: otherDisk, Write: true, Expires: testStart.Add(24 * time.Hour)},
	{AccessID: "b", ResourceID: "", Write: true, Expires: testStart.Add(time.Minute)},
	{AccessID: "c", ResourceID: testResource, Write: true, Expires: testStart.Add(-time.Minute)}, // expired
}

// FuzzSASVerify checks fuzzed SAS queries. Verify never panics, refuses
// with AuthenticationFailed, and accepts only a grant that was issued with
// the key, unchanged and unexpired.
func FuzzSASVerify(f *testing.F) {
	signer := Signer{Key: sasKey, Clock: clock.NewFake(testStart)}
	for _, g := range sasIssued {
		u, err := url.Parse(signer.URL("https://coffer.test", g))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(g.AccessID, u.RawQuery)
		f.Add(g.AccessID+"x", u.RawQuery)
		f.Add(g.AccessID, strings.Replace(u.RawQuery, "sp=r", "sp=rw", 1))
		f.Add(g.AccessID, u.RawQuery+"&sig=x")
	}
	f.Add("a", "sv=2018-03-28&sr=b&sp=r&se=2030-01-02T04%3A04%3A05Z&sig=")
	f.Add("", "")
	f.Add("a", "%zz")
	f.Fuzz(func(t *testing.T, accessID, rawQuery string) {
		q, _ := url.ParseQuery(rawQuery)
		g, err := signer.Verify(accessID, q)
		if err != nil {
			var e *errs.Error
			if !errors.As(err, &e) || e.Code != codeAuthenticationFailed || e.Kind != errs.Forbidden {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		for _, want := range sasIssued {
			if g == want && want.Expires.After(testStart) {
				return
			}
		}
		t.Fatalf("accepted a grant nobody issued: %+v from %q", g, rawQuery)
	})
}
