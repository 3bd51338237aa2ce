package blobapi

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// Page blob limits, Azure's.
const (
	// PageSize is the unit every Put Page range is aligned to.
	PageSize = 512
	// MaxPutPage is the most one Put Page update may carry, and the largest
	// range a Get Blob may ask a checksum of.
	MaxPutPage = 4 << 20
	// readChunk bounds the memory one streaming Get Blob holds, whatever the
	// size of the disk.
	readChunk = 1 << 20
	// crc64Poly is the polynomial Azure Storage uses for x-ms-content-crc64.
	crc64Poly = 0x9A6C9329AC4BC9B5
)

// Range is a byte range of a disk: Len bytes from Off.
type Range struct{ Off, Len int64 }

// Disk is what the handler reads and writes: one disk or snapshot as a flat
// array of Size bytes. Lookup may hand the same Disk to concurrent requests,
// so every method must be safe for concurrent use.
type Disk interface {
	// Size is the length in bytes; fixed for the life of a Lookup.
	Size() int64
	// ReadAt reads len(p) bytes at off, within [0, Size). Unwritten or
	// zeroed bytes read as zero. io.EOF with a full read is tolerated.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt writes p at off, within [0, Size). It need not be durable
	// until Flush returns.
	WriteAt(p []byte, off int64) (int, error)
	// Zero makes [off, off+n) read as zero and, ideally, unallocated.
	Zero(off, n int64) error
	// Flush makes every write and zero that completed before the call
	// durable. The handler calls it before each 201, so an implementation
	// serving many concurrent writers should coalesce overlapping calls
	// (group commit) rather than sync once per caller.
	Flush() error
	// Allocated lists ranges that may hold non-zero data, in any order and
	// at any granularity: reporting too much is safe, too little loses
	// data for clients that copy only what is listed.
	Allocated() ([]Range, error)
}

// Differ is implemented by a Disk that can list what changed since an
// earlier snapshot, for Get Page Ranges with prevsnapshot or
// x-ms-previous-snapshot-url (incremental snapshot export).
type Differ interface {
	// ChangedSince lists ranges that may differ from prev: the value of
	// prevsnapshot as the client sent it (on Azure, a snapshot timestamp),
	// or the resource id that a verified x-ms-previous-snapshot-url grants
	// (the handler checks that URL's signature and expiry first; an
	// implementation never sees a URL). An unknown prev is an errs.Conflict
	// error with code "PreviousSnapshotNotFound", which clients know from
	// Azure.
	ChangedSince(prev string) ([]Range, error)
}

// Versioned is implemented by a Disk that knows when its content changed.
// Without it the ETag is fixed per access and Last-Modified is the time of
// the request, which keeps downloads working but makes If-Match useless
// across writers.
type Versioned interface {
	// Version returns an opaque tag that changes whenever content changes,
	// and the time of that change.
	Version() (etag string, modified time.Time)
}

// Lookup resolves a verified grant to its disk. It is asked on every request
// so that revocation takes effect at once: when the access id was revoked
// (endGetAccess), has expired in the caller's records, or the resource is
// gone, it returns an errs.Forbidden error. release, if not nil, is called
// once the request no longer uses the disk.
type Lookup func(ctx context.Context, g Grant) (disk Disk, release func(), err error)

// handler serves the page blob API; see the package documentation.
type handler struct {
	signer Signer
	lookup Lookup
	log    *slog.Logger
	crc    *crc64.Table
	chunks sync.Pool // *[]byte of readChunk, reused across streaming reads
	pages  sync.Pool // *[]byte of MaxPutPage, reused across Put Page bodies
}

// NewHandler returns the page blob data plane, serving /sas/{accessID}/{blob}.
// A nil logger discards.
func NewHandler(s Signer, lookup Lookup, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{signer: s, lookup: lookup, log: logger, crc: crc64.MakeTable(crc64Poly)}
	h.chunks.New = func() any { b := make([]byte, readChunk); return &b }
	h.pages.New = func() any { b := make([]byte, MaxPutPage); return &b }
	mux := http.NewServeMux()
	mux.HandleFunc("/sas/{accessID}/{blob}", h.serveBlob)
	mux.HandleFunc("/", h.serveOther)
	return mux
}

