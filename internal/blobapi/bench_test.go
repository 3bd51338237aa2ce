package blobapi

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
)

// BenchmarkSDK measures the data plane through the official SDK over
// loopback TLS: 256 MiB written in sequential 4 MiB Put Page calls, with and
// without the fdatasync that backs each 201, and read back with one
// DownloadStream. MB/s is the figure to compare.
func BenchmarkSDK(b *testing.B) {
	const size = 256 * mib
	const chunk = 4 * mib
	data := randomBytes(42, chunk)

	upload := func(b *testing.B, sync bool, writers int) {
		e := newTestEnv(b)
		d := newFileDisk(b, size, e.clock)
		d.sync = sync
		e.addDisk(testResource, d)
		_, sas := e.issue(testResource, true, 24*time.Hour)
		c := e.client(sas)
		ctx := context.Background()
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			var wg syncGroup
			for w := range writers {
				wg.Go(func() error {
					for off := int64(w) * chunk; off < size; off += int64(writers) * chunk {
						if _, err := c.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(data)), blob.HTTPRange{Offset: off, Count: chunk}, nil); err != nil {
							return err
						}
					}
					return nil
				})
			}
			if err := wg.Wait(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("UploadPages4MiB/fdatasync", func(b *testing.B) { upload(b, true, 1) })
	b.Run("UploadPages4MiB/nosync", func(b *testing.B) { upload(b, false, 1) })
	b.Run("UploadPages4MiB/fdatasync-4writers", func(b *testing.B) { upload(b, true, 4) })

	b.Run("DownloadStream256MiB", func(b *testing.B) {
		e := newTestEnv(b)
		d := newFileDisk(b, size, e.clock)
		for off := int64(0); off < size; off += chunk {
			if _, err := d.WriteAt(data, off); err != nil {
				b.Fatal(err)
			}
		}
		e.addDisk(testResource, d)
		_, sas := e.issue(testResource, false, 24*time.Hour)
		c := e.client(sas)
		b.SetBytes(size)
		b.ResetTimer()
		for range b.N {
			resp, err := c.DownloadStream(context.Background(), nil)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if err != nil || n != size {
				b.Fatalf("read %d bytes: %v", n, err)
			}
		}
	})
}

// syncGroup runs goroutines and keeps the first error.
type syncGroup struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *syncGroup) Go(f func() error) {
	g.wg.Go(func() {
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	})
}

func (g *syncGroup) Wait() error {
	g.wg.Wait()
	return g.err
}
