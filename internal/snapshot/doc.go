// Package snapshot turns a frozen, point-in-time view of a disk into a
// chunk-store index and back. It owns the backup pipeline (Upload), the
// restore side (Reader, Diff), garbage collection of chunks no snapshot
// names (Collector, InFlight) and the integrity check (Verify). The bytes
// of chunks and indexes are internal/chunk's business
// (docs/chunk-format.md); where the frozen view comes from is
// internal/volume's.
//
// # Words
//
//   - source: a frozen view of a disk (Source). Nothing may change it while
//     Upload reads it; internal/volume provides a copy-on-write view.
//   - snapshot: an index in the chunk store, named by the caller
//     ("disk/snap-1"). Every snapshot alone restores a full disk.
//   - family: the snapshots of one disk, each taken after the previous.
//     An incremental snapshot reads only the chunks the disk's change set
//     marks and copies the other digests from the previous snapshot.
//   - change set: the volume's bitmap of tracking blocks (64 KiB) written
//     since the previous snapshot was cut. A chunk (1 MiB, 16 blocks) is
//     read when any of its blocks is set.
//   - full read: no usable previous snapshot or change set; every chunk
//     is read, except those outside the allocated ranges, which are zero.
//   - zero chunk: a chunk of zeros, chunk.ZeroDigest in an index; never
//     stored, never read back.
//   - in-flight digest: a digest an upload will name in its index but has
//     not written the index for yet. The InFlight registry holds them so GC
//     spares them.
//   - mark, sweep, grace: GC marks every digest named by an index, a root
//     or the registry, and sweeps (deletes) the other chunks, except those
//     written less than the grace period ago.
//
// # Upload
//
// One goroutine reads the chunks to read, in disk order, into a fixed set
// of chunk-sized buffers; Workers goroutines Put them (hash, compress,
// encrypt, write; zero chunks come back as ZeroDigest without a write) and
// hand the digest back to be stored at its chunk's place in the index. The
// index is written with PutIndex only after every Put has returned, and
// PutIndex makes the chunks durable before the index, so a crash leaves
// either no index or an index whose chunks are all stored.
//
// An incremental's cost is the changed chunks it reads and stores plus a
// copy of the previous index's digest list: a 1% change costs the same on
// a 4 GiB and a 16 GiB disk, up to a memcpy and map inserts of 32 bytes a
// chunk.
//
// # Why GC never deletes a chunk an upload uses
//
// Dedup trusts that a chunk found present stays present until the index
// naming it exists (internal/chunk's "What GC must know"). Uploads and the
// Collector of one process share an InFlight registry:
//
//   - An upload adds each digest to its Lease, and only then checks that
//     the chunk is stored (Has; Put again if not). Digests copied from the
//     previous index are added before any chunk is read, and then the
//     previous index is checked to still exist (or every copied chunk with
//     Has, when the caller did not name it).
//   - The Collector claims a digest under the registry's mutex: only if no
//     lease holds it. Until that Delete has returned, adding the digest to
//     a lease waits.
//
// So for any digest an upload names, either the upload's registration came
// first, and the Collector skips the chunk, or the Collector's Delete came
// first and finished, and the upload's presence check, which follows its
// registration, sees the chunk missing and writes it again. A lease is
// released once the index is written (or the upload failed). A release
// while a collection runs keeps its digests marked until that collection
// ends: the collection listed the indexes before this one was written.
//
// A chunk found corrupt is in quarantine (internal/chunk): Has reports it
// absent, so an upload that reads its data stores it again. An upload
// that copies digests from a previous index it finds intact would skip
// that check, so it checks with Has, and reads from its source, every
// copied digest that is in quarantine. GC deletes a quarantined object
// only when no index or root names its digest and it is older than the
// grace period.
//
// Chunks in packs (chunk format version 2) are freed a pack at a time: a
// pack none of whose chunks is marked is deleted, one more than
// RepackDead dead is rewritten with its live chunks (chunk.RewritePack),
// and the unmarked chunks of either are claimed first, as above. A pack
// an upload has not flushed yet is not listed, so GC never sees its
// chunks. The upload's PutIndex flushes the packs before the index.
//
// Deleting is idempotent and GC keeps no state between runs, so a GC
// killed mid-sweep has deleted only unmarked chunks; running it again
// finishes the job. DeleteSnapshot removes only the index; its chunks go
// at the next GC that finds no other index, root or lease naming them.
//
// # Limits
//
// The registry is per process. GC must run in the process that runs the
// uploads against its store, and on one node only: an upload in another
// process is protected only by the grace period, which covers chunks it
// wrote but not old chunks it deduplicated against or copied from its
// previous index. Restores that read an index are not registered either:
// a disk hydrating from a snapshot whose index may be deleted meanwhile
// must be returned by the Collector's Roots callback.
//
// GC holds every marked digest in memory (a map entry, about 50 bytes, per
// distinct chunk: 50 MiB per TiB of distinct data at 1 MiB chunks).
package snapshot
