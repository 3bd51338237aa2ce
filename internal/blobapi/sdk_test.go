package blobapi

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
)

// TestSDKRoundTrip drives the handler with the official SDK the way an
// export or upload tool would: properties, page writes and clears, ranged
// downloads and the page list, all against a real sparse file.
func TestSDKRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	const size = 8 * mib
	e.addDisk(testResource, newFileDisk(t, size, e.clock))
	_, sas := e.issue(testResource, true, time.Hour)
	c := e.client(sas)
	model := make([]byte, size)

	props, err := c.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := *props.ContentLength; got != size {
		t.Errorf("ContentLength = %d, want %d", got, size)
	}
	if got := *props.BlobType; got != blob.BlobTypePageBlob {
		t.Errorf("BlobType = %q, want PageBlob", got)
	}
	if props.ETag == nil || props.LastModified == nil {
		t.Errorf("ETag %v / LastModified %v missing", props.ETag, props.LastModified)
	}
	etagBefore := *props.ETag

	// Writes at 4 KiB granularity so the file system's allocation map, which
	// is what Allocated reports, matches the writes exactly.
	writes := []struct {
		off, n     int64
		validation blob.TransferValidationType
	}{
		{off: 0, n: 4 * kib},
		{off: 1 * mib, n: 64 * kib, validation: blob.TransferValidationTypeComputeCRC64()},
		{off: 3 * mib, n: 8 * kib},
		{off: 4 * mib, n: 4 * mib}, // the largest page write Azure takes, up to the last byte
	}
	for i, w := range writes {
		data := randomBytes(uint64(i), w.n)
		sum := md5.Sum(data)
		validation := w.validation
		if validation == nil {
			validation = blob.TransferValidationTypeMD5(sum[:])
		}
		resp, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(data)), blob.HTTPRange{Offset: w.off, Count: w.n},
			&pageblob.UploadPagesOptions{TransactionalValidation: validation})
		if err != nil {
			t.Fatalf("UploadPages(%d, %d): %v", w.off, w.n, err)
		}
		if w.validation == nil && !bytes.Equal(resp.ContentMD5, sum[:]) {
			t.Errorf("UploadPages(%d): Content-MD5 = %x, want %x", w.off, resp.ContentMD5, sum)
		}
		if w.validation != nil && len(resp.ContentCRC64) != 8 {
			t.Errorf("UploadPages(%d): x-ms-content-crc64 not echoed", w.off)
		}
		if resp.IsServerEncrypted == nil || !*resp.IsServerEncrypted || resp.BlobSequenceNumber == nil || *resp.BlobSequenceNumber != 0 {
			t.Errorf("UploadPages(%d): encrypted %v, sequence number %v", w.off, resp.IsServerEncrypted, resp.BlobSequenceNumber)
		}
		copy(model[w.off:], data)
	}
	if _, err := c.ClearPages(ctx, blob.HTTPRange{Offset: 1*mib + 16*kib, Count: 16 * kib}, nil); err != nil {
		t.Fatal(err)
	}
	clear(model[1*mib+16*kib : 1*mib+32*kib])

	props, err = c.GetProperties(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *props.ETag == etagBefore {
		t.Errorf("ETag %s did not change after writes", etagBefore)
	}

	t.Run("download", func(t *testing.T) {
		for _, r := range []blob.HTTPRange{
			{},                                       // the whole disk, 200
			{Offset: 0, Count: 512},                  // first page
			{Offset: 1*mib + 8*kib, Count: 64 * kib}, // across the cleared hole
			{Offset: 2 * mib, Count: 1 * mib},        // never written: zeros
			{Offset: size - 1000},                    // open-ended: to the end
			{Offset: size - 512, Count: 4 * kib},     // past the end: cut to the size, as HTTP does
		} {
			resp, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: r})
			if err != nil {
				t.Fatalf("DownloadStream(%+v): %v", r, err)
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatalf("DownloadStream(%+v): %v", r, err)
			}
			end := size
			if r.Count > 0 {
				end = min(r.Offset+r.Count, size)
			}
			if want := model[r.Offset:end]; !bytes.Equal(got, want) {
				t.Errorf("DownloadStream(%+v): %d bytes differ from the %d written", r, len(got), len(want))
			}
			if r == (blob.HTTPRange{}) && *resp.BlobType != blob.BlobTypePageBlob {
				t.Errorf("Get Blob x-ms-blob-type = %v", *resp.BlobType)
			}
		}
	})

	t.Run("download with range MD5", func(t *testing.T) {
		r := blob.HTTPRange{Offset: 1 * mib, Count: 64 * kib}
		resp, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: r, RangeGetContentMD5: to.Ptr(true)})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if sum := md5.Sum(got); !bytes.Equal(resp.ContentMD5, sum[:]) {
			t.Errorf("Content-MD5 = %x, want %x", resp.ContentMD5, sum)
		}
	})

	want := []Range{
		{0, 4 * kib},
		{1 * mib, 16 * kib},
		{1*mib + 32*kib, 32 * kib},
		{3 * mib, 8 * kib},
		{4 * mib, 4 * mib},
	}
	for _, tc := range []struct {
		name string
		opts *pageblob.GetPageRangesOptions
		want []Range
	}{
		{"all", nil, want},
		{"one per page", &pageblob.GetPageRangesOptions{MaxResults: to.Ptr[int32](1)}, want},
		{"two per page", &pageblob.GetPageRangesOptions{MaxResults: to.Ptr[int32](2)}, want},
		{"within a range", &pageblob.GetPageRangesOptions{Range: blob.HTTPRange{Offset: 1 * mib, Count: 2 * mib}}, want[1:3]},
		{"unaligned range widened to pages", &pageblob.GetPageRangesOptions{Range: blob.HTTPRange{Offset: 1*mib + 100, Count: 1000}}, []Range{{1 * mib, 1536}}},
		{"range cutting a run", &pageblob.GetPageRangesOptions{Range: blob.HTTPRange{Offset: 5 * mib, Count: 1 * mib}}, []Range{{5 * mib, 1 * mib}}},
	} {
		t.Run("page ranges/"+tc.name, func(t *testing.T) {
			got, pages := listPageRanges(t, c, tc.opts)
			if !slices.Equal(got, tc.want) {
				t.Errorf("page ranges = %v, want %v", got, tc.want)
			}
			if tc.opts != nil && tc.opts.MaxResults != nil {
				if wantPages := (len(tc.want) + int(*tc.opts.MaxResults) - 1) / int(*tc.opts.MaxResults); pages != wantPages {
					t.Errorf("%d pages, want %d", pages, wantPages)
				}
			}
		})
	}
}

