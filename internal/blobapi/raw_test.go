package blobapi

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// rawRequest is one hand-made request against a fresh 8 MiB disk.
type rawRequest struct {
	write   bool
	method  string
	path    func(accessID string) string // default /sas/<id>/abcd
	query   func(q url.Values)           // edits the SAS query
	header  map[string]string
	body    []byte
	chunked bool // send the body without Content-Length
}

func (e *testEnv) do(t *testing.T, rq rawRequest) *http.Response {
	t.Helper()
	g, sas := e.issue(testResource, rq.write, time.Hour)
	u, err := url.Parse(sas)
	if err != nil {
		t.Fatal(err)
	}
	if rq.path != nil {
		u.Path = rq.path(g.AccessID)
	}
	q := u.Query()
	if rq.query != nil {
		rq.query(q)
	}
	u.RawQuery = q.Encode()
	method := rq.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if rq.body != nil {
		body = bytes.NewReader(rq.body)
		if rq.chunked {
			body = io.MultiReader(body) // hides the length from net/http
		}
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func putPage(mode, rng string, extra ...string) map[string]string {
	h := map[string]string{"x-ms-page-write": mode, "x-ms-range": rng}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

func setQuery(k, v string) func(url.Values) { return func(q url.Values) { q.Set(k, v) } }

// TestRawErrors checks status, code and the exact shape of Azure's error XML
// for requests the SDK would never send.
func TestRawErrors(t *testing.T) {
	const size = 8 * mib
	page := make([]byte, 512)
	comp := setQuery("comp", "page")
	for _, tc := range []struct {
		name   string
		req    rawRequest
		status int
		code   string
		check  func(t *testing.T, resp *http.Response)
	}{
		{"unaligned start", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=1-512"), body: page},
			400, "InvalidHeaderValue", nil},
		{"unaligned end", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-510"), body: page[:511]},
			400, "InvalidHeaderValue", nil},
		{"unaligned clear", rawRequest{write: true, method: "PUT", query: comp, header: putPage("clear", "bytes=512-1000")},
			400, "InvalidHeaderValue", nil},
		{"body longer than the range", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-511"), body: make([]byte, 1024)},
			400, "InvalidHeaderValue", nil},
		{"body shorter than the range", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-1023"), body: page},
			400, "InvalidHeaderValue", nil},
		{"body without Content-Length", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-511"), body: page, chunked: true},
			411, "MissingContentLengthHeader", nil},
		{"more than 4 MiB", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-"+strconv.FormatInt(4*mib+511, 10)), body: make([]byte, 4*mib+512)},
			413, "RequestBodyTooLarge", nil},
		{"clear with a body", rawRequest{write: true, method: "PUT", query: comp, header: putPage("clear", "bytes=0-511"), body: page},
			400, "InvalidHeaderValue", nil},
		{"no x-ms-page-write", rawRequest{write: true, method: "PUT", query: comp, header: map[string]string{"x-ms-range": "bytes=0-511"}, body: page},
			400, "MissingRequiredHeader", nil},
		{"bad x-ms-page-write", rawRequest{write: true, method: "PUT", query: comp, header: putPage("append", "bytes=0-511"), body: page},
			400, "InvalidHeaderValue", nil},
		{"put page without a range", rawRequest{write: true, method: "PUT", query: comp, header: map[string]string{"x-ms-page-write": "update"}, body: page},
			400, "MissingRequiredHeader", nil},
		{"put page past the end", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes="+strconv.FormatInt(size, 10)+"-"+strconv.FormatInt(size+511, 10)), body: page},
			416, "InvalidPageRange", nil},
		{"bad Content-MD5", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-511", "Content-MD5", "bm90LW1kNQ=="), body: page},
			400, "InvalidMd5", nil},
		{"sequence number condition", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-511", "x-ms-if-sequence-number-eq", "5"), body: page},
			412, "SequenceNumberConditionNotMet", nil},
		{"If-None-Match * on a write", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-511", "If-None-Match", "*"), body: page},
			412, "ConditionNotMet", nil},
		{"structured body", rawRequest{write: true, method: "PUT", query: comp, header: putPage("update", "bytes=0-511", "x-ms-structured-body", "XSM/1.0; properties=crc64"), body: page},
			400, "UnsupportedHeader", nil},
		{"write through a read SAS", rawRequest{method: "PUT", query: comp, header: putPage("update", "bytes=0-511"), body: page},
			403, "AuthorizationPermissionMismatch", nil},
		{"range starting at the size", rawRequest{header: map[string]string{"Range": "bytes=" + strconv.FormatInt(size, 10) + "-"}},
			416, "InvalidRange", func(t *testing.T, resp *http.Response) {
				if got, want := resp.Header.Get("Content-Range"), "bytes */"+strconv.FormatInt(size, 10); got != want {
					t.Errorf("Content-Range = %q, want %q", got, want)
				}
			}},
		{"range ending before it starts", rawRequest{header: map[string]string{"Range": "bytes=10-5"}}, 416, "InvalidRange", nil},
		{"suffix range", rawRequest{header: map[string]string{"Range": "bytes=-10"}}, 416, "InvalidRange", nil},
		{"two ranges", rawRequest{header: map[string]string{"Range": "bytes=0-1,4-5"}}, 416, "InvalidRange", nil},
		{"not bytes", rawRequest{header: map[string]string{"Range": "pages=0-1"}}, 416, "InvalidRange", nil},
		{"x-ms-range wins over Range", rawRequest{header: map[string]string{"Range": "bytes=0-1", "x-ms-range": "bytes=99999999999-"}}, 416, "InvalidRange", nil},
		{"range MD5 over 4 MiB", rawRequest{header: map[string]string{"x-ms-range": "bytes=0-" + strconv.FormatInt(4*mib, 10), "x-ms-range-get-content-md5": "true"}},
			400, "OutOfRangeInput", nil},
		{"DELETE", rawRequest{write: true, method: "DELETE"}, 405, "UnsupportedHttpVerb", func(t *testing.T, resp *http.Response) {
			if got := resp.Header.Get("Allow"); got != "GET, HEAD, PUT" {
				t.Errorf("Allow = %q", got)
			}
		}},
		{"POST", rawRequest{method: "POST"}, 405, "UnsupportedHttpVerb", nil},
		{"Put Blob", rawRequest{write: true, method: "PUT", body: page}, 405, "UnsupportedHttpVerb", nil},
		{"unknown comp", rawRequest{query: setQuery("comp", "blocklist")}, 400, "InvalidQueryParameterValue", nil},
		{"PUT comp=properties", rawRequest{write: true, method: "PUT", query: setQuery("comp", "properties")}, 400, "InvalidQueryParameterValue", nil},
		{"snapshot query", rawRequest{query: setQuery("snapshot", "2030-01-01T00:00:00Z")}, 400, "UnsupportedQueryParameter", nil},
		{"maxresults 0", rawRequest{query: func(q url.Values) { q.Set("comp", "pagelist"); q.Set("maxresults", "0") }}, 400, "OutOfRangeQueryParameterValue", nil},
		{"marker not a number", rawRequest{query: func(q url.Values) { q.Set("comp", "pagelist"); q.Set("marker", "abc") }}, 400, "InvalidQueryParameterValue", nil},
		{"prevsnapshot and header", rawRequest{query: func(q url.Values) { q.Set("comp", "pagelist"); q.Set("prevsnapshot", "a") },
			header: map[string]string{"x-ms-previous-snapshot-url": "b"}}, 400, "InvalidInput", nil},
		{"another blob name", rawRequest{path: func(id string) string { return "/sas/" + id + "/efgh" }}, 404, "BlobNotFound", nil},
		{"no such route", rawRequest{path: func(string) string { return "/elsewhere" }}, 400, "InvalidUri", nil},
		{"missing sig", rawRequest{query: func(q url.Values) { q.Del("sig") }}, 403, "AuthenticationFailed", nil},
		{"sp twice", rawRequest{query: func(q url.Values) { q.Add("sp", "rw") }}, 403, "AuthenticationFailed", nil},
		{"sp widened", rawRequest{method: "PUT", query: func(q url.Values) { q.Set("sp", "rw"); q.Set("comp", "page") }, header: putPage("update", "bytes=0-511"), body: page},
			403, "AuthenticationFailed", nil},
		{"access id swapped", rawRequest{path: func(string) string { return "/sas/00000000000000000000000000000000/abcd" }}, 403, "AuthenticationFailed", nil},
		{"HEAD refused", rawRequest{method: "HEAD", query: setQuery("sig", "AAAA")}, 403, "AuthenticationFailed", func(t *testing.T, resp *http.Response) {
			if b, _ := io.ReadAll(resp.Body); len(b) != 0 {
				t.Errorf("HEAD error has a body: %q", b)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.addDisk(testResource, newFileDisk(t, size, e.clock))
			resp := e.do(t, tc.req)
			if resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("x-ms-error-code"); got != tc.code {
				t.Errorf("x-ms-error-code = %q, want %q", got, tc.code)
			}
			id := resp.Header.Get("x-ms-request-id")
			if len(id) != 36 {
				t.Errorf("x-ms-request-id = %q", id)
			}
			if resp.Header.Get("x-ms-version") == "" {
				t.Error("no x-ms-version")
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
			if tc.req.method == "HEAD" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/xml" {
				t.Errorf("Content-Type = %q", ct)
			}
			checkErrorBody(t, resp, tc.code, id)
		})
	}
}

// checkErrorBody parses Azure's error XML and checks the parts clients and
// people rely on: the declaration, the code, and the RequestId and Time lines.
func checkErrorBody(t *testing.T, resp *http.Response, code, requestID string) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	const decl = `<?xml version="1.0" encoding="utf-8"?><Error><Code>`
	if !bytes.HasPrefix(body, []byte(decl)) {
		t.Fatalf("body does not start with %s: %s", decl, body)
	}
	var parsed struct {
		XMLName xml.Name `xml:"Error"`
		Code    string
		Message string
	}
	if err := xml.Unmarshal(body, &parsed); err != nil {
		t.Fatalf("error body is not XML: %v\n%s", err, body)
	}
	if parsed.Code != code {
		t.Errorf("Code = %q, want %q", parsed.Code, code)
	}
	tail := "\nRequestId:" + requestID + "\nTime:2030-01-02T03:04:05.0000000Z"
	if !strings.HasSuffix(parsed.Message, tail) || len(parsed.Message) == len(tail) {
		t.Errorf("Message = %q, want text ending in %q", parsed.Message, tail)
	}
}

// TestErrorBodyExact pins the bytes of one error body, Azure's
// AuthenticationFailed for a forged signature.
func TestErrorBodyExact(t *testing.T) {
	e := newTestEnv(t)
	e.addDisk(testResource, newFileDisk(t, mib, e.clock))
	resp := e.do(t, rawRequest{query: setQuery("sig", "forged")})
	body, _ := io.ReadAll(resp.Body)
	want := `<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>` +
		`<Message>Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.` +
		"\nRequestId:" + resp.Header.Get("x-ms-request-id") + "\nTime:2030-01-02T03:04:05.0000000Z</Message>" +
		`<AuthenticationErrorDetail>Signature did not match.</AuthenticationErrorDetail></Error>`
	if string(body) != want {
		t.Errorf("body =\n%s\nwant\n%s", body, want)
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
		t.Errorf("Content-Length = %s, want %d", got, len(want))
	}
}

// TestRawSuccess covers response details the SDK does not surface.
func TestRawSuccess(t *testing.T) {
	e := newTestEnv(t)
	e.addDisk(testResource, newFileDisk(t, 8*mib, e.clock))
	data := randomBytes(9, 1024)
	put := e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: putPage("update", "bytes=1024-2047", "Range", "bytes=0-1023", "Content-MD5", "ZHVtbXk="), body: data})
	// A bad MD5 must fail, so send none to check the success headers.
	if put.StatusCode != 400 {
		t.Fatalf("short Content-MD5 accepted: %d", put.StatusCode)
	}
	put = e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: putPage("update", "bytes=1024-2047", "Range", "bytes=0-1023"), body: data})
	if put.StatusCode != http.StatusCreated {
		t.Fatalf("Put Page status %d", put.StatusCode)
	}
	for h, want := range map[string]string{
		"x-ms-request-server-encrypted": "true",
		"x-ms-blob-sequence-number":     "0",
		"Date":                          "Wed, 02 Jan 2030 03:04:05 GMT",
	} {
		if got := put.Header.Get(h); got != want {
			t.Errorf("Put Page %s = %q, want %q", h, got, want)
		}
	}
	etag := put.Header.Get("ETag")
	if etag == "" || put.Header.Get("Last-Modified") == "" {
		t.Error("Put Page without ETag or Last-Modified")
	}

	// x-ms-range wins: the write went to 1024, not 0.
	get := e.do(t, rawRequest{header: map[string]string{"Range": "bytes=0-1023", "x-ms-range": "bytes=1024-2047"}})
	got, _ := io.ReadAll(get.Body)
	if get.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data) {
		t.Errorf("ranged GET: status %d, data equal %v", get.StatusCode, bytes.Equal(got, data))
	}
	if cr := get.Header.Get("Content-Range"); cr != "bytes 1024-2047/8388608" {
		t.Errorf("Content-Range = %q", cr)
	}

	head := e.do(t, rawRequest{method: "HEAD"})
	for h, want := range map[string]string{
		"Content-Length": "8388608",
		"x-ms-blob-type": "PageBlob",
		"Accept-Ranges":  "bytes",
		"Content-Type":   "application/octet-stream",
		"ETag":           etag,
	} {
		if got := head.Header.Get(h); got != want {
			t.Errorf("HEAD %s = %q, want %q", h, got, want)
		}
	}

	notModified := e.do(t, rawRequest{header: map[string]string{"If-None-Match": etag}})
	if notModified.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match current ETag: status %d, want 304", notModified.StatusCode)
	}

	list := e.do(t, rawRequest{query: setQuery("comp", "pagelist")})
	body, _ := io.ReadAll(list.Body)
	// ext4 and most file systems allocate 4 KiB blocks, so the run is at least
	// that page's block; the exact bytes pin the format.
	want := `<?xml version="1.0" encoding="utf-8"?><PageList><PageRange><Start>0</Start><End>4095</End></PageRange></PageList>`
	if string(body) != want {
		t.Errorf("page list =\n%s\nwant\n%s", body, want)
	}
	if got := list.Header.Get("x-ms-blob-content-length"); got != "8388608" {
		t.Errorf("x-ms-blob-content-length = %q", got)
	}

	open := e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: putPage("update", "bytes=8192-"), body: data[:512]})
	if open.StatusCode != http.StatusCreated {
		t.Errorf("open-ended Put Page: status %d, want 201", open.StatusCode)
	}
	openClear := e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: putPage("clear", "bytes=8192-")})
	if openClear.StatusCode != http.StatusBadRequest {
		t.Errorf("open-ended clear: status %d, want 400", openClear.StatusCode)
	}
	clear8k := e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: putPage("clear", "bytes=8192-12287")})
	if clear8k.StatusCode != http.StatusCreated {
		t.Errorf("clear: status %d", clear8k.StatusCode)
	}

	clearResp := e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: putPage("clear", "bytes=0-4095")})
	if clearResp.StatusCode != http.StatusCreated {
		t.Fatalf("clear status %d", clearResp.StatusCode)
	}
	list = e.do(t, rawRequest{query: setQuery("comp", "pagelist")})
	body, _ = io.ReadAll(list.Body)
	if want := `<?xml version="1.0" encoding="utf-8"?><PageList></PageList>`; string(body) != want {
		t.Errorf("page list after clear = %s", body)
	}
}

