package backup

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// Vault is a stored Backup vault, in the document ARM serves.
type Vault struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Identity   *Identity         `json:"identity,omitempty"`
	ETag       string            `json:"eTag,omitempty"`
	Properties VaultProperties   `json:"properties"`
}

// Identity is the vault's managed identity.
type Identity struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId,omitempty"`
	TenantID    string `json:"tenantId,omitempty"`
}

// VaultProperties are the vault's settings.
type VaultProperties struct {
	StorageSettings                 []StorageSetting  `json:"storageSettings"`
	SecuritySettings                *SecuritySettings `json:"securitySettings,omitempty"`
	MonitoringSettings              json.RawMessage   `json:"monitoringSettings,omitempty"`
	FeatureSettings                 json.RawMessage   `json:"featureSettings,omitempty"`
	ProvisioningState               string            `json:"provisioningState"`
	ResourceMoveState               string            `json:"resourceMoveState,omitempty"`
	SecureScore                     string            `json:"secureScore,omitempty"`
	IsVaultProtectedByResourceGuard bool              `json:"isVaultProtectedByResourceGuard"`
}

// StorageSetting says where and how redundantly a data store keeps data.
type StorageSetting struct {
	DatastoreType string `json:"datastoreType"`
	Type          string `json:"type"`
}

// SecuritySettings are soft delete and immutability.
type SecuritySettings struct {
	SoftDeleteSettings   *SoftDeleteSettings   `json:"softDeleteSettings,omitempty"`
	ImmutabilitySettings *ImmutabilitySettings `json:"immutabilitySettings,omitempty"`
	EncryptionSettings   json.RawMessage       `json:"encryptionSettings,omitempty"`
}

// SoftDeleteSettings keep deleted backups for a while.
type SoftDeleteSettings struct {
	State                   string   `json:"state"`
	RetentionDurationInDays *float64 `json:"retentionDurationInDays,omitempty"`
}

// ImmutabilitySettings lock backups against deletion.
type ImmutabilitySettings struct {
	State string `json:"state"`
}

// VaultNotFound is the error for a vault that does not exist.
func VaultNotFound(name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound",
		"The Resource 'Microsoft.DataProtection/backupVaults/%s' under resource group was not found.", name)
}

// LoadVault reads the vault id in tx; VaultNotFound if absent.
func LoadVault(ctx context.Context, tx meta.Tx, id string) (Vault, error) {
	var v Vault
	name := id[strings.LastIndex(id, "/")+1:]
	_, err := load(ctx, tx, id, &v, func() error { return VaultNotFound(name) })
	return v, err
}

// load reads the JSON body of a stored resource into v; notFound makes the
// error when there is none.
func load(ctx context.Context, tx meta.Tx, id string, v any, notFound func() error) (meta.Resource, error) {
	res, err := tx.GetResource(ctx, id)
	if errs.Is(err, errs.NotFound) {
		return meta.Resource{}, notFound()
	}
	if err != nil {
		return meta.Resource{}, err
	}
	return res, json.Unmarshal(res.Body, v)
}

// softDeleteDays reports whether the vault's soft delete is on and for how
// many days it keeps a deleted instance (14 unless set).
func (v Vault) softDeleteDays() (float64, bool) {
	sec := v.Properties.SecuritySettings
	if sec == nil || sec.SoftDeleteSettings == nil {
		return 0, false
	}
	sd := sec.SoftDeleteSettings
	if sd.State != SoftDeleteOn && sd.State != SoftDeleteAlwaysOn {
		return 0, false
	}
	if sd.RetentionDurationInDays != nil {
		return *sd.RetentionDurationInDays, true
	}
	return 14, true
}
