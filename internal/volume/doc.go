// Package volume is coffer's disk engine: a thin block volume in a
// directory, with changed-block tracking (CBT) that survives a crash. It owns
// the bytes of a managed disk; NBD (internal/nbd) and the page-blob data
// plane (internal/blobapi) are ways in, snapshots and backups read it.
//
// # Words
//
//   - volume: a fixed-size (grow-only), 512-byte-sector byte range.
//   - segment: one file of a volume's bytes. Segment i holds bytes
//     [i*SegmentSize, (i+1)*SegmentSize); the last ends with the volume.
//   - block: the change-tracking unit, BlockSize bytes (64 KiB); bit i of a
//     Bitmap covers bytes [i*BlockSize, (i+1)*BlockSize).
//   - epoch: a numbered period of change tracking. Each mutation (WriteAt,
//     Zero, ZeroFill) marks its blocks in the set of the epoch it ran in.
//   - cut: SwapChanged, which ends the current epoch and returns its set
//     (plus any earlier set not yet committed) at one instant.
//   - commit: CommitChanged, the consumer's word that it stored a cut, after
//     which the volume forgets those bits.
//
// # On disk
//
//	volume.json  {"format","version","size","blockSize","segmentSize"
//	             [,"backing"]}; replaced atomically (write, fsync, rename,
//	             fsync dir); the authority on size; "backing" names the
//	             image a volume made by CreateBacked still reads its
//	             unwritten blocks from
//	data, data.1, data.2, ...
//	             the volume's segments, sparse, every one present: whole
//	             segments but the last; holes read as zeros
//	cbt.meta     one page: magic, version, block size, epoch, pending flag,
//	             clean/open state, kernel boot id (uint64 words, little-endian)
//	cbt.0, cbt.1 bitmap slots, one bit per block; the epoch e uses slot e&1,
//	             the other holds the uncommitted cut when the pending flag is set
//	snapshot.cow, snapshot.cow.1, ...
//	             while a Snapshot lives: sparse, the pre-images of blocks
//	             written since it was taken, at their own offsets, segmented
//	             like the data; a segment file appears on its first
//	             pre-image; removed on Release and by Open (a snapshot does
//	             not outlive its process)
//	hydrated     while a backed volume fills: one bit per block that is local
//	             and durable (mapped shared like cbt.*); a block fetched from
//	             the backing is written through the page cache and gets its
//	             bit only after the sync that makes it durable (every GiB,
//	             at Flush and at the end of Hydrate), so a crash costs
//	             a fetch again, never a block read as zeros; removed once
//	             Hydrate is done
//
// Data goes through pread/pwrite on the segment files; Zero punches a hole
// (FALLOC_FL_PUNCH_HOLE), ZeroFill zeroes in place (FALLOC_FL_ZERO_RANGE);
// Allocated and Extents (the NBD block status of a range) walk
// SEEK_DATA/SEEK_HOLE. Segment 0 ("data") is flock'ed so
// only one process (and one Volume) has a directory open.
//
// # Segments
//
// A volume's bytes are split into segment files of SegmentSize bytes
// (DefaultSegmentSize, 1 TiB, unless Create was told otherwise; fixed for
// the volume's life and kept in volume.json) because one file cannot hold
// the larger disks Azure offers (32767 GiB for most SKUs, 65536 GiB for
// Ultra Disk and Premium SSD v2) on ext4: a file there has at most 2^32-1
// blocks, 16 TiB less one block with 4 KiB blocks, 4 TiB with the 1 KiB
// blocks mke2fs picks for small file systems, and 2 TiB for an ext3-style
// file mapped without extents. 1 TiB is the largest power of two under all of these
// with room to spare, and costs a 64 TiB volume 64 files. Segment files
// are opened on first use and stay open; I/O that crosses a boundary is
// split, which costs a disk within one segment a shift and a compare.
// Flush fdatasyncs only the segments written or punched since their last
// sync (a flag set after each write, swapped off under a per-segment lock
// so a second Flush waits for a sync already covering its writes).
//
// Version 1 of volume.json is a volume that fits in its first segment: one
// data file, as before segments, and a header without "segmentSize" is
// such a volume written by older code; its segment size is then
// DefaultSegmentSize, or the next power of two if its file is larger (which
// a file system with a higher file limit allowed), so that file is segment
// 0 and Grow adds segments after it. Version 2 marks a volume with more
// than one segment, so code that knows only the one data file refuses it
// rather than read zeros where segments 1... are.
//
// # Durability of change tracking
//
// The rule: every write marks its blocks before WriteAt returns (in fact
// before the pwrite starts), and after a crash the changed set may be larger
// than the truth but never smaller.
//
// The cbt files are mapped MAP_SHARED and bits are set with atomic OR on the
// mapping, so a set bit is in the kernel's page cache the moment it is set:
// it survives kill -9 of the process with no system call on the hot path.
// Flush msyncs the bitmaps after fdatasync'ing the data.
//
// Power loss is different: the kernel may write a data page back before the
// bitmap page that holds its bit, so after an unclean reboot the bitmap can
// miss writes that reached the disk. The metadata page records "open" and
// the boot id while a volume is open; Open of a volume that was not closed
// cleanly under a different boot id marks every block changed (the next
// incremental reads everything, deduplication makes that cheap to store).
// Same boot id means only the process died, and the bitmap is exact.
//
// # Atomic cuts without a lock on the hot path
//
// A mutation calls enter (read the epoch, raise that epoch's in-flight
// counter, re-read the epoch; retry if it moved), marks its bits in that
// epoch's slot, does its I/O, then leaves. SwapChanged clears the spare
// slot, bumps the epoch, then waits for the old epoch's counter to drain.
// So a write that returned before SwapChanged is in the cut; a write that
// starts after it is in the new set; a write in flight during it lands
// wholly in the cut and has completed when SwapChanged returns. The hot path
// costs two atomic adds on a counter (padded to its own cache line), two
// atomic loads, and an atomic OR only when a bit is not already set; no
// allocation.
//
// # Why 64 KiB blocks
//
// BenchmarkTrackingBlockSize (bench_test.go) on this project's 2-CPU
// build machine: a 64 GiB volume, random 4 KiB writes from two goroutines
// with a Flush every 256 writes (two runs, ns per write), and the simulated
// read amplification of an incremental (bytes it must read / bytes written)
// for writes totalling 1% of the disk:
//
//	block    ns/write+flush  bitmap/TiB  amplification  amplification
//	         run 1 / run 2   (per slot)  4 KiB random   64 KiB-1 MiB extents
//	4 KiB    41400 / 34700    32 MiB      1.0            1.00
//	16 KiB   29100 / 23200     8 MiB      3.9            1.02
//	64 KiB   27400 / 20900     2 MiB     14.9            1.11
//	256 KiB  26500 / 32700   512 KiB     47.5            1.45
//	1 MiB    23600 / 28300   128 KiB     92.7            2.84
//
// 4 KiB blocks cost about 1.5x per write: random writes dirty many more
// bitmap pages, which each Flush must msync, and the bitmap would be 1 GiB
// per slot for a 32 TiB disk. From 16 KiB up the write cost is flat within
// the noise of a shared machine, while the extra incremental reads for the
// realistic extent workload climb (1.45x at 256 KiB, 2.8x at 1 MiB). 64 KiB
// keeps extent reads within 11% of ideal with a 2 MiB-per-TiB bitmap.
// Scattered 4 KiB writes are the worst case at 15x; they are also rare in
// the guest file systems and databases coffer backs up. (What an
// incremental stores is set by the chunk size of internal/chunk, which is
// larger than a block; the block size sets what it reads.) The hot path
// itself is cheap: BenchmarkOverwrite4K puts a tracked 4 KiB overwrite
// within noise of a bare pwrite (2.2 vs 2.1 us).
//
// # Snapshots
//
// Volume.Snapshot (snapshot.go) is a point-in-time view built on the cut:
// it installs a copy-on-write view, then calls SwapChanged, so a write in
// the new epoch copies its block's old bytes aside (snapshot.cow) before
// overwriting it, and the drain in SwapChanged guarantees no write of the
// old epoch is still landing once the view is readable. The cut's set is
// what an incremental reads; Snapshot.Commit calls CommitChanged once the
// backup is durable, Release without Commit leaves the bits for the next
// snapshot.
package volume