// call is one request in flight.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	id    string // x-ms-request-id
	now   time.Time
	op    string
	grant Grant
}

// operation is one served Page Blob API call.
type operation struct {
	name  string
	write bool
	serve func(h *handler, c *call, d Disk, q url.Values) error
}

func (h *handler) begin(w http.ResponseWriter, r *http.Request) *call {
	c := &call{w: w, r: r, id: newRequestID(), now: h.now()}
	hd := w.Header()
	hd.Set("x-ms-request-id", c.id)
	hd.Set("x-ms-version", responseVersion(r.Header.Get("x-ms-version")))
	hd.Set("Date", c.now.Format(http.TimeFormat))
	if cid := r.Header.Get("x-ms-client-request-id"); cid != "" && len(cid) <= 1024 && printable(cid) {
		hd.Set("x-ms-client-request-id", cid)
	}
	return c
}

func (h *handler) now() time.Time {
	if h.signer.Clock == nil {
		return time.Time{} // Verify fails every request; see Signer
	}
	return h.signer.Clock.Now().UTC()
}

func (h *handler) serveOther(w http.ResponseWriter, r *http.Request) {
	c := h.begin(w, r)
	h.fail(c, blobErr(codeInvalidURI))
}

func (h *handler) serveBlob(w http.ResponseWriter, r *http.Request) {
	c := h.begin(w, r)
	if err := h.serve(c); err != nil {
		h.fail(c, err)
	}
}

// serve runs a request up to the point the response starts; an error it
// returns is sent as Azure error XML. After the response has started,
// operations log failures themselves and return nil.
func (h *handler) serve(c *call) error {
	q, err := url.ParseQuery(c.r.URL.RawQuery)
	if err != nil {
		return blobErr(codeInvalidURI)
	}
	g, err := h.signer.Verify(c.r.PathValue("accessID"), q)
	if err != nil {
		return err
	}
	c.grant = g
	if c.r.PathValue("blob") != BlobName {
		return blobErr(codeBlobNotFound)
	}
	op, err := route(c.r.Method, q)
	if err != nil {
		if errs.Is(err, errs.MethodNotAllowed) {
			c.w.Header().Set("Allow", "GET, HEAD, PUT")
		}
		return err
	}
	c.op = op.name
	if op.write && !g.Write {
		return blobErr(codeAuthorizationPermissionMismatch)
	}
	if err := refuseUnsupported(c.r, q); err != nil {
		return err
	}
	if h.lookup == nil {
		return errs.E(errs.Internal, codeInternalError, "no Lookup").Wrap(errors.New("blobapi: NewHandler was given a nil Lookup"))
	}
	d, release, err := h.lookup(c.r.Context(), g)
	if err != nil {
		if errs.Is(err, errs.Forbidden) {
			e := authFailed("The access has been revoked or the resource no longer exists.")
			return e.Wrap(err)
		}
		return err
	}
	if release != nil {
		defer release()
	}
	if d == nil {
		return errs.E(errs.Internal, codeInternalError, "no disk").Wrap(errors.New("blobapi: Lookup returned a nil Disk and no error"))
	}
	if size := d.Size(); size < 0 {
		return errs.E(errs.Internal, codeInternalError, "bad disk size").Wrap(fmt.Errorf("blobapi: Disk.Size() = %d", size))
	}
	return op.serve(h, c, d, q)
}

