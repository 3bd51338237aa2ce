// Package dataprotection serves Microsoft.DataProtection for managed disks:
// backup vaults with a system-assigned identity, disk backup policies,
// validateForBackup, backup instances and their protection states, and the
// operation status and result endpoints of both api-version families.
//
// Words:
//
//   - Vault: a Backup vault. Its managed identity (identity.principalId) is
//     the principal that must hold Disk Backup Reader on the disk and Disk
//     Snapshot Contributor on the snapshot resource group.
//   - Policy: when backups run (one repeating interval) and how long they
//     are kept (retention rules selected by tags).
//   - Backup instance (BI): one protected disk in one vault, with its policy
//     and snapshot resource group.
//   - Operation id: what the status and result URLs end in. Like Azure's it
//     is base64 of "<operation guid>;<guid>"; the first half is the
//     internal/ops operation.
//   - UserFacingError: the rich error DataProtection nests in
//     error.additionalInfo[].info, with a recommended action.
//
// The contract is the Microsoft Learn article in shared/seed (configure
// backup of a disk through REST at 2021-01-01); responses use the newest
// (2026-06-01) shapes for every accepted api-version, and requests are
// accepted in the spellings the official docs use.
package dataprotection