// TestInternalErrors checks that a failure inside coffer is a generic 500
// (or 503 when transient) whose detail goes to the log, not the client.
func TestInternalErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"plain error", errors.New("database on fire: secret-detail"), 500, "InternalError"},
		{"internal kind", errs.E(errs.Internal, "MetaBroken", "secret-detail"), 500, "InternalError"},
		{"transient", errs.E(errs.Transient, "MetaBusy", "try later").Wrap(errors.New("secret-detail")), 503, "ServerBusy"},
		{"not found", errs.E(errs.NotFound, "DiskNotFound", "gone"), 404, "BlobNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.setLookupErr(tc.err)
			resp := e.do(t, rawRequest{})
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || resp.Header.Get("x-ms-error-code") != tc.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, resp.Header.Get("x-ms-error-code"), tc.status, tc.code)
			}
			if strings.Contains(string(body), "secret-detail") {
				t.Errorf("internal detail sent to the client: %s", body)
			}
			if tc.status == 500 && !strings.Contains(e.logs.String(), "secret-detail") {
				t.Errorf("internal detail not logged: %s", e.logs.String())
			}
		})
	}
}

// flushWatch is a fileDisk that counts Flush calls and can make them fail,
// to check that no 201 goes out before the pages are durable.
type flushWatch struct {
	*fileDisk
	flushes  atomic.Int64
	failWith error
}