// route picks the operation for a method and comp. Known methods with a comp
// we do not serve are a bad query parameter; other methods are Azure's
// UnsupportedHttpVerb (405).
func route(method string, q url.Values) (operation, error) {
	comps := q["comp"]
	if len(comps) > 1 {
		return operation{}, queryErr(codeInvalidQueryParameterValue, "comp", strings.Join(comps, ","), "comp is given more than once.")
	}
	comp := q.Get("comp")
	switch method {
	case http.MethodHead:
		if comp == "" {
			return operation{name: "GetBlobProperties", serve: (*handler).getBlob}, nil
		}
	case http.MethodGet:
		switch comp {
		case "":
			return operation{name: "GetBlob", serve: (*handler).getBlob}, nil
		case "pagelist":
			return operation{name: "GetPageRanges", serve: (*handler).getPageRanges}, nil
		}
	case http.MethodPut:
		switch comp {
		case "page":
			return operation{name: "PutPage", write: true, serve: (*handler).putPage}, nil
		case "":
			e := blobErr(codeUnsupportedHTTPVerb)
			e.Message = "Put Blob is not supported on a managed disk; write with Put Page (comp=page)."
			return operation{}, e
		}
	default:
		return operation{}, blobErr(codeUnsupportedHTTPVerb)
	}
	return operation{}, queryErr(codeInvalidQueryParameterValue, "comp", comp, "This comp is not served for "+method+" on a managed disk.")
}

// refuseUnsupported rejects requests whose meaning depends on a feature not
// served here; ignoring them would return or write the wrong bytes.
func refuseUnsupported(r *http.Request, q url.Values) error {
	for _, p := range []string{"snapshot", "versionid"} {
		if v, ok := q[p]; ok {
			return queryErr(codeUnsupportedQueryParameter, p, strings.Join(v, ","), "")
		}
	}
	if r.Header.Get("x-ms-lease-id") != "" {
		return blobErr(codeLeaseNotPresent)
	}
	for _, name := range []string{"x-ms-structured-body", "x-ms-encryption-key", "x-ms-encryption-scope", "x-ms-if-tags"} {
		if v := r.Header.Get(name); v != "" {
			// The value may be a key; never echo it.
			return blobErr(codeUnsupportedHeader, "HeaderName", name)
		}
	}
	return nil
}

// fail writes err as Azure error XML. Internal errors are logged with their
// cause; client errors only at debug level.
func (h *handler) fail(c *call, err error) {
	status, code, msg, details := wire(err)
	attrs := []any{"request_id", c.id, "op", c.op, "method", c.r.Method, "path", c.r.URL.Path, "status", status, "code", code, "err", err}
	if status >= 500 {
		h.log.Error("blobapi: request failed", attrs...)
	} else {
		h.log.Debug("blobapi: request refused", attrs...)
	}
	writeError(c.w, c.r, status, code, msg, details, c.id, c.now)
}

// version returns the quoted ETag and Last-Modified of d.
func (c *call) version(d Disk) (etag string, modified time.Time) {
	if v, ok := d.(Versioned); ok {
		e, m := v.Version()
		if !strings.HasPrefix(e, `"`) {
			e = `"` + e + `"`
		}
		return e, m.UTC()
	}
	sum := sha256.Sum256([]byte("coffer/blobapi/etag\x00" + c.grant.AccessID))
	return `"0x` + strings.ToUpper(hex.EncodeToString(sum[:7])) + `"`, c.now
}

// blobHeaders are the properties Azure returns with a blob's content and
// properties; clients such as azcopy check x-ms-blob-type before a download.
func blobHeaders(hd http.Header, etag string, modified time.Time) {
	hd.Set("ETag", etag)
	hd.Set("Last-Modified", modified.Format(http.TimeFormat))
	hd.Set("x-ms-blob-type", "PageBlob")
	hd.Set("x-ms-blob-sequence-number", "0")
	hd.Set("x-ms-server-encrypted", "true")
	hd.Set("x-ms-lease-state", "available")
	hd.Set("x-ms-lease-status", "unlocked")
	hd.Set("Accept-Ranges", "bytes")
}

