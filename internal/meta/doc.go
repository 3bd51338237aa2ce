// Package meta is coffer's metadata store: every ARM resource (resource
// groups, disks, snapshots, vaults, policies, role assignments...) and every
// long-running operation lives here, in one SQL schema that runs unchanged on
// the embedded SQLite (default) and on PostgreSQL (several nodes).
//
// Words:
//
//   - Resource: one ARM resource, stored as its canonical id, type, the ids
//     of its subscription and resource group, and its JSON document. Keys are
//     the lower-cased id, because ARM ids compare case-insensitively; the
//     stored id keeps the casing of the request that created it, and that is
//     what responses echo.
//   - Operation: a durable long-running operation (see internal/ops), a row
//     that survives restarts and is leased by one worker at a time.
//   - Tx: a unit of work; a resource and the operation that finishes it are
//     written in one transaction so a crash never leaves one without the other.
//
// The schema is in migrations/ (goose) and documented in docs/schema.md.
// Times are stored as Unix nanoseconds (BIGINT) so both databases compare
// them the same way.
package meta
