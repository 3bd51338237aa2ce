package dataprotection

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/google/uuid"
)

type vaultInput struct {
	Location   *string           `json:"location"`
	Tags       map[string]string `json:"tags"`
	Identity   *Identity         `json:"identity"`
	Properties *struct {
		StorageSettings  []StorageSetting  `json:"storageSettings"`
		SecuritySettings *SecuritySettings `json:"securitySettings"`
		// Approvals of the vault's resource guard for a write that lowers
		// its security.
		ResourceGuardOperationRequests []string        `json:"resourceGuardOperationRequests"`
		MonitoringSettings             json.RawMessage `json:"monitoringSettings"`
		FeatureSettings                json.RawMessage `json:"featureSettings"`
	} `json:"properties"`
}

var vaultName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,49}$`)

func (s *Service) loadVault(ctx context.Context, tx meta.Tx, id string) (Vault, error) {
	return backup.LoadVault(ctx, tx, id)
}

// checkIdentity normalizes the identity type; only system-assigned
// identities (or none) exist on this server.
func checkIdentity(id *Identity) error {
	if id == nil {
		return nil
	}
	switch {
	case strings.EqualFold(id.Type, "SystemAssigned"):
		id.Type = "SystemAssigned"
	case strings.EqualFold(id.Type, "None"), id.Type == "":
		id.Type = "None"
	default:
		return invalid("UserErrorUnsupportedIdentityType", "identity.type",
			"The identity type '%s' is not supported: use 'SystemAssigned' or 'None'.", id.Type)
	}
	return nil
}

func checkStorageSettings(settings []StorageSetting, required bool) error {
	if len(settings) == 0 {
		if required {
			return invalid("InvalidRequestContent", "properties.storageSettings",
				"properties.storageSettings is required at api-version 2021-01-01: give at least one {datastoreType, type}.")
		}
		return nil
	}
	for i := range settings {
		ds, ok := oneOfFold(settings[i].DatastoreType, "VaultStore", "OperationalStore", "ArchiveStore", "SnapshotStore")
		if !ok {
			return invalid("InvalidRequestContent", "properties.storageSettings.datastoreType",
				"properties.storageSettings[%d].datastoreType '%s' is not one of VaultStore, OperationalStore, ArchiveStore.", i, settings[i].DatastoreType)
		}
		t, ok := oneOfFold(settings[i].Type, "LocallyRedundant", "GeoRedundant", "ZoneRedundant")
		if !ok {
			return invalid("InvalidRequestContent", "properties.storageSettings.type",
				"properties.storageSettings[%d].type '%s' is not one of LocallyRedundant, GeoRedundant, ZoneRedundant.", i, settings[i].Type)
		}
		settings[i] = StorageSetting{DatastoreType: ds, Type: t}
	}
	return nil
}

func checkSecurity(sec *SecuritySettings) error {
	if sec == nil {
		return nil
	}
	if sd := sec.SoftDeleteSettings; sd != nil {
		st, ok := oneOfFold(sd.State, "Off", "On", "AlwaysOn")
		if !ok {
			return invalid("InvalidRequestContent", "properties.securitySettings.softDeleteSettings.state",
				"softDeleteSettings.state '%s' is not one of Off, On, AlwaysOn.", sd.State)
		}
		sd.State = st
		if d := sd.RetentionDurationInDays; d != nil && (*d < 14 || *d > 180) {
			return invalid("InvalidRequestContent", "properties.securitySettings.softDeleteSettings.retentionDurationInDays",
				"softDeleteSettings.retentionDurationInDays must be from 14 to 180, not %v.", *d)
		}
	}
	if im := sec.ImmutabilitySettings; im != nil {
		st, ok := oneOfFold(im.State, "Disabled", "Unlocked", "Locked")
		if !ok {
			return invalid("InvalidRequestContent", "properties.securitySettings.immutabilitySettings.state",
				"immutabilitySettings.state '%s' is not one of Disabled, Unlocked, Locked.", im.State)
		}
		im.State = st
	}
	return nil
}

// applyIdentity sets the wanted identity on v, keeping an existing
// principal: a system-assigned identity lives as long as its vault.
func (s *Service) applyIdentity(v *Vault, want *Identity) {
	if want == nil {
		return
	}
	if want.Type == "None" {
		v.Identity = &Identity{Type: "None"}
		return
	}
	if v.Identity != nil && v.Identity.PrincipalID != "" {
		return
	}
	v.Identity = &Identity{Type: "SystemAssigned", PrincipalID: uuid.NewString(), TenantID: s.TenantID}
}

func (s *Service) putVault(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName")
	if !vaultName.MatchString(name) {
		return nil, invalid("InvalidResourceName", "vaultName",
			"The vault name '%s' is invalid: use 2-50 letters, digits and hyphens, starting with a letter.", name)
	}
	var in vaultInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, invalid("InvalidRequestContent", "properties", "The request content must have 'properties'.")
	}
	if err := checkStorageSettings(in.Properties.StorageSettings, r.APIVersion == "2021-01-01"); err != nil {
		return nil, err
	}
	if err := checkSecurity(in.Properties.SecuritySettings); err != nil {
		return nil, err
	}
	if err := checkIdentity(in.Identity); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(&in.Tags); err != nil {
		return nil, err
	}
	id := vaultID(sub, group, name)
	var out Vault
	var opID string
	created := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := groups.RequireActive(ctx, tx, sub, group); err != nil {
			return err
		}
		existing, err := s.loadVault(ctx, tx, id)
		switch {
		case err == nil:
			if normalizeLocation(existing.Location) != normalizeLocation(*in.Location) {
				return invalid("UserErrorVaultLocationChange", "location",
					"The vault '%s' is in '%s'; a vault cannot move to '%s'.", existing.Name, existing.Location, *in.Location)
			}
			out = existing
		case errs.Is(err, errs.NotFound):
			out = Vault{ID: id, Name: name, Type: backup.VaultType, Location: normalizeLocation(*in.Location)}
			created = true
		default:
			return err
		}
		out.Tags = in.Tags
		s.applyIdentity(&out, in.Identity)
		if in.Properties.StorageSettings != nil {
			out.Properties.StorageSettings = in.Properties.StorageSettings
		}
		if out.Properties.StorageSettings == nil {
			out.Properties.StorageSettings = []StorageSetting{}
		}
		before := out.Properties.SecuritySettings
		if out.Properties.SecuritySettings, err = backup.MergeSecurity(out.Properties.SecuritySettings, in.Properties.SecuritySettings); err != nil {
			return err
		}
		if backup.SecurityReduced(before, out.Properties.SecuritySettings) {
			if err := s.Backup.Authorize(ctx, tx, id, backup.OpReduceSecurity, callerOf(r, in.Properties.ResourceGuardOperationRequests)); err != nil {
				return err
			}
		}
		if in.Properties.MonitoringSettings != nil {
			out.Properties.MonitoringSettings = in.Properties.MonitoringSettings
		}
		if in.Properties.FeatureSettings != nil {
			out.Properties.FeatureSettings = in.Properties.FeatureSettings
		}
		out.Properties.ResourceMoveState = "Unknown"
		out.Properties.SecureScore = "None"
		out.ETag = uuid.NewString()
		if created {
			out.Properties.ProvisioningState = "Provisioning"
		} else {
			out.Properties.ProvisioningState = "Succeeded"
		}
		if _, err := s.save(ctx, tx, id, backup.VaultType, name, "/subscriptions/"+sub+"/resourceGroups/"+group, out); err != nil {
			return err
		}
		if !created {
			return nil
		}
		_, opID, err = s.enqueue(ctx, tx, kindCreateVault, id, vaultOpInput{VaultID: id})
		return err
	})
	if err != nil {
		return nil, err
	}
	if !created {
		return arm.OK(out), nil
	}
	s.Ops.Wake()
	return arm.Accepted(http.StatusCreated, out, statusURL(r, sub, out.Location, opID),
		r.Link(id+"/operationResults/"+opID), 10), nil
}

type vaultOpInput struct {
	VaultID string `json:"vaultId"`
}

func (s *Service) runCreateVault(ctx context.Context, op meta.Operation) (any, error) {
	var in vaultOpInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, in.VaultID)
		if err != nil {
			return err
		}
		v.Properties.ProvisioningState = "Succeeded"
		_, err = s.save(ctx, tx, v.ID, backup.VaultType, v.Name, groupIDOf(v.ID), v)
		return err
	})
	return nil, err
}

// groupIDOf is the resource group id at the start of a resource id.
func groupIDOf(id string) string {
	parts := strings.SplitN(id, "/", 6)
	return strings.Join(parts[:5], "/")
}

func (s *Service) getVault(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	v, err := s.loadVault(ctx, s.Store, vaultOf(r))
	if err != nil {
		return nil, err
	}
	return arm.OK(v), nil
}

func (s *Service) patchVault(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in vaultInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := checkIdentity(in.Identity); err != nil {
		return nil, err
	}
	if in.Properties != nil { // the front door refuses it at 2021-01-01, whose PATCH has no properties
		if err := checkSecurity(in.Properties.SecuritySettings); err != nil {
			return nil, err
		}
	}
	var out Vault
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, vaultOf(r))
		if err != nil {
			return err
		}
		if in.Tags != nil {
			v.Tags = in.Tags
		}
		s.applyIdentity(&v, in.Identity)
		if p := in.Properties; p != nil {
			before := v.Properties.SecuritySettings
			if v.Properties.SecuritySettings, err = backup.MergeSecurity(v.Properties.SecuritySettings, p.SecuritySettings); err != nil {
				return err
			}
			if backup.SecurityReduced(before, v.Properties.SecuritySettings) {
				if err := s.Backup.Authorize(ctx, tx, v.ID, backup.OpReduceSecurity, callerOf(r, p.ResourceGuardOperationRequests)); err != nil {
					return err
				}
			}
			if p.MonitoringSettings != nil {
				v.Properties.MonitoringSettings = p.MonitoringSettings
			}
			if p.FeatureSettings != nil {
				v.Properties.FeatureSettings = p.FeatureSettings
			}
		}
		v.ETag = uuid.NewString()
		out = v
		_, err = s.save(ctx, tx, v.ID, backup.VaultType, v.Name, groupIDOf(v.ID), v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

func (s *Service) deleteVault(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	id := vaultOf(r)
	var opID string
	var loc string
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, id)
		if err != nil {
			return err
		}
		n, err := s.Backup.CountInstances(ctx, tx, v.ID)
		if err != nil {
			return err
		}
		if n > 0 {
			return errs.E(errs.Conflict, "UserErrorBackupVaultHasBackupInstances",
				"The Backup vault '%s' holds %d backup instances; delete them (stop protection and delete data) before the vault.", v.Name, n)
		}
		loc = v.Location
		v.Properties.ProvisioningState = "Deleting"
		if _, err := s.save(ctx, tx, v.ID, backup.VaultType, v.Name, groupIDOf(v.ID), v); err != nil {
			return err
		}
		_, opID, err = s.enqueue(ctx, tx, kindDeleteVault, v.ID, vaultOpInput{VaultID: v.ID})
		return err
	})
	if errs.Is(err, errs.NotFound) {
		return arm.NoContent(), nil
	}
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	sub := r.Param("subscriptionId")
	return arm.Accepted(http.StatusAccepted, nil, statusURL(r, sub, loc, opID), resultURL(r, sub, loc, opID), 10), nil
}

func (s *Service) runDeleteVault(ctx context.Context, op meta.Operation) (any, error) {
	var in vaultOpInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	_, err := s.Store.DeleteTree(ctx, in.VaultID)
	return nil, err
}

func (s *Service) listVaults(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	q := meta.Query{Type: backup.VaultType, Subscription: r.Param("subscriptionId"), ResourceGroup: r.Param("resourceGroupName")}
	return listUnder[Vault](ctx, s, r, q)
}

func (s *Service) checkNameAvailability(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Name == "" {
		return nil, invalid("InvalidRequestContent", "name", "'name' is required.")
	}
	if in.Type != "" && !strings.EqualFold(in.Type, "Microsoft.DataProtection/BackupVaults") {
		return nil, invalid("InvalidRequestContent", "type", "'type' must be 'Microsoft.DataProtection/BackupVaults', not '%s'.", in.Type)
	}
	type result struct {
		NameAvailable bool   `json:"nameAvailable"`
		Reason        string `json:"reason,omitempty"`
		Message       string `json:"message,omitempty"`
	}
	if !vaultName.MatchString(in.Name) {
		return arm.OK(result{Reason: "Invalid", Message: "Vault names are 2-50 letters, digits and hyphens, starting with a letter."}), nil
	}
	_, err := s.Store.GetResource(ctx, vaultID(r.Param("subscriptionId"), r.Param("resourceGroupName"), in.Name))
	switch {
	case err == nil:
		return arm.OK(result{Reason: "AlreadyExists", Message: "A Backup vault named '" + in.Name + "' already exists in this resource group."}), nil
	case errs.Is(err, errs.NotFound):
		return arm.OK(result{NameAvailable: true}), nil
	default:
		return nil, err
	}
}

func (s *Service) vaultOperationResult(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	op, err := s.lookupOperation(ctx, r)
	if err != nil {
		return nil, err
	}
	return resultOr(r, op, func() (*arm.Response, error) { return s.getVault(ctx, r) })
}