func (d *flushWatch) Flush() error {
	d.flushes.Add(1)
	if d.failWith != nil {
		return d.failWith
	}
	return d.fileDisk.Flush()
}

func TestPutPageFlushesBeforeCreated(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		body   []byte
	}{
		{"update", putPage("update", "bytes=0-511"), make([]byte, 512)},
		{"clear", putPage("clear", "bytes=0-511"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			d := &flushWatch{fileDisk: newFileDisk(t, mib, e.clock)}
			e.addDisk(testResource, d)
			resp := e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: tc.header, body: tc.body})
			if resp.StatusCode != http.StatusCreated || d.flushes.Load() != 1 {
				t.Errorf("status %d after %d flushes, want 201 after 1", resp.StatusCode, d.flushes.Load())
			}
			d.failWith = errors.New("disk full: secret-detail")
			resp = e.do(t, rawRequest{write: true, method: "PUT", query: setQuery("comp", "page"), header: tc.header, body: tc.body})
			if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("x-ms-error-code") != "InternalError" {
				t.Errorf("failed flush answered %d %s, want 500 InternalError", resp.StatusCode, resp.Header.Get("x-ms-error-code"))
			}
			if !strings.Contains(e.logs.String(), "secret-detail") {
				t.Error("flush failure not logged")
			}
		})
	}
}
