package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

// countingBackend counts the requests a store makes, by method.
type countingBackend struct {
	chunk.Backend
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingBackend) count(op string) {
	c.mu.Lock()
	c.calls[op]++
	c.mu.Unlock()
}

func (c *countingBackend) Write(ctx context.Context, key string, body []byte, ifAbsent bool) error {
	c.count("PUT")
	return c.Backend.Write(ctx, key, body, ifAbsent)
}

func (c *countingBackend) Read(ctx context.Context, key string, buf []byte) ([]byte, error) {
	c.count("GET")
	return c.Backend.Read(ctx, key, buf)
}

func (c *countingBackend) ReadRange(ctx context.Context, key string, off, n int64, buf []byte) ([]byte, error) {
	c.count("GET")
	return c.Backend.ReadRange(ctx, key, off, n, buf)
}

func (c *countingBackend) Exists(ctx context.Context, key string) (bool, error) {
	c.count("HEAD")
	return c.Backend.Exists(ctx, key)
}

func (c *countingBackend) Delete(ctx context.Context, key string) error {
	c.count("DELETE")
	return c.Backend.Delete(ctx, key)
}

func (c *countingBackend) List(ctx context.Context, prefix string, fn func(chunk.Object) error) error {
	c.count("LIST")
	return c.Backend.List(ctx, prefix, fn)
}

func (c *countingBackend) report(step string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ops []string
	total := 0
	for op, n := range c.calls {
		ops = append(ops, op)
		total += n
	}
	sort.Strings(ops)
	var parts []string
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%s=%d", op, c.calls[op]))
	}
	result(step+"_requests", total)
	result(step+"_by_method", strings.Join(parts, ","))
	clear(c.calls)
}

// s3count backs the image up to a fresh bucket on the S3 server blobURL
// names and restores it, counting the store's requests: a first backup,
// a second backup of the same image (all deduplicated), and a restore,
// each by a store opened afresh, as the service's next process would.
// packSize is chunk.Options.PackSize (negative: version 1, one object a
// chunk).
func s3count(ctx context.Context, imgPath, blobURL, data string, packSize int64, workers int) error {
	base, err := url.Parse(blobURL)
	if err != nil {
		return err
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	name := "coffer-count-" + hex.EncodeToString(suffix[:])
	base.Host = name
	bucket, err := chunk.OpenBucket(ctx, base.String(), "")
	if err != nil {
		return err
	}
	defer bucket.Close()
	var client *s3.Client
	if !bucket.As(&client) {
		return fmt.Errorf("not an S3 bucket: %s", blobURL)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		return err
	}
	key, err := chunk.LoadOrCreateKey(data)
	if err != nil {
		return err
	}
	counter := &countingBackend{Backend: &chunk.BucketBackend{Bucket: bucket}, calls: map[string]int{}}
	open := func() (*chunk.Store, error) {
		return chunk.NewOnBackend(counter, chunk.Options{Key: key, PackSize: packSize})
	}
	img, err := os.Open(imgPath)
	if err != nil {
		return err
	}
	defer img.Close()
	fi, err := img.Stat()
	if err != nil {
		return err
	}
	src := sizedReader{img, fi.Size()}
	var idx chunk.Index
	for i, step := range []string{"backup", "backup_again"} {
		store, err := open()
		if err != nil {
			return err
		}
		start := time.Now()
		idx, _, err = snapshot.Upload(ctx, store, snapshot.UploadRequest{Name: fmt.Sprintf("img/%d", i), Source: src, Workers: workers})
		store.Close()
		if err != nil {
			return err
		}
		result(step+"_seconds", fmt.Sprintf("%.3f", time.Since(start).Seconds()))
		counter.report(step)
	}
	store, err := open()
	if err != nil {
		return err
	}
	defer store.Close()
	start := time.Now()
	if _, err := snapshot.NewReader(store, idx, snapshot.ReaderOptions{}).RestoreTo(ctx, discard{}, workers); err != nil {
		return err
	}
	result("restore_seconds", fmt.Sprintf("%.3f", time.Since(start).Seconds()))
	counter.report("restore")
	return nil
}

type sizedReader struct {
	f    *os.File
	size int64
}

func (s sizedReader) Size() int64                             { return s.size }
func (s sizedReader) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
