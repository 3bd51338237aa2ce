package chunk_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"gocloud.dev/blob/memblob"
	"golang.org/x/sys/unix"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
	"github.com/coffer-backup/coffer/internal/errs"
)

func TestDigestText(t *testing.T) {
	d := chunk.Sum([]byte("abc"))
	// BLAKE3-256("abc") from the reference test vectors.
	const want = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
	if d.String() != want {
		t.Fatalf("Sum(abc) = %s, want %s", d, want)
	}
	back, err := chunk.ParseDigest(want)
	if err != nil || back != d {
		t.Fatalf("ParseDigest = %s, %v", back, err)
	}
	for _, bad := range []string{"", want[:63], want + "0", strings.ToUpper(want), "zz" + want[2:]} {
		if _, err := chunk.ParseDigest(bad); !errs.Is(err, errs.Invalid) {
			t.Errorf("ParseDigest(%q) = %v, want Invalid", bad, err)
		}
	}
	if !chunk.ZeroDigest.IsZero() || d.IsZero() {
		t.Fatal("IsZero is wrong")
	}
}

func TestIndexEncoding(t *testing.T) {
	idx := chunk.Index{
		DiskSize:  3*4096 + 512,
		ChunkSize: 4096,
		Digests:   []chunk.Digest{chunk.Sum([]byte("a")), chunk.ZeroDigest, chunk.Sum([]byte("b")), chunk.Sum([]byte("c"))},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}
	b, err := idx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 40+4*32+32 || string(b[:4]) != "CFI1" {
		t.Fatalf("encoding is %d bytes starting %q", len(b), b[:4])
	}
	got, err := chunk.UnmarshalIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.DiskSize != idx.DiskSize || got.ChunkSize != idx.ChunkSize || !got.CreatedAt.Equal(idx.CreatedAt) ||
		len(got.Digests) != 4 || got.Digests[2] != idx.Digests[2] || got.ChunkLen(3) != 512 {
		t.Fatalf("round trip = %+v", got)
	}
	for _, bad := range []chunk.Index{
		{DiskSize: 4096, ChunkSize: 0},
		{DiskSize: 4096, ChunkSize: 4096},                                                  // missing digest
		{DiskSize: -1, ChunkSize: 4096},                                                    // negative
		{DiskSize: 1, ChunkSize: 4096, Digests: make([]chunk.Digest, 1)},                   // zero time
		{DiskSize: 1, ChunkSize: chunk.MaxChunkSize + 1, Digests: make([]chunk.Digest, 1)}, // too big
	} {
		if _, err := bad.MarshalBinary(); !errs.Is(err, errs.Invalid) {
			t.Errorf("Marshal(%+v) = %v, want Invalid", bad, err)
		}
	}
}

func FuzzUnmarshalIndex(f *testing.F) {
	idx := chunk.Index{DiskSize: 10000, ChunkSize: 4096, Digests: make([]chunk.Digest, 3), CreatedAt: time.Unix(1, 0)}
	b, _ := idx.MarshalBinary()
	f.Add(b)
	f.Add([]byte("CFI1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := chunk.UnmarshalIndex(b)
		if err != nil {
			if !errs.Is(err, errs.Internal) {
				t.Fatalf("error of kind %d", errs.KindOf(err))
			}
			return
		}
		again, err := x.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted an index that does not re-encode to itself: %v", err)
		}
	})
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := chunk.LoadOrCreateKey(dir)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys {
		if len(k) != chunk.KeySize || !bytes.Equal(k, keys[0]) {
			t.Fatalf("racing creators got different keys: %x vs %x", k, keys[0])
		}
	}
	fi, err := os.Stat(chunk.KeyPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 65 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(chunk.KeyPath(dir))); len(entries) != 1 {
		t.Fatalf("keys dir holds %d entries, want just chunk.key", len(entries))
	}
	if err := os.WriteFile(chunk.KeyPath(dir), []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = chunk.LoadOrCreateKey(dir)
	chunktest.WantCode(t, err, errs.Internal, "KeyCorrupt")
}

