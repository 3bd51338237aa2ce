package chunk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Backend is the object storage under a Store: chunks, indexes and the key
// marker are objects in it, named by "/"-separated keys. The gocloud bucket
// (BucketBackend) is the one that stores; the retry wrapper (NewRetry) and
// the tests' fault injector (chunktest.Faulty) wrap another Backend. All
// methods are safe for concurrent use.
type Backend interface {
	// Write stores body as key, replacing any object there. A reader sees
	// the old object or all of body, never a part (a directory writes a
	// temporary file and renames it; an S3 PUT is atomic), so a retried
	// Write leaves a complete object. With ifAbsent an object already at
	// key is an error wrapping ErrObjectExists and nothing is written.
	Write(ctx context.Context, key string, body []byte, ifAbsent bool) error
	// Read returns object key. With a non-nil buf it reads into buf's
	// storage, and an object larger than cap(buf) is an
	// *ObjectTooLargeError; with a nil buf it allocates. A missing object
	// is an error wrapping ErrObjectNotFound.
	Read(ctx context.Context, key string, buf []byte) ([]byte, error)
	// ReadRange returns bytes [off, off+n) of object key, reading into
	// buf's storage when it has room for n bytes plus twice
	// directio.Align (a directory bucket reads the aligned span around
	// the range directly), allocating otherwise. An object that ends
	// before off+n is an error wrapping io.ErrUnexpectedEOF; a missing
	// one wraps ErrObjectNotFound.
	ReadRange(ctx context.Context, key string, off, n int64, buf []byte) ([]byte, error)
	// Exists reports whether object key is present.
	Exists(ctx context.Context, key string) (bool, error)
	// Delete removes object key. A missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in no
	// particular order, and stops at the first error fn returns,
	// returning it.
	List(ctx context.Context, prefix string, fn func(Object) error) error
	// Close releases what the backend holds.
	Close() error
}

// Object describes a stored object.
type Object struct {
	Key     string
	Size    int64
	ModTime time.Time // when it was last written
}

var (
	// ErrObjectNotFound: Backend.Read of a missing object.
	ErrObjectNotFound = errors.New("object not found")
	// ErrObjectExists: Backend.Write with ifAbsent of a present object.
	ErrObjectExists = errors.New("object exists")
)

// ObjectTooLargeError is Backend.Read of an object larger than the buffer
// it was given.
type ObjectTooLargeError struct {
	Key  string
	Size int64
}

func (e *ObjectTooLargeError) Error() string {
	return fmt.Sprintf("object %s of %d bytes is larger than expected", e.Key, e.Size)
}

// BucketBackend is the Backend over a gocloud bucket.
type BucketBackend struct {
	Bucket *blob.Bucket
}

var _ Backend = (*BucketBackend)(nil)

// Write implements Backend. It is Bucket.WriteAll without the MD5s:
// WriteAll hashes the body twice more to check itself, which cost more CPU
// than zstd, AES and BLAKE3 together. Chunks carry their own check; the S3
// SDK still adds its CRC to each request. A directory bucket's temporary
// file is written directly (direct.go).
func (b *BucketBackend) Write(ctx context.Context, key string, body []byte, ifAbsent bool) error {
	written := false
	w, err := b.Bucket.NewWriter(ctx, key, &blob.WriterOptions{
		ContentType: contentType,
		IfNotExist:  ifAbsent,
		BeforeWrite: func(as func(any) bool) error {
			var f *os.File
			if !as(&f) {
				return nil // not a file: write through the Writer
			}
			written = true
			return writeDirect(f, body)
		},
	})
	if err != nil {
		return b.err(key, err)
	}
	if !written {
		if _, err := w.Write(body); err != nil {
			w.Close()
			return b.err(key, err)
		}
	}
	return b.err(key, w.Close())
}