// listPageRanges follows the SDK pager to the end.
func listPageRanges(t *testing.T, c *pageblob.Client, opts *pageblob.GetPageRangesOptions) (ranges []Range, pages int) {
	t.Helper()
	pager := c.NewGetPageRangesPager(opts)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if page.BlobContentLength == nil {
			t.Error("x-ms-blob-content-length missing")
		}
		for _, r := range page.PageRange {
			ranges = append(ranges, Range{Off: *r.Start, Len: *r.End - *r.Start + 1})
		}
	}
	return ranges, pages
}

// TestSDKErrors checks that each refusal reaches the SDK as the error code
// Azure would send, so clients' error handling works unchanged.
func TestSDKErrors(t *testing.T) {
	const size = 1 * mib
	page := func() io.ReadSeekCloser { return streaming.NopCloser(bytes.NewReader(make([]byte, 512))) }
	upload := func(ctx context.Context, c *pageblob.Client) error {
		_, err := c.UploadPages(ctx, page(), blob.HTTPRange{Offset: 0, Count: 512}, nil)
		return err
	}
	download := func(ctx context.Context, c *pageblob.Client) error {
		resp, err := c.DownloadStream(ctx, nil)
		if err == nil {
			_ = resp.Body.Close()
		}
		return err
	}
	properties := func(ctx context.Context, c *pageblob.Client) error {
		_, err := c.GetProperties(ctx, nil)
		return err
	}
	sigRE := regexp.MustCompile(`sig=[^&]*`)
	for _, tc := range []struct {
		name   string
		write  bool
		plain  bool                      // serve a disk without Versioned/Differ
		mutate func(sas string) string   // edits the SAS URL
		before func(e *testEnv, g Grant) // runs after issuing
		do     func(context.Context, *pageblob.Client) error
		code   bloberror.Code
		status int
	}{
		{name: "write through a read SAS", do: upload, code: bloberror.AuthorizationPermissionMismatch, status: 403},
		{name: "clear through a read SAS", do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.ClearPages(ctx, blob.HTTPRange{Offset: 0, Count: 512}, nil)
			return err
		}, code: bloberror.AuthorizationPermissionMismatch, status: 403},
		{name: "forged signature", mutate: func(s string) string {
			return sigRE.ReplaceAllString(s, "sig="+base64.RawURLEncoding.EncodeToString(make([]byte, 32)))
		}, do: properties, code: bloberror.AuthenticationFailed, status: 403},
		{name: "signature from another key", mutate: func(s string) string {
			other := Signer{Key: bytes.Repeat([]byte{7}, 32), Clock: nil}
			return sigRE.ReplaceAllString(s, "sig="+base64.RawURLEncoding.EncodeToString(other.mac("x", "y", "r", "z")))
		}, do: download, code: bloberror.AuthenticationFailed, status: 403},
		{name: "sp edited from r to rw", mutate: func(s string) string {
			return regexp.MustCompile(`sp=r&`).ReplaceAllString(s, "sp=rw&")
		}, do: upload, code: bloberror.AuthenticationFailed, status: 403},
		{name: "se pushed later", mutate: func(s string) string {
			return regexp.MustCompile(`se=2030`).ReplaceAllString(s, "se=2099")
		}, do: download, code: bloberror.AuthenticationFailed, status: 403},
		{name: "rid pointed at another disk", mutate: func(s string) string {
			return regexp.MustCompile(`disks%2Fdata`).ReplaceAllString(s, "disks%2Fother")
		}, do: download, code: bloberror.AuthenticationFailed, status: 403},
		{name: "expired", before: func(e *testEnv, _ Grant) { e.clock.Advance(2 * time.Hour) },
			do: download, code: bloberror.AuthenticationFailed, status: 403},
		{name: "revoked", before: func(e *testEnv, g Grant) { e.revoke(g.AccessID) },
			do: properties, code: bloberror.AuthenticationFailed, status: 403},
		{name: "disk deleted", before: func(e *testEnv, _ Grant) { e.removeDisk(testResource) },
			do: download, code: bloberror.AuthenticationFailed, status: 403},
		{name: "page write past the end", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.UploadPages(ctx, page(), blob.HTTPRange{Offset: size, Count: 512}, nil)
			return err
		}, code: bloberror.InvalidPageRange, status: 416},
		{name: "page write straddling the end", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 1024))), blob.HTTPRange{Offset: size - 512, Count: 1024}, nil)
			return err
		}, code: bloberror.InvalidPageRange, status: 416},
		{name: "clear past the end", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.ClearPages(ctx, blob.HTTPRange{Offset: size, Count: 512}, nil)
			return err
		}, code: bloberror.InvalidPageRange, status: 416},
		{name: "unaligned page write", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 4))), blob.HTTPRange{Offset: 0, Count: 4}, nil)
			return err
		}, code: bloberror.InvalidHeaderValue, status: 400},
		{name: "download starting past the end", do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: size, Count: 512}})
			return err
		}, code: bloberror.InvalidRange, status: 416},
		{name: "MD5 mismatch", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.UploadPages(ctx, page(), blob.HTTPRange{Offset: 0, Count: 512},
				&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeMD5(make([]byte, 16))})
			return err
		}, code: bloberror.MD5Mismatch, status: 400},
		{name: "CRC64 mismatch", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.UploadPages(ctx, page(), blob.HTTPRange{Offset: 0, Count: 512},
				&pageblob.UploadPagesOptions{TransactionalValidation: blob.TransferValidationTypeCRC64(1)})
			return err
		}, code: "Crc64Mismatch", status: 400},
		{name: "stale If-Match", do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.DownloadStream(ctx, &blob.DownloadStreamOptions{AccessConditions: &blob.AccessConditions{
				ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: to.Ptr(azcore.ETag(`"0x1234"`))}}})
			return err
		}, code: bloberror.ConditionNotMet, status: 412},
		{name: "lease id on an unleased disk", write: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.UploadPages(ctx, page(), blob.HTTPRange{Offset: 0, Count: 512}, &pageblob.UploadPagesOptions{
				AccessConditions: &blob.AccessConditions{LeaseAccessConditions: &blob.LeaseAccessConditions{LeaseID: to.Ptr("lease")}}})
			return err
		}, code: bloberror.LeaseNotPresentWithBlobOperation, status: 412},
		{name: "diff on a disk without Differ", plain: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshot: to.Ptr("2030-01-01T00:00:00.0000000Z")}).NextPage(ctx)
			return err
		}, code: bloberror.UnsupportedQueryParameter, status: 400},
		{name: "diff by URL on a disk without Differ", plain: true, do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: to.Ptr("https://example/sas/x/abcd?sig=secret")}).NextPage(ctx)
			return err
		}, code: bloberror.UnsupportedHeader, status: 400},
		{name: "previous snapshot URL that is not a SAS URL", do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: to.Ptr("garbage")}).NextPage(ctx)
			return err
		}, code: bloberror.InvalidHeaderValue, status: 400},
		{name: "unknown previous snapshot", do: func(ctx context.Context, c *pageblob.Client) error {
			_, err := c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshot: to.Ptr("nope")}).NextPage(ctx)
			return err
		}, code: bloberror.PreviousSnapshotNotFound, status: 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			fd := newFileDisk(t, size, e.clock)
			var d Disk = &diffDisk{fileDisk: fd, snapshots: map[string][]byte{}}
			if tc.plain {
				d = plainDisk{fd}
			}
			e.addDisk(testResource, d)
			e.addDisk(otherDisk, newFileDisk(t, size, e.clock))
			g, sas := e.issue(testResource, tc.write, time.Hour)
			if tc.mutate != nil {
				mutated := tc.mutate(sas)
				if mutated == sas {
					t.Fatalf("mutation left the URL unchanged: %s", sas)
				}
				sas = mutated
			}
			if tc.before != nil {
				tc.before(e, g)
			}
			err := tc.do(context.Background(), e.client(sas))
			if !bloberror.HasCode(err, tc.code) {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != tc.status {
				t.Errorf("status = %v, want %d", err, tc.status)
			}
		})
	}
}

