// Package dataprotection serves Microsoft.DataProtection for managed disks:
// backup vaults with a system-assigned identity, disk backup policies,
// validateForBackup, backup instances and their protection states, resource
// guards and the vault's guard proxy, and the operation status and result
// endpoints of both api-version families.
//
// A handler parses and checks the request, calls one use case of
// internal/backup, and writes the answer; the durable operations it
// enqueues run those use cases too. The vault, policy and instance
// documents are internal/backup's (see wire.go).
//
// Words:
//
//   - Operation id: what the status and result URLs end in. Like Azure's it
//     is base64 of "<operation guid>;<guid>"; the first half is the
//     internal/ops operation.
//   - Other words (vault, policy, backup instance, UserFacingError) are
//     defined in internal/backup.
//
// The contract is the Microsoft Learn article in shared/seed (configure
// backup of a disk through REST at 2021-01-01). Handlers read and write the
// newest shapes; internal/arm reads each request and shapes each response
// in the shape of its own api-version (request_shape.go, values.go), so
// these handlers see one shape whatever version a client speaks.
package dataprotection
