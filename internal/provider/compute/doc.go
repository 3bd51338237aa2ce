// Package compute serves Microsoft.Compute managed disks over real bytes:
// create (Empty or Upload), read, list, tag, grow and delete, and SAS access
// (beginGetAccess/endGetAccess) whose URLs the page-blob data plane in
// internal/blobapi serves.
//
// Every mutating call is a long-running operation, as on Azure: the request
// validates and records the desired state and an ops operation in one
// transaction, answers 200/202 with Azure-AsyncOperation, Location and
// Retry-After, and an idempotent handler does the work on disk (create or
// grow the volume, remove it). The status monitor is
// /subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/operations/{id};
// with &monitor=true the same URL is the Location target and answers with
// the operation's result once it is done.
//
// Words:
//
//   - Disk: the ARM resource, stored as a meta row whose body is a record:
//     the wire document plus coffer's own fields (the live access grant).
//   - Unique id: the disk's uniqueId GUID; it names the disk's volume
//     directory, <data-dir>/volumes/<uniqueId>. A disk deleted and created
//     again under the same name gets a new one, so nothing of the old bytes
//     is ever reachable through the new disk.
//   - Volumes: the per-process registry of open volumes. A volume directory
//     can be open once (volume.Open takes an exclusive lock), so the SAS
//     data plane, resizes and NBD exports share one *volume.Volume through
//     it, reference counted.
//   - Access: one grant of SAS access (beginGetAccess): an access id, read
//     or write, an expiry. It is kept in the disk's record, so endGetAccess
//     and deletion revoke it at once: blobapi asks Lookup on every request.
//     An expired access counts as revoked; the disk settles back to its
//     resting state the next time it is read or changed.
//   - Disk state: Unattached (resting), ReadyToUpload (an Upload disk before
//     its upload), ActiveSAS (a read SAS is live), ActiveUpload (a write SAS
//     is live on an Upload disk), Attached (an NBD attachment; see
//     internal/nbd).
package compute
