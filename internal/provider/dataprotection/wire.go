package dataprotection

import "github.com/coffer-backup/coffer/internal/backup"

// The wire forms of vaults, policies and backup instances are the
// documents internal/backup stores; the names here keep the handlers
// reading in ARM's words.
type (
	Vault            = backup.Vault
	Identity         = backup.Identity
	StorageSetting   = backup.StorageSetting
	SecuritySettings = backup.SecuritySettings
	Policy           = backup.Policy
	PolicyProperties = backup.PolicyProperties
	InstanceResource = backup.InstanceResource
	BackupInstance   = backup.BackupInstance
)
