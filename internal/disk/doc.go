// Package disk is the disk engine: managed disks and snapshots with real
// bytes, and the work on those bytes. provider/compute translates the ARM
// calls of Microsoft.Compute into its use cases; the backup engine calls
// them directly (take a snapshot of a disk into a group as a principal,
// make a disk from a snapshot).
//
// It owns the records of disks and snapshots in the metadata store (the
// document ARM shows plus the engine's own fields), the registry of open
// volumes, taking a snapshot (freeze, upload, commit, release), deleting
// one, creating a disk from one (a backed volume, hydrated in the
// background), the per-disk count of incremental snapshots (an indexed
// label, not a scan), and the lookups of the SAS data plane and of NBD.
//
// Words:
//
//   - Disk: the ARM resource, stored as a meta row whose body is a Record:
//     the wire document plus coffer's own fields (the live access grant,
//     the snapshot family, the change base, attachments, hydration).
//   - Unique id: the disk's uniqueId GUID; it names the disk's volume
//     directory, <data-dir>/volumes/<uniqueId>. A disk deleted and created
//     again under the same name gets a new one, so nothing of the old bytes
//     is ever reachable through the new disk.
//   - Volumes: the per-process registry of open volumes. A volume directory
//     can be open once (volume.Open takes an exclusive lock), so the SAS
//     data plane, resizes, snapshots and NBD exports share one
//     *volume.Volume through it, reference counted.
//   - Family: the incrementalSnapshotFamilyId a disk's incremental
//     snapshots share; a disk recreated under the same name starts a new
//     one. Azure allows MaxIncrementalSnapshots a family.
//   - Change base: the index of the snapshot the volume's change set is
//     relative to, so an incremental snapshot reads only changed blocks.
//   - Frozen view: the point-in-time copy-on-write view BeginSnapshot takes
//     before it answers; StoreSnapshot uploads it. It lives in memory only:
//     a restart loses it, and the snapshot is then removed, never left half
//     stored.
//   - Hydration: a disk made from a snapshot reads what is not yet local
//     from its own copy of the snapshot's index (hydrate/<uniqueId>), and
//     keeps what it read (copy on read), while a background task copies
//     the rest in, from where a reader last fetched on; then the disk
//     stands alone.
//   - Damage: a chunk of the snapshot a disk hydrates from that cannot be
//     read back (internal/chunk quarantines a corrupt one). Hydration
//     stops there; the disk stays Succeeded, because every other block
//     still reads (through its index, which it keeps) and writes, and
//     Azure has no damaged disk state. Instead its document shows
//     properties.cofferHydrationError (offset, length, chunk digest), the
//     log names the disk and the offset, verify names the disk (through
//     IndexNames) and the byte range, and a read of the range fails (an
//     NBD EIO, a SAS error) rather than returning zeros. Once a backup has stored
//     the chunk again, a resumed hydration (at a restart, or when the
//     server's scheduled verify finds the chunk healed) completes and
//     clears the property.
//   - Access: one grant of SAS access (beginGetAccess): an access id, read
//     or write, an expiry. It is kept in the record, so endGetAccess and
//     deletion revoke it at once: blobapi asks Lookup on every request.
//   - Disk state: Unattached (resting), ReadyToUpload (an Upload disk before
//     its upload), ActiveSAS (a read SAS is live), ActiveUpload (a write SAS
//     is live on an Upload disk), Attached (an NBD attachment; see
//     internal/nbd).
package disk
