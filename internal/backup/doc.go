// Package backup holds the use cases of protecting disks, apart from the
// HTTP that asks for them (internal/provider/dataprotection): the backup
// policy model and its schedule and retention, the checks that a disk can be
// protected, configuring protection, the protection state machine, and
// deleting a backup instance with its data. The backup engine (scheduled
// backup runs, recovery points, retention, restore) grows here.
//
// It reads and writes the metadata store, and asks the rest of the server
// only through the small interfaces it declares: Disks (the disk engine),
// Groups (resource groups), Permissions (the authorizer) and BackupData
// (deleting a backup instance's snapshots).
//
// Words:
//
//   - Vault: a Backup vault. Its managed identity (identity.principalId) is
//     the principal that must hold Disk Backup Reader on the disk and Disk
//     Snapshot Contributor on the snapshot resource group.
//   - Policy: when backups run (one repeating interval, R/<start>/<period>)
//     and how long they are kept (retention rules chosen by tagging
//     criteria).
//   - Slot: a time the policy's schedule says a backup runs.
//   - Retention tag: the name of the retention rule a backup is kept under.
//   - Backup instance (BI): one protected disk (the datasource) in one
//     vault, with its policy and snapshot resource group. A disk is
//     protected by at most one instance; disk ids compare without regard to
//     case.
//   - Protection state: ConfiguringProtection, then ProtectionConfigured or
//     ConfiguringProtectionFailed; the Actions stop, suspend and resume.
//   - Resource guard: a resource (often another admin's) whose permissions
//     approve a vault's critical operations; a vault uses one through its
//     guard proxy (DppResourceGuardProxy).
//   - Critical operation: one a guard protects (CriticalOperations); it
//     runs only if the Caller approves it, unless the guard excludes it.
//   - Caller: the request's principal, its auxiliary tokens' principals
//     and the resourceGuardOperationRequests its body names.
//   - UserFacingError: the rich error DataProtection nests in
//     error.additionalInfo[].info, with a recommended action; it is also
//     what a failed configuration records on the instance.
package backup
