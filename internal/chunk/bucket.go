package chunk

import (
	"context"
	"net/url"
	"os"
	"path/filepath"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/s3blob"
	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/errs"
)

// OpenBucket opens the blob bucket chunks live in.
//
//   - "" is the directory <dataDir>/blobs, created if absent.
//   - file:///abs/dir is that directory.
//   - s3://bucket?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true
//     is an S3 bucket (AWS SDK v2; the awssdk=v2 parameter is accepted and
//     ignored); credentials come from AWS_ACCESS_KEY_ID and
//     AWS_SECRET_ACCESS_KEY or the SDK's other usual sources.
//
// File buckets write each object to a temporary file next to it and rename
// it into place, so a crash never leaves half an object under its real
// name; a crash can leave a stray "<key>.<hex>.tmp", which List skips. They
// skip gocloud's ".attrs" sidecar files: chunks carry their own header.
func OpenBucket(ctx context.Context, rawURL, dataDir string) (*blob.Bucket, error) {
	if dir, ok, err := fileDir(rawURL, dataDir); err != nil {
		return nil, err
	} else if ok {
		return openDir(dir)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errs.E(errs.Invalid, "InvalidBlobURL", "blob URL %q", rawURL).Wrap(err)
	}
	switch u.Scheme {
	case s3blob.Scheme:
		q := u.Query()
		q.Del("awssdk") // gocloud now always uses v2
		u.RawQuery = q.Encode()
		b, err := (&s3blob.URLOpener{}).OpenBucketURL(ctx, u)
		if err != nil {
			return nil, errs.E(errs.Invalid, "InvalidBlobURL", "blob URL %q", rawURL).Wrap(err)
		}
		return b, nil
	default:
		return nil, errs.E(errs.Invalid, "InvalidBlobURL", "blob URL %q: scheme must be file or s3", rawURL)
	}
}

// fileDir returns the directory of a file bucket URL ("" included).
func fileDir(rawURL, dataDir string) (string, bool, error) {
	if rawURL == "" {
		if dataDir == "" {
			return "", false, errs.E(errs.Invalid, "InvalidBlobURL", "no blob URL and no data directory")
		}
		return filepath.Join(dataDir, "blobs"), true, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" {
		return "", false, nil
	}
	if u.Host != "" && u.Host != "localhost" || !filepath.IsAbs(u.Path) {
		return "", false, errs.E(errs.Invalid, "InvalidBlobURL", "file blob URL %q must be file:///absolute/path", rawURL)
	}
	return filepath.Clean(u.Path), true, nil
}

func openDir(dir string) (*blob.Bucket, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.E(errs.Internal, "BlobDirFailed", "creating %s", dir).Wrap(err)
	}
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{
		// Temporary files next to their target: os.TempDir may be another
		// file system, where rename fails.
		NoTempDir:   true,
		DirFileMode: 0o700,
		Metadata:    fileblob.MetadataDontWrite,
	})
	if err != nil {
		return nil, errs.E(errs.Internal, "BlobDirFailed", "opening %s", dir).Wrap(err)
	}
	return b, nil
}

// Open opens the bucket at rawURL (see OpenBucket) and a Store over it,
// encrypting with the key in dataDir (LoadOrCreateKey) unless
// opts.Plaintext or opts.Key is set. It fails here, rather than at the
// first write, on an S3 bucket that does not exist
// (errs.Invalid "BlobBucketNotFound") and on a bucket whose chunks another
// key wrote (BindKey). For a file bucket it sets opts.Sync to
// syncfs(2) on the bucket's file system: fileblob does not fsync, so one
// syncfs before an index is written makes all of a backup's chunks durable
// at the cost of one call, the way Proxmox Backup Server's default
// "filesystem" sync level does.
func Open(ctx context.Context, rawURL, dataDir string, opts Options) (*Store, error) {
	dir, isFile, err := fileDir(rawURL, dataDir)
	if err != nil {
		return nil, err
	}
	if opts.Key == nil && !opts.Plaintext {
		if opts.Key, err = LoadOrCreateKey(dataDir); err != nil {
			return nil, err
		}
	}
	b, err := OpenBucket(ctx, rawURL, dataDir)
	if err != nil {
		return nil, err
	}
	if isFile && opts.Sync == nil {
		opts.Sync = func(context.Context) error { return syncFS(dir) }
	}
	if !isFile {
		if err := checkBucket(ctx, b, rawURL); err != nil {
			b.Close()
			return nil, err
		}
	}
	s, err := New(b, opts)
	if err != nil {
		b.Close()
		return nil, err
	}
	s.closer = b.Close
	if err := s.BindKey(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// checkBucket fails on a bucket that does not exist or cannot be reached,
// naming it: otherwise serve would start, report healthy, and fail every
// snapshot with an internal error.
func checkBucket(ctx context.Context, b *blob.Bucket, rawURL string) error {
	name := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		name = u.Host
	}
	ok, err := b.IsAccessible(ctx)
	if err != nil {
		return errs.E(errs.Internal, "BlobBucketUnreachable", "bucket %q (blob URL %s) cannot be listed; check the endpoint and credentials", name, rawURL).Wrap(err)
	}
	if !ok {
		return errs.E(errs.Invalid, "BlobBucketNotFound", "bucket %q (blob URL %s) does not exist; create it, or name an existing one", name, rawURL)
	}
	return nil
}

// syncFS flushes the file system holding dir: every chunk file, its
// directory entries and the directories fileblob created.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}