// Read implements Backend. A directory bucket's file is read directly into
// buf (direct.go).
func (b *BucketBackend) Read(ctx context.Context, key string, buf []byte) ([]byte, error) {
	if buf == nil {
		body, err := b.Bucket.ReadAll(ctx, key)
		return body, b.err(key, err)
	}
	var body []byte
	var readErr error
	r, err := b.Bucket.NewReader(ctx, key, &blob.ReaderOptions{
		BeforeRead: func(as func(any) bool) error {
			var f *os.File
			if !as(&f) {
				return nil // not a file: read through the Reader
			}
			fi, err := f.Stat()
			if err != nil {
				readErr = err
				return nil
			}
			if fi.Size() > int64(cap(buf)) {
				readErr = &ObjectTooLargeError{Key: key, Size: fi.Size()}
				return nil
			}
			body, readErr = readDirect(f, int(fi.Size()), buf[:0])
			if readErr == nil && body == nil {
				body = buf[:0]
			}
			return nil
		},
	})
	if err != nil {
		return nil, b.err(key, err)
	}
	defer r.Close()
	if readErr != nil {
		return nil, readErr
	}
	if body != nil {
		return body, nil
	}
	n := r.Size()
	if n > int64(cap(buf)) {
		return nil, &ObjectTooLargeError{Key: key, Size: n}
	}
	body = buf[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, b.err(key, err)
	}
	return body, nil
}

// ReadRange implements Backend: one ranged GET on S3; on a directory,
// one pread of the aligned span around the range with O_DIRECT when buf
// allows (direct.go).
func (b *BucketBackend) ReadRange(ctx context.Context, key string, off, n int64, buf []byte) ([]byte, error) {
	var body []byte
	var readErr error
	r, err := b.Bucket.NewRangeReader(ctx, key, off, n, &blob.ReaderOptions{
		BeforeRead: func(as func(any) bool) error {
			var s3opts *[]func(*s3.Options)
			if as(&s3opts) {
				// S3 has no checksum of a range to return, and the SDK logs
				// that at every ranged read; the chunk's own check (GCM,
				// BLAKE3) is what guards it.
				*s3opts = append(*s3opts, func(o *s3.Options) { o.DisableLogOutputChecksumValidationSkipped = true })
				return nil
			}
			var f *os.File
			if !as(&f) {
				return nil
			}
			body, readErr = readRangeDirect(f, off, n, buf)
			return nil
		},
	})
	if err != nil {
		return nil, b.err(key, err)
	}
	defer r.Close()
	if readErr != nil || body != nil {
		return body, readErr
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	body = buf[:n]
	if got, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%s: %d of %d bytes at %d: %w", key, got, n, off, io.ErrUnexpectedEOF)
		}
		return nil, b.err(key, err)
	}
	return body, nil
}

// Exists implements Backend.
func (b *BucketBackend) Exists(ctx context.Context, key string) (bool, error) {
	ok, err := b.Bucket.Exists(ctx, key)
	return ok, b.err(key, err)
}

// Delete implements Backend.
func (b *BucketBackend) Delete(ctx context.Context, key string) error {
	if err := b.Bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return b.err(key, err)
	}
	return nil
}

// List implements Backend.
func (b *BucketBackend) List(ctx context.Context, prefix string, fn func(Object) error) error {
	it := b.Bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return b.err(prefix, err)
		}
		if obj.IsDir {
			continue
		}
		if err := fn(Object{Key: obj.Key, Size: obj.Size, ModTime: obj.ModTime}); err != nil {
			return err
		}
	}
}

// Close implements Backend; it closes the bucket.
func (b *BucketBackend) Close() error { return b.Bucket.Close() }

// err marks a bucket's not-found and precondition errors with the
// Backend's sentinels, keeping the gocloud error (and its code) inside.
func (b *BucketBackend) err(key string, err error) error {
	switch gcerrors.Code(err) {
	case gcerrors.OK:
		return nil
	case gcerrors.NotFound:
		return fmt.Errorf("%s: %w: %w", key, ErrObjectNotFound, err)
	case gcerrors.FailedPrecondition, gcerrors.AlreadyExists:
		return fmt.Errorf("%s: %w: %w", key, ErrObjectExists, err)
	}
	return err
}