// TestSDKDiff exercises the Differ hook through the SDK's diff pager.
func TestSDKDiff(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	d := &diffDisk{fileDisk: newFileDisk(t, 1*mib, e.clock), snapshots: map[string][]byte{}}
	e.addDisk(testResource, d)
	_, sas := e.issue(testResource, true, time.Hour)
	c := e.client(sas)
	if _, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(randomBytes(1, 8*kib))), blob.HTTPRange{Offset: 0, Count: 8 * kib}, nil); err != nil {
		t.Fatal(err)
	}
	d.snapshot(t, "s1")
	if _, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(randomBytes(2, 1*kib))), blob.HTTPRange{Offset: 4 * kib, Count: 1 * kib}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(randomBytes(3, 512))), blob.HTTPRange{Offset: 512 * kib, Count: 512}, nil); err != nil {
		t.Fatal(err)
	}
	// The URL form names the earlier snapshot by a read SAS of its own,
	// which the handler verifies and turns into the resource id it grants.
	_, prevSAS := e.issue("s1", false, time.Hour)
	for _, opts := range []*pageblob.GetPageRangesDiffOptions{
		{PrevSnapshot: to.Ptr("s1")},
		{PrevSnapshotURL: to.Ptr(prevSAS)},
	} {
		page, err := c.NewGetPageRangesDiffPager(opts).NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []Range
		for _, r := range page.PageRange {
			got = append(got, Range{Off: *r.Start, Len: *r.End - *r.Start + 1})
		}
		if want := []Range{{4 * kib, 1 * kib}, {512 * kib, 512}}; !slices.Equal(got, want) {
			t.Errorf("diff = %v, want %v", got, want)
		}
	}
}