func TestOpenDir(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	s, err := chunk.Open(ctx, "", dataDir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain := chunktest.Compressible(1<<20, 1)
	d, _, err := s.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	idx := chunk.Index{DiskSize: 1 << 20, ChunkSize: 1 << 20, Digests: []chunk.Digest{d}, CreatedAt: time.Unix(1700000000, 0)}
	if err := s.PutIndex(ctx, "snap", idx); err != nil { // runs syncfs twice
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The layout docs/chunk-format.md promises, with no temporary files or
	// sidecars left behind.
	var files []string
	filepath.WalkDir(filepath.Join(dataDir, "blobs"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			rel, _ := filepath.Rel(dataDir, p)
			files = append(files, rel)
		}
		return nil
	})
	// One pack, one pack index naming it, the index, the key marker.
	if len(files) != 4 || !strings.HasPrefix(files[2], "blobs/packindex/") || !strings.HasPrefix(files[3], "blobs/packs/") ||
		files[0] != "blobs/indexes/snap" || files[1] != "blobs/"+chunk.KeyMarkerKey {
		t.Fatalf("files %v, want the index, the key marker, a pack index and a pack", files)
	}
	if _, err := os.Stat(chunk.KeyPath(dataDir)); err != nil {
		t.Fatalf("no key: %v", err)
	}

	// Reopen: same key, data readable.
	s, err = chunk.Open(ctx, "file://"+filepath.Join(dataDir, "blobs"), dataDir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(ctx, d, len(plain))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Get after reopen: %v", err)
	}
}

func TestOpenBucketURLs(t *testing.T) {
	for _, bad := range []string{"ftp://x", "file://relative/path", "://", "gs://bucket"} {
		if _, err := chunk.OpenBucket(t.Context(), bad, t.TempDir()); !errs.Is(err, errs.Invalid) {
			t.Errorf("OpenBucket(%q) = %v, want Invalid", bad, err)
		}
	}
	if _, err := chunk.OpenBucket(t.Context(), "", ""); !errs.Is(err, errs.Invalid) {
		t.Errorf("OpenBucket with neither URL nor data dir = %v", err)
	}
}

// TestCrashMidWrite kills a process in the middle of writing a chunk to a
// directory bucket: the chunk's name never appears with half a body, List
// skips the temporary file left behind, and the next Put writes the chunk.
func TestCrashMidWrite(t *testing.T) {
	if dir := os.Getenv("COFFER_CHUNK_CRASH_DIR"); dir != "" {
		crashWriter(dir) // the child: never returns
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashMidWrite$")
	cmd.Env = append(os.Environ(), "COFFER_CHUNK_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed: %v\n%s", err, out)
	}

	ctx := t.Context()
	b, err := chunk.OpenBucket(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := chunk.New(b, chunk.Options{Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain := crashChunk()
	d := chunk.Sum(plain)
	if ok, err := s.Has(ctx, d); err != nil || ok {
		t.Fatalf("Has after the crash = %v, %v; want false", ok, err)
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "blobs", "chunks", d.String()[:4], "*.tmp"))
	if len(tmps) != 1 {
		t.Fatalf("temporary files %v, want the crashed writer's one", tmps)
	}
	n := 0
	if err := s.List(ctx, func(chunk.Info) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("List after the crash: %d chunks, %v", n, err)
	}
	if _, stored, err := s.Put(ctx, plain); err != nil || stored == 0 {
		t.Fatalf("Put after the crash = %d, %v", stored, err)
	}
	if got, err := s.Get(ctx, d, len(plain)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Get after the crash: %v", err)
	}
}

func crashChunk() []byte { return bytes.Repeat([]byte("crash test chunk "), 1<<16) }

func crashWriter(dir string) {
	ctx := context.Background()
	b, err := chunk.OpenBucket(ctx, "", dir)
	if err != nil {
		panic(err)
	}
	plain := crashChunk()
	w, err := b.NewWriter(ctx, chunk.ChunkKey(chunk.Sum(plain)), nil)
	if err != nil {
		panic(err)
	}
	if _, err := w.Write(plain[:len(plain)/2]); err != nil {
		panic(err)
	}
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestPutAfterFailedWriter: when the writer other Puts of the same chunk
// wait for fails, they write the chunk themselves.
func TestPutAfterFailedWriter(t *testing.T) {
	b := memblob.OpenBucket(nil)
	defer b.Close()
	s, err := chunk.New(b, chunk.Options{Key: chunktest.Key(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain := chunktest.Random(1 << 20)
	dead, cancel := context.WithCancel(t.Context())
	cancel()
	for range 20 {
		var wg sync.WaitGroup
		var okErr error
		wg.Go(func() { s.Put(dead, plain) })
		wg.Go(func() { _, _, okErr = s.Put(t.Context(), plain) })
		wg.Wait()
		if okErr != nil {
			t.Fatalf("Put beside a failing Put: %v", okErr)
		}
		if err := s.Delete(t.Context(), chunk.Sum(plain)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDirectIO: a directory bucket writes and reads chunk bodies around
// the page cache (direct.go), all but the last partial block, and what it
// reads back is the chunk.
func TestDirectIO(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	s, err := chunk.Open(ctx, "", dataDir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain := chunktest.Random(1<<20 + 100) // an object of 1 MiB + 148 bytes: 257 pages
	d, _, err := s.Put(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil { // writes the pack
		t.Fatal(err)
	}
	loc, err := s.Locate(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dataDir, "blobs", loc.Key)
	if resident, pages := cachedPages(t, path); resident > 1 || pages < int((loc.Off+loc.Len)/4096) {
		t.Fatalf("after Put, %d of the pack's %d pages are in the page cache, want at most the tail", resident, pages)
	}
	buf := make([]byte, 0, len(plain))
	got, err := s.ReadInto(ctx, d, len(plain), buf)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("ReadInto: %v", err)
	}
	if resident, _ := cachedPages(t, path); resident > 1 {
		t.Fatalf("after ReadInto, %d pages are in the page cache, want at most the tail", resident)
	}
}

// cachedPages reports how many of a file's pages are in the page cache,
// and how many it has.
func cachedPages(t *testing.T, path string) (resident, pages int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}
