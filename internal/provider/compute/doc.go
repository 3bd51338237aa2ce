// Package compute serves Microsoft.Compute managed disks and snapshots:
// create (Empty, Upload, or Copy from a snapshot), read, list, tag, grow and
// delete, SAS access (beginGetAccess/endGetAccess) and coffer's NBD attach.
// It parses and validates the ARM request, authorizes through its route,
// calls one use case of the disk engine (internal/disk) and writes the
// answer; the engine owns the records, the volumes and the work on bytes.
//
// Every mutating call is a long-running operation, as on Azure: the request
// validates and records the desired state and an ops operation in one
// transaction, answers 200/202 with Azure-AsyncOperation, Location and
// Retry-After, and an operation runner here calls the engine to do the work
// (provision, remove, store a snapshot). The status monitor is
// /subscriptions/{sub}/providers/Microsoft.Compute/locations/{location}/operations/{id};
// with &monitor=true the same URL is the Location target and answers with
// the operation's result once it is done.
package compute