// TestUnversionedDisk checks the fallback ETag: stable for one access,
// different between accesses, and good enough for the SDK's retry reader.
func TestUnversionedDisk(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	e.addDisk(testResource, plainDisk{newFileDisk(t, 1*mib, e.clock)})
	_, sas1 := e.issue(testResource, true, time.Hour)
	_, sas2 := e.issue(testResource, false, time.Hour)
	etag := func(sas string) azcore.ETag {
		p, err := e.client(sas).GetProperties(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		return *p.ETag
	}
	first := etag(sas1)
	if _, err := e.client(sas1).UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 512))), blob.HTTPRange{Count: 512}, nil); err != nil {
		t.Fatal(err)
	}
	if again := etag(sas1); again != first {
		t.Errorf("ETag moved from %s to %s within one access", first, again)
	}
	if other := etag(sas2); other == first {
		t.Errorf("two accesses share ETag %s", first)
	}
	resp, err := e.client(sas1).DownloadStream(ctx, &blob.DownloadStreamOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &first}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
}

// TestPreviousSnapshotURLIsVerified: x-ms-previous-snapshot-url is a
// credential like the request's own SAS. A forged signature, an expired URL
// or a write URL proves nothing, and the disk never sees the URL, only the
// resource id a valid one grants.
func TestPreviousSnapshotURLIsVerified(t *testing.T) {
	ctx := context.Background()
	e := newTestEnv(t)
	d := &diffDisk{fileDisk: newFileDisk(t, 1*mib, e.clock), snapshots: map[string][]byte{}}
	e.addDisk(testResource, d)
	d.snapshot(t, "s1")
	d.snapshot(t, "s2")
	_, sas := e.issue(testResource, false, 24*time.Hour)
	c := e.client(sas)
	diff := func(prev string) error {
		_, err := c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: to.Ptr(prev)}).NextPage(ctx)
		return err
	}
	_, good := e.issue("s1", false, time.Hour)
	if err := diff(good); err != nil {
		t.Fatalf("valid previous URL: %v", err)
	}
	// The signature of s1's URL does not cover another resource id.
	forged := strings.Replace(good, "rid=s1", "rid=s2", 1)
	if forged == good {
		t.Fatalf("rid not found in %s", good)
	}
	_, write := e.issue("s2", true, time.Hour)
	_, short := e.issue("s2", false, time.Second)
	e.clock.Advance(time.Minute)
	for name, prev := range map[string]string{"forged rid": forged, "write grant": write, "expired": short} {
		err := diff(prev)
		var re *azcore.ResponseError
		if !bloberror.HasCode(err, "CannotVerifyCopySource") || !errors.As(err, &re) || re.StatusCode != 403 {
			t.Errorf("%s: %v, want 403 CannotVerifyCopySource", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "sig=") {
			t.Errorf("%s: the error echoes the URL: %v", name, err)
		}
	}
}
