// Package chunk is coffer's content-addressed chunk store: what incremental
// disk snapshots are made of. It owns the format of chunk and index objects
// (docs/chunk-format.md), their encryption key, and the opening of the blob
// bucket they live in (a directory, S3; Azure Blob later). The model is
// Proxmox Backup Server's fixed index over a chunk store.
//
// # Words
//
//   - chunk: a piece of a disk, ChunkSize bytes at a ChunkSize-aligned
//     offset (the last piece of a disk may be shorter). Stored once, however
//     many snapshots hold it.
//   - digest: a chunk's name, the BLAKE3-256 hash of its plaintext.
//   - zero chunk: a chunk of zeros of any length. It is named ZeroDigest,
//     never stored, and read back without I/O; a thin disk's unwritten
//     space costs nothing.
//   - object: a chunk as stored: a header, then the chunk zstd-compressed
//     (unless that does not shrink it) and sealed with AES-256-GCM.
//   - pack: objects back to back with their table, written whole as
//     packs/<2 hex>/<random 64 hex> once it reaches Options.PackSize
//     (16 MiB) or at a flush (format version 2).
//   - pack index: packindex/<hash> objects saying which pack holds which
//     chunk where; loaded into memory when the store is first used.
//   - loose chunk: a version-1 object, chunks/<4 hex>/<digest hex>; still
//     read, deduplicated onto, quarantined and swept, never written.
//   - flush: write the open pack and any not yet written, make them
//     durable, write their pack index (Sync; PutIndex starts with one).
//   - key: the 32-byte AES key in <dataDir>/keys/chunk.key. Losing it loses
//     every chunk; every node sharing a bucket needs the same key.
//   - key marker: the bucket's key-fingerprint object, a keyed digest
//     naming the key that writes it; Open refuses a bucket marked by
//     another key (BindKey).
//   - index: a snapshot: disk size, chunk size, creation time and the digest
//     of every chunk in disk order, with a BLAKE3 checksum, at
//     indexes/<name>.
//   - dedup: Put of a chunk that is already stored writes nothing.
//   - backend: the object storage under a Store (Backend): a gocloud
//     bucket (BucketBackend), possibly wrapped: Retry retries its
//     transient failures with capped exponential backoff; the tests'
//     chunktest.Faulty injects failures.
//
// # Ordering and durability
//
// A snapshot is written chunks first, index last: Put every chunk, then
// PutIndex. Put seals into a place it reserves in the open pack;
// PutIndex flushes (writes the packs, one syncfs(2) on a directory
// bucket, nothing on S3, whose writes are durable when they return; then
// their pack index), writes the index and syncs again, so an index is
// never visible, after a crash either, before the chunks it names. A
// pack index lost in a crash is rebuilt from the packs' own tables. A
// crash before PutIndex leaves only unreferenced chunks, which GC removes.
//
// In the process that put it, a chunk counts as stored (Has, dedup) from
// the moment it is in a pack, durable or not: whoever names it in an index
// flushes first, and a flush covers every chunk put before it, rewriting a
// pack whose write failed. Other processes see it once its pack is
// written. Packs are shared by all uploads of a store.
//
// A directory bucket writes each object under a temporary name next to it
// and renames it into place (gocloud's fileblob does this; the crash test
// kills a writer mid-object to hold it to that), so a name never shows
// half an object. What a crash leaves is a "<name>.<hex>.tmp" file, which
// listings skip.
//
// # Integrity
//
// Get re-hashes every chunk it returns and compares it with the digest it
// was asked for, so no corruption, truncation, misplaced object or bug in
// this package returns wrong bytes: it is errs.Internal "ChunkCorrupt".
// ReadIntoMany (a restore's reads) fetches neighbouring chunks of a pack
// with one ranged read and checks each chunk of it the same way; one that
// fails is read again alone, so its error and quarantine are Get's.
// GCM's additional data binds the header and the digest, so an encrypted
// object copied under another chunk's name does not even decrypt.
//
// # Quarantine
//
// Dedup trusts any object under a chunk's name, so a damaged chunk would
// otherwise be deduplicated onto by every later backup of the same data,
// each broken from birth. When Get or ReadInto finds a chunk corrupt (it
// fails to open at the length its own header states; a wrong key is not
// damage), the store copies the object to quarantine/<4 hex>/<digest hex>
// and flags its pack index entry corrupt, or moves a loose chunk there
// (Quarantine). Has then reports the chunk absent, so the next Put of its
// data stores it afresh, which heals every index naming it; until then Get
// reports it ChunkCorrupt wrapping ErrQuarantined. This is what Proxmox
// Backup Server's verify does by renaming a bad chunk to .bad. Uploads that
// copy digests from a previous index consult ListQuarantine too
// (internal/snapshot). A quarantined object is never read or deduplicated
// onto; it is kept as evidence while a snapshot names its digest, and
// garbage collection deletes it after that, as it does an unreferenced
// chunk.
//
// The move is a Read, a Write and a Delete through the store's Backend
// (object stores have no rename), so the retry wrapper covers it. The copy
// is written before the original is deleted: a crash or a failure in
// between leaves the damaged object under chunks/ too, and the next read
// that finds it moves it again.
//
// Within a process Quarantine takes the digest's writer slot, so it never
// deletes a good object a concurrent Put writes. A quarantine by another
// process (coffer verify beside coffer serve) could in a narrow race
// delete a chunk that GC deleted and a Put wrote again in between; the
// next verify reports the chunk missing.
//
// # What GC must know
//
// Dedup trusts that a chunk present at Put stays present until the index
// naming it is written. A sweep that deletes unreferenced chunks must
// therefore not run between a backup's Put and its PutIndex unless it
// spares the chunks that backup uses: mark from every index and from every
// in-flight backup's digests, or hold off while backups run (PBS marks with
// access times and a cutoff at the oldest running writer). ModTime in List
// is the object's write time; a dedup hit does not refresh it.
// The same holds for the digests an incremental backup copies from the
// previous index without a Put: retention may delete that index while the
// backup runs.
//
// # Chunk size
//
// DefaultChunkSize is 1 MiB, chosen by BenchmarkPut and
// BenchmarkIncrementalCost (bench_test.go) on a shared 2-core machine
// (ranges over runs), chunks half random and half text-like, encryption on:
//
//	chunk size                         512 KiB   1 MiB     4 MiB
//	Put, CPU only, 1 goroutine         300-370   365-415   395-415  MB/s
//	Put, CPU only, 8 goroutines        525-840   690-820   700-815
//	Put to a directory, 8 goroutines   340-385   355-400   525-560
//	Put to MinIO (same host), 8 gor.   113-124   137-170   230-235
//	Get, CPU only, 2 goroutines        1290-1450 1275-1400 1140-1380
//	objects per GiB                    2048      1024      256
//	stored/changed, scattered blocks:
//	  0.1% of the disk                 8.0x      15.9x     62.5x
//	  1% of the disk                   7.7x      14.8x     47.2x
//	  5% of the disk                   6.7x      11.2x     19.2x
//	stored/changed, 64K-1M extents:
//	  0.1% / 1% / 5% of the disk       1.7x      2.6x      7.4-6.5x
//
// Compression, zstd at its fastest level, is two thirds of Put's CPU;
// BLAKE3 (4 GB/s) and AES-GCM (5 GB/s) are the rest. (Since then Put
// samples each chunk first and skips zstd where it cannot help, entropy.go,
// so random and encrypted data costs only the hash and the cipher.) The CPU cost does not
// depend on chunk size; the per-object cost of a file or an S3 request
// does, and favors 4 MiB. The other side is incremental cost: the volume
// tracks changes in 64 KiB blocks (internal/volume.DefaultBlockSize) and a
// changed block re-stores its whole chunk. With writes scattered over 1% of
// a disk's blocks (the worst case), 4 MiB chunks re-store 47 times what
// changed, so a daily incremental stores about half the disk; 1 MiB chunks
// re-store 15 times, 512 KiB 8 times. With the extents file systems and
// databases mostly write, 4 MiB still re-stores 7.4 times what changed,
// 1 MiB 2.6 times. 1 MiB keeps incrementals three times smaller than 4 MiB
// for about 30% less full-backup throughput to a directory and 35% less to
// a MinIO sharing the same two cores; 512 KiB saves a further third of an
// incremental but doubles objects and requests and is slower still. An
// index costs 32 bytes a chunk: 32 MiB for a 1 TiB disk.
//
// The chunk size is recorded in each index, so it can change later without
// a format change; only dedup between indexes of different chunk sizes is
// lost. It must be a multiple of the volume's tracking block size (1 MiB is
// 16 blocks of 64 KiB) so a chunk is dirty exactly when one of its blocks
// is.
package chunk

// DefaultChunkSize is the chunk size new snapshots use; the package comment
// gives the measurements behind it.
const DefaultChunkSize = 1 << 20
