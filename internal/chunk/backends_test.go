package chunk_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
	"github.com/coffer-backup/coffer/internal/testenv"
)

func closeBucket(t *testing.T, b *blob.Bucket) {
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close bucket: %v", err)
		}
	})
}

// TestMem runs the suite in memory: the store's own logic, fast.
func TestMem(t *testing.T) {
	chunktest.Run(t, func(t *testing.T) *blob.Bucket {
		b := memblob.OpenBucket(nil)
		closeBucket(t, b)
		return b
	})
}

// TestDir runs the suite over the default backend, a directory.
func TestDir(t *testing.T) {
	chunktest.Run(t, func(t *testing.T) *blob.Bucket {
		b, err := chunk.OpenBucket(t.Context(), "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		closeBucket(t, b)
		return b
	})
}

// TestS3 runs the suite against the S3 server COFFER_TEST_S3 names (see
// scripts/minio), in a bucket of its own per subtest.
func TestS3(t *testing.T) {
	raw := testenv.S3(t)
	base, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("COFFER_TEST_S3: %v", err)
	}
	chunktest.Run(t, func(t *testing.T) *blob.Bucket { return s3Bucket(t, base) })
}

// s3Bucket creates a bucket with a fresh name on the server base names, and
// empties and removes it when tb ends.
func s3Bucket(t testing.TB, base *url.URL) *blob.Bucket {
	b, _ := s3BucketURL(t, base)
	return b
}

// s3BucketURL is s3Bucket that also returns the bucket's URL.
func s3BucketURL(t testing.TB, base *url.URL) (*blob.Bucket, string) {
	var suffix [6]byte
	rand.Read(suffix[:])
	name := "coffer-test-" + hex.EncodeToString(suffix[:])
	u := *base
	u.Host = name
	b, err := chunk.OpenBucket(t.Context(), u.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	var client *s3.Client
	if !b.As(&client) {
		t.Fatal("the S3 bucket does not expose an *s3.Client")
	}
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx := context.Background() // t.Context is done by now
		it := b.List(nil)
		for {
			obj, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("cleanup list: %v", err)
				break
			}
			if err := b.Delete(ctx, obj.Key); err != nil {
				t.Errorf("cleanup delete %s: %v", obj.Key, err)
			}
		}
		if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &name}); err != nil {
			t.Errorf("delete bucket %s: %v", name, err)
		}
		b.Close()
	})
	return b, u.String()
}
