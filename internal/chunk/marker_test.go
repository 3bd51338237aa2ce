package chunk_test

import (
	"bytes"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/testenv"
)

// bucketURLs returns, per backend, a function that makes a fresh empty
// bucket and returns its URL: a directory always, S3 when COFFER_TEST_S3
// names a server.
func bucketURLs(t *testing.T) map[string]func(t *testing.T) string {
	out := map[string]func(t *testing.T) string{
		"dir": func(t *testing.T) string { return "file://" + t.TempDir() },
	}
	if raw := os.Getenv("COFFER_TEST_S3"); raw != "" {
		base, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		out["s3"] = func(t *testing.T) string { _, u := s3BucketURL(t, base); return u }
	} else {
		t.Log("COFFER_TEST_S3 is unset: S3 variant not run")
	}
	return out
}

func open(t *testing.T, rawURL, dataDir string) (*chunk.Store, error) {
	t.Helper()
	s, err := chunk.Open(t.Context(), rawURL, dataDir, chunk.Options{})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// wantKeyRefused checks that err refuses the bucket and says what to do.
func wantKeyRefused(t *testing.T, err error) {
	t.Helper()
	chunktest.WantCode(t, err, errs.Invalid, "BucketKeyMismatch")
	if msg := err.Error(); !strings.Contains(msg, "data directory") || !strings.Contains(msg, "another bucket") {
		t.Errorf("error %q does not say what to do", msg)
	}
}

// TestBucketKeyMarker: a bucket belongs to the chunk key that first wrote
// it. A data directory with another key is refused when it opens the
// store, before it can dedup onto chunks it cannot read.
func TestBucketKeyMarker(t *testing.T) {
	for name, newBucket := range bucketURLs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			u := newBucket(t)
			first, second := t.TempDir(), t.TempDir()
			s, err := open(t, u, first)
			if err != nil {
				t.Fatalf("first open of an empty bucket: %v", err)
			}
			plain := chunktest.Random(4096)
			d, _, err := s.Put(ctx, plain)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			marker, err := s.Bucket().ReadAll(ctx, chunk.KeyMarkerKey)
			if err != nil {
				t.Fatalf("no key marker after open: %v", err)
			}
			key, err := chunk.LoadOrCreateKey(first)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(marker, key) || strings.Contains(strings.ToLower(string(marker)), strings.ToLower(string(mustRead(t, chunk.KeyPath(first))[:64]))) {
				t.Fatal("the marker holds the key itself")
			}

			_, err = open(t, u, second)
			wantKeyRefused(t, err)

			// The owner still opens it and reads its chunk.
			s, err = open(t, u, first)
			if err != nil {
				t.Fatalf("reopen by the key that wrote the bucket: %v", err)
			}
			if got, err := s.Get(ctx, d, len(plain)); err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Get after reopen: %v", err)
			}

			// A bucket from before markers: chunks, no marker. Another
			// key is refused and writes nothing; the key whose chunk
			// opens gets its marker written.
			if err := s.Bucket().Delete(ctx, chunk.KeyMarkerKey); err != nil {
				t.Fatal(err)
			}
			_, err = open(t, u, second)
			wantKeyRefused(t, err)
			if ok, _ := s.Bucket().Exists(ctx, chunk.KeyMarkerKey); ok {
				t.Fatal("a refused key wrote its marker")
			}
			if _, err := open(t, u, first); err != nil {
				t.Fatalf("open of an unmarked bucket by the key that wrote it: %v", err)
			}
			if got, err := s.Bucket().ReadAll(ctx, chunk.KeyMarkerKey); err != nil || !bytes.Equal(got, marker) {
				t.Fatalf("marker after adopting the old bucket = %q, %v; want %q", got, err, marker)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenMissingS3Bucket: a bucket that does not exist fails the open,
// naming the bucket, rather than every later write.
func TestOpenMissingS3Bucket(t *testing.T) {
	raw := testenv.S3(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "coffer-no-such-bucket"
	_, err = open(t, u.String(), t.TempDir())
	chunktest.WantCode(t, err, errs.Invalid, "BlobBucketNotFound")
	if err != nil && !strings.Contains(err.Error(), `"coffer-no-such-bucket"`) {
		t.Errorf("error %q does not name the bucket", err)
	}
}