// getBlob serves Get Blob and, for HEAD, Get Blob Properties.
func (h *handler) getBlob(c *call, d Disk, _ url.Values) error {
	size := d.Size()
	etag, modified := c.version(d)
	notModified, err := conditions(c.r, etag, modified, true)
	if err != nil {
		return err
	}
	start, n, status := int64(0), size, http.StatusOK
	hd := c.w.Header()
	hdr, rv, ranged := rangeHeader(c.r)
	head := c.r.Method == http.MethodHead
	if ranged && !head {
		s, e, ok := parseRange(rv)
		if !ok || s >= size {
			hd.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			return blobErr(codeInvalidRange, "HeaderName", hdr, "HeaderValue", rv)
		}
		if e < 0 || e >= size {
			e = size - 1
		}
		start, n, status = s, e-s+1, http.StatusPartialContent
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", s, e, size))
	}
	wantMD5, err := boolHeader(c.r, "x-ms-range-get-content-md5")
	if err != nil {
		return err
	}
	wantCRC, err := boolHeader(c.r, "x-ms-range-get-content-crc64")
	if err != nil {
		return err
	}
	if !head && (wantMD5 || wantCRC) {
		switch {
		case wantMD5 && wantCRC:
			return headerErr(codeInvalidHeaderValue, "x-ms-range-get-content-crc64", "true")
		case !ranged:
			return blobErr(codeMissingRequiredHeader, "HeaderName", "x-ms-range")
		case n > MaxPutPage:
			return headerErr(codeOutOfRangeInput, hdr, rv)
		}
	}
	blobHeaders(hd, etag, modified)
	hd.Set("Content-Type", "application/octet-stream")
	if notModified {
		c.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hd.Set("Content-Length", strconv.FormatInt(n, 10))
	if head {
		c.w.WriteHeader(http.StatusOK)
		return nil
	}
	if wantMD5 || wantCRC {
		// The checksum goes in a header, so the range is read before the
		// response starts; MaxPutPage bounds the buffer.
		bp := h.pages.Get().(*[]byte)
		defer h.pages.Put(bp)
		buf := (*bp)[:n]
		if err := readFull(d, buf, start); err != nil {
			return err
		}
		if wantMD5 {
			sum := md5.Sum(buf)
			hd.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
		} else {
			hd.Set("x-ms-content-crc64", h.crc64(buf))
		}
		c.w.WriteHeader(status)
		_, _ = c.w.Write(buf)
		return nil
	}
	c.w.WriteHeader(status)
	h.stream(c, d, start, n)
	return nil
}

// stream copies [start, start+n) of d to the client a chunk at a time. The
// status line has gone out, so a failure can only be logged; stopping short
// of Content-Length makes the server drop the connection, which clients
// (the SDK's retry reader, azcopy) see and retry.
func (h *handler) stream(c *call, d Disk, start, n int64) {
	bp := h.chunks.Get().(*[]byte)
	defer h.chunks.Put(bp)
	for off, end := start, start+n; off < end; {
		buf := (*bp)[:min(int64(len(*bp)), end-off)]
		if err := readFull(d, buf, off); err != nil {
			h.log.Error("blobapi: read failed mid-stream", "request_id", c.id, "path", c.r.URL.Path, "off", off, "err", err)
			return
		}
		if _, err := c.w.Write(buf); err != nil {
			return // the client went away; nothing to tell it
		}
		off += int64(len(buf))
	}
}

// readFull reads exactly len(p) bytes at off, accepting the io.EOF that
// ReaderAt allows alongside a full read at the end of the disk.
func readFull(d Disk, p []byte, off int64) error {
	n, err := d.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("blobapi: read %d bytes at %d: %w", len(p), off, err)
}

// putPage serves Put Page, update and clear.
func (h *handler) putPage(c *call, d Disk, _ url.Values) error {
	mode := strings.ToLower(c.r.Header.Get("x-ms-page-write"))
	switch mode {
	case "update", "clear":
	case "":
		return blobErr(codeMissingRequiredHeader, "HeaderName", "x-ms-page-write")
	default:
		return headerErr(codeInvalidHeaderValue, "x-ms-page-write", c.r.Header.Get("x-ms-page-write"))
	}
	hdr, rv, ok := rangeHeader(c.r)
	if !ok {
		return blobErr(codeMissingRequiredHeader, "HeaderName", "x-ms-range")
	}
	start, end, ok := parseRange(rv)
	if ok && end < 0 {
		// The open form is Get Blob's; for an update the body says where
		// it ends, which is what a client writing bytes=N- means.
		if mode != "update" || c.r.ContentLength <= 0 {
			ok = false
		} else {
			end = start + c.r.ContentLength - 1
		}
	}
	// Azure answers a malformed or misaligned page range with 400
	// InvalidHeaderValue naming the header, and one past the end with 416
	// InvalidPageRange.
	if !ok || end < start || start%PageSize != 0 || (end+1)%PageSize != 0 {
		return headerErr(codeInvalidHeaderValue, hdr, rv)
	}
	if end >= d.Size() {
		return blobErr(codeInvalidPageRange)
	}
	n := end - start + 1
	if err := sequenceConditions(c.r); err != nil {
		return err
	}
	etag, modified := c.version(d)
	if _, err := conditions(c.r, etag, modified, false); err != nil {
		return err
	}
	var sentMD5, sentCRC string
	switch mode {
	case "update":
		switch {
		case c.r.ContentLength < 0:
			return blobErr(codeMissingContentLength)
		case c.r.ContentLength > MaxPutPage || n > MaxPutPage:
			return blobErr(codeRequestBodyTooLarge, "MaxLimit", strconv.Itoa(MaxPutPage))
		case c.r.ContentLength != n:
			return headerErr(codeInvalidHeaderValue, "Content-Length", strconv.FormatInt(c.r.ContentLength, 10))
		}
		var wantMD5, wantCRC []byte
		if sentMD5 = c.r.Header.Get("Content-MD5"); sentMD5 != "" {
			b, err := base64.StdEncoding.DecodeString(sentMD5)
			if err != nil || len(b) != md5.Size {
				return blobErr(codeInvalidMd5)
			}
			wantMD5 = b
		}
		if sentCRC = c.r.Header.Get("x-ms-content-crc64"); sentCRC != "" {
			b, err := base64.StdEncoding.DecodeString(sentCRC)
			if err != nil || len(b) != 8 {
				return headerErr(codeInvalidHeaderValue, "x-ms-content-crc64", sentCRC)
			}
			wantCRC = b
		}
		bp := h.pages.Get().(*[]byte)
		defer h.pages.Put(bp)
		buf := (*bp)[:n]
		if _, err := io.ReadFull(c.r.Body, buf); err != nil {
			// Short body: the client sent less than its Content-Length,
			// or went away. Nothing was written.
			return errs.E(errs.Invalid, codeInvalidInput, "The request body is shorter than Content-Length.").Wrap(err)
		}
		if wantMD5 != nil {
			if sum := md5.Sum(buf); !bytes.Equal(sum[:], wantMD5) {
				return blobErr(codeMd5Mismatch)
			}
		}
		if wantCRC != nil {
			if sum := h.crc64Sum(buf); !bytes.Equal(sum[:], wantCRC) {
				return blobErr(codeCrc64Mismatch)
			}
		}
		if _, err := d.WriteAt(buf, start); err != nil {
			return fmt.Errorf("blobapi: write %d bytes at %d: %w", n, start, err)
		}
	case "clear":
		if c.r.ContentLength > 0 {
			return headerErr(codeInvalidHeaderValue, "Content-Length", strconv.FormatInt(c.r.ContentLength, 10))
		}
		if c.r.ContentLength < 0 {
			if m, _ := io.ReadFull(c.r.Body, make([]byte, 1)); m > 0 {
				return headerErr(codeInvalidHeaderValue, "Content-Length", "")
			}
		}
		if err := d.Zero(start, n); err != nil {
			return fmt.Errorf("blobapi: zero %d bytes at %d: %w", n, start, err)
		}
	}
	// A 201 promises the pages survive a crash; clients (azcopy, the SDK)
	// never re-send acknowledged pages.
	if err := d.Flush(); err != nil {
		return fmt.Errorf("blobapi: flush: %w", err)
	}
	etag, modified = c.version(d)
	hd := c.w.Header()
	hd.Set("ETag", etag)
	hd.Set("Last-Modified", modified.Format(http.TimeFormat))
	hd.Set("x-ms-blob-sequence-number", "0")
	hd.Set("x-ms-request-server-encrypted", "true")
	if sentMD5 != "" {
		hd.Set("Content-MD5", sentMD5)
	}
	if sentCRC != "" {
		hd.Set("x-ms-content-crc64", sentCRC)
	}
	hd.Set("Content-Length", "0")
	c.w.WriteHeader(http.StatusCreated)
	return nil
}

// getPageRanges serves Get Page Ranges, and its diff form when the disk can
// compute one.
func (h *handler) getPageRanges(c *call, d Disk, q url.Values) error {
	size := d.Size()
	etag, modified := c.version(d)
	notModified, err := conditions(c.r, etag, modified, true)
	if err != nil {
		return err
	}
	lo, hi := int64(0), size
	if hdr, rv, ok := rangeHeader(c.r); ok {
		s, e, ok := parseRange(rv)
		if !ok {
			return headerErr(codeInvalidHeaderValue, hdr, rv)
		}
		if s >= size {
			return blobErr(codeInvalidRange, "HeaderName", hdr, "HeaderValue", rv)
		}
		// Widened to whole pages: a page is allocated or not as a unit.
		lo = s / PageSize * PageSize
		if e >= 0 && e < size {
			hi = min((e+PageSize)/PageSize*PageSize, size)
		}
	}
	if v, ok := q["marker"]; ok {
		m, ok := parseOffset(v[0])
		if !ok || len(v) > 1 {
			return queryErr(codeInvalidQueryParameterValue, "marker", strings.Join(v, ","), "")
		}
		lo = max(lo, m)
	}
	limit := 0
	if v, ok := q["maxresults"]; ok {
		m, err := strconv.Atoi(v[0])
		switch {
		case err != nil || len(v) > 1:
			return queryErr(codeInvalidQueryParameterValue, "maxresults", strings.Join(v, ","), "")
		case m <= 0:
			return queryErr(codeOutOfRangeQueryParameterValue, "maxresults", v[0], "")
		}
		limit = m
	}
	var ranges []Range
	prevQuery, prevHeader := q.Get("prevsnapshot"), c.r.Header.Get("x-ms-previous-snapshot-url")
	switch {
	case prevQuery != "" && prevHeader != "":
		return errs.E(errs.Invalid, codeInvalidInput, "Give prevsnapshot or x-ms-previous-snapshot-url, not both.")
	case prevQuery != "" || prevHeader != "":
		differ, ok := d.(Differ)
		if !ok {
			if prevQuery != "" {
				e := queryErr(codeUnsupportedQueryParameter, "prevsnapshot", prevQuery, "This disk cannot report differences from an earlier snapshot.")
				return e
			}
			// The header holds a SAS URL; never echo it.
			e := blobErr(codeUnsupportedHeader, "HeaderName", "x-ms-previous-snapshot-url", "Reason", "This disk cannot report differences from an earlier snapshot.")
			return e
		}
		prev := prevQuery
		if prevHeader != "" {
			if prev, err = h.previousSnapshot(prevHeader); err != nil {
				return err
			}
		}
		ranges, err = differ.ChangedSince(prev)
	default:
		ranges, err = d.Allocated()
	}
	if err != nil {
		return err
	}
	list := pageRanges(ranges, lo, hi)
	next := ""
	if limit > 0 && len(list) > limit {
		next = strconv.FormatInt(list[limit].Off, 10)
		list = list[:limit]
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><PageList>`)
	for _, r := range list {
		fmt.Fprintf(&b, "<PageRange><Start>%d</Start><End>%d</End></PageRange>", r.Off, r.Off+r.Len-1)
	}
	if next != "" {
		b.WriteString("<NextMarker>" + next + "</NextMarker>")
	}
	b.WriteString("</PageList>")
	hd := c.w.Header()
	hd.Set("ETag", etag)
	hd.Set("Last-Modified", modified.Format(http.TimeFormat))
	hd.Set("x-ms-blob-content-length", strconv.FormatInt(size, 10))
	if notModified {
		c.w.WriteHeader(http.StatusNotModified)
		return nil
	}
	hd.Set("Content-Type", "application/xml")
	hd.Set("Content-Length", strconv.Itoa(b.Len()))
	c.w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(c.w, b.String())
	return nil
}

// conditions evaluates If-Match, If-None-Match, If-Modified-Since and
// If-Unmodified-Since. A failed "none match" or "modified since" is 304 for
// a read (notModified) and 412 for a write, as on Azure. Unparseable dates
// are ignored, as HTTP says.
func conditions(r *http.Request, etag string, modified time.Time, read bool) (notModified bool, err error) {
	modified = modified.Truncate(time.Second)
	if v := r.Header.Get("If-Match"); v != "" && !etagMatches(v, etag) {
		return false, blobErr(codeConditionNotMet)
	}
	if v := r.Header.Get("If-Unmodified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && modified.After(t) {
			return false, blobErr(codeConditionNotMet)
		}
	}
	unchanged := false
	if v := r.Header.Get("If-None-Match"); v != "" {
		unchanged = etagMatches(v, etag)
	} else if v := r.Header.Get("If-Modified-Since"); v != "" {
		if t, err := http.ParseTime(v); err == nil && !modified.After(t) {
			unchanged = true
		}
	}
	if unchanged && !read {
		return false, blobErr(codeConditionNotMet)
	}
	return unchanged, nil
}

func etagMatches(list, etag string) bool {
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimPrefix(strings.TrimSpace(e), "W/")
		if e == "*" || e == etag || `"`+e+`"` == etag {
			return true
		}
	}
	return false
}

// sequenceConditions evaluates x-ms-if-sequence-number-* against the
// sequence number, which is always 0 here: nothing sets it.
func sequenceConditions(r *http.Request) error {
	for _, c := range []struct {
		name string
		ok   func(v int64) bool
	}{
		{"x-ms-if-sequence-number-le", func(v int64) bool { return 0 <= v }},
		{"x-ms-if-sequence-number-lt", func(v int64) bool { return 0 < v }},
		{"x-ms-if-sequence-number-eq", func(v int64) bool { return v == 0 }},
	} {
		s := r.Header.Get(c.name)
		if s == "" {
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return headerErr(codeInvalidHeaderValue, c.name, s)
		}
		if !c.ok(v) {
			return blobErr(codeSequenceNumberConditionNotMet)
		}
	}
	return nil
}

func boolHeader(r *http.Request, name string) (bool, error) {
	v := r.Header.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, headerErr(codeInvalidHeaderValue, name, v)
	}
	return b, nil
}

// crc64 is Azure's x-ms-content-crc64 of p: CRC-64 with Azure's polynomial,
// little-endian, base64.
func (h *handler) crc64(p []byte) string {
	sum := h.crc64Sum(p)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func (h *handler) crc64Sum(p []byte) (b [8]byte) {
	binary.LittleEndian.PutUint64(b[:], crc64.Checksum(p, h.crc))
	return b
}

// newRequestID returns a random UUID, the shape of Azure's x-ms-request-id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// responseVersion echoes the client's x-ms-version when it looks like one,
// as Azure does, so version-sensitive clients parse the response as asked.
func responseVersion(v string) string {
	if len(v) == len("2006-01-02") {
		if _, err := time.Parse("2006-01-02", v); err == nil {
			return v
		}
	}
	return sasVersion
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// previousSnapshot checks the SAS URL of x-ms-previous-snapshot-url as it
// checks a request's own and returns the resource id it grants: a forged,
// expired or write URL proves nothing, and a URL that is not one of ours is
// a bad header. The URL is never echoed, since it is a credential.
func (h *handler) previousSnapshot(raw string) (string, error) {
	bad := blobErr(codeInvalidHeaderValue, "HeaderName", "x-ms-previous-snapshot-url", "Reason", "not a SAS URL of a snapshot on this server")
	u, err := url.Parse(raw)
	if err != nil {
		return "", bad
	}
	parts := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	if len(parts) != 3 || parts[0] != "sas" || parts[1] == "" {
		return "", bad
	}
	accessID, err := url.PathUnescape(parts[1])
	if err != nil {
		return "", bad
	}
	g, err := h.signer.Verify(accessID, u.Query())
	if err != nil || g.Write || g.ResourceID == "" {
		return "", errs.E(errs.Forbidden, codeCannotVerifyCopySource,
			"The previous snapshot's SAS URL does not grant read access: its signature does not match, it has expired, or it is not a snapshot's.")
	}
	return g.ResourceID, nil
}
