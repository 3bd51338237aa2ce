package dataprotection

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

func activityOf(r *arm.Request) string {
	if c := r.HTTP.Header.Get("x-ms-correlation-request-id"); c != "" {
		return c
	}
	return r.RequestID
}

func (s *Service) validateForBackup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		BackupInstance *BackupInstance `json:"backupInstance"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.BackupInstance == nil {
		return nil, invalid("InvalidRequestContent", "backupInstance", "The request needs 'backupInstance', the backup instance to validate.")
	}
	vault := vaultOf(r)
	if err := backup.NormalizeInstance(in.BackupInstance, vault); err != nil {
		return nil, err
	}
	var opID, location string
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, vault)
		if err != nil {
			return err
		}
		location = v.Location
		if err := s.Backup.EnsureUnprotected(ctx, tx, in.BackupInstance, "", activityOf(r)); err != nil {
			return err
		}
		_, opID, err = s.enqueue(ctx, tx, kindValidate, v.ID,
			backup.ProtectionRequest{VaultID: v.ID, Instance: *in.BackupInstance, ActivityID: activityOf(r)})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	sub := r.Param("subscriptionId")
	return arm.Accepted(http.StatusAccepted, nil, statusURL(r, sub, location, opID), resultURL(r, sub, location, opID), 10), nil
}

func (s *Service) runValidate(ctx context.Context, op meta.Operation) (any, error) {
	var in backup.ProtectionRequest
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	if err := s.Backup.Validate(ctx, in); err != nil {
		return nil, err
	}
	return newJobInfo(), nil
}

func (s *Service) putInstance(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		Tags       map[string]string `json:"tags"`
		Properties *BackupInstance   `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, invalid("InvalidRequestContent", "properties", "The request content must have 'properties'.")
	}
	vault := vaultOf(r)
	if err := backup.NormalizeInstance(in.Properties, vault); err != nil {
		return nil, err
	}
	name := r.Param("backupInstanceName")
	id := vault + "/backupInstances/" + name
	var out InstanceResource
	var opID, location string
	created := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, vault)
		if err != nil {
			return err
		}
		location = v.Location
		out, created, err = s.Backup.PutInstance(ctx, tx, backup.InstanceRequest{VaultID: vault, Name: name,
			Tags: in.Tags, Properties: *in.Properties, ActivityID: activityOf(r), Caller: callerOf(r, in.Properties.ResourceGuardOperationRequests)})
		if err != nil {
			return err
		}
		_, opID, err = s.enqueue(ctx, tx, kindConfigure, id,
			backup.ProtectionRequest{VaultID: vault, InstanceID: id, Instance: out.Properties, ActivityID: activityOf(r)})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return arm.Accepted(status, out, statusURL(r, r.Param("subscriptionId"), location, opID),
		r.Link(id+"/operationResults/"+opID), 15), nil
}

func (s *Service) runConfigure(ctx context.Context, op meta.Operation) (any, error) {
	var in backup.ProtectionRequest
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Backup.Configure(ctx, in)
}

func (s *Service) getInstance(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	bi, err := s.Backup.Instance(ctx, s.Store, vaultOf(r)+"/backupInstances/"+r.Param("backupInstanceName"))
	if err != nil {
		return nil, err
	}
	return arm.OK(bi), nil
}

func (s *Service) listInstances(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	return listUnder[InstanceResource](ctx, s, r, meta.Query{Type: backup.InstanceType, Parent: vaultOf(r)},
		func(bi *InstanceResource) bool { return !bi.SoftDeleted() })
}

type instanceOpInput struct {
	VaultID    string `json:"vaultId"`
	InstanceID string `json:"instanceId"`
	Action     string `json:"action,omitempty"`
}

// startOnInstance runs start on the addressed backup instance and, in the
// same transaction, enqueues an operation of kind on it; it answers 202
// with the location-scoped status and result URLs.
func (s *Service) startOnInstance(ctx context.Context, r *arm.Request, kind, action string, retryAfter int,
	start func(tx meta.Tx, id string) (InstanceResource, error)) (*arm.Response, error) {
	vault := vaultOf(r)
	id := vault + "/backupInstances/" + r.Param("backupInstanceName")
	var opID, location string
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, vault)
		if err != nil {
			return err
		}
		location = v.Location
		bi, err := start(tx, id)
		if err != nil {
			return err
		}
		_, opID, err = s.enqueue(ctx, tx, kind, bi.ID, instanceOpInput{VaultID: vault, InstanceID: bi.ID, Action: action})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	sub := r.Param("subscriptionId")
	return arm.Accepted(http.StatusAccepted, nil, statusURL(r, sub, location, opID), resultURL(r, sub, location, opID), retryAfter), nil
}

func (s *Service) deleteInstance(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	resp, err := s.startOnInstance(ctx, r, kindDeleteInstance, "", 30, func(tx meta.Tx, id string) (InstanceResource, error) {
		return s.Backup.StartDelete(ctx, tx, id, callerOf(r, nil))
	})
	if errs.Is(err, errs.NotFound) {
		// Deleting what is not there succeeds, unless the vault is missing.
		if _, verr := s.loadVault(ctx, s.Store, vaultOf(r)); verr != nil {
			return nil, verr
		}
		return arm.NoContent(), nil
	}
	return resp, err
}

func (s *Service) runDeleteInstance(ctx context.Context, op meta.Operation) (any, error) {
	var in instanceOpInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Backup.DeleteInstance(ctx, in.InstanceID, op.ID)
}

func (s *Service) instanceOperationResult(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	op, err := s.lookupOperation(ctx, r)
	if err != nil {
		return nil, err
	}
	return resultOr(r, op, func() (*arm.Response, error) { return s.getInstance(ctx, r) })
}

func (s *Service) changeState(a backup.Action) arm.HandlerFunc {
	return func(ctx context.Context, r *arm.Request) (*arm.Response, error) {
		var in struct {
			ResourceGuardOperationRequests []string `json:"resourceGuardOperationRequests"`
		}
		if len(strings.TrimSpace(string(r.Body))) > 0 {
			if err := json.Unmarshal(r.Body, &in); err != nil {
				return nil, invalid("InvalidRequestContent", "", "The request content is not valid JSON, or resourceGuardOperationRequests is not a list of strings.")
			}
		}
		return s.startOnInstance(ctx, r, kindChangeState, a.Name, 10, func(tx meta.Tx, id string) (InstanceResource, error) {
			return s.Backup.StartAction(ctx, tx, id, a, callerOf(r, in.ResourceGuardOperationRequests))
		})
	}
}

func (s *Service) runChangeState(ctx context.Context, op meta.Operation) (any, error) {
	var in instanceOpInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Backup.ChangeState(ctx, in.InstanceID, in.Action)
}

// deletedType is the type of a soft-deleted backup instance.
const deletedType = "Microsoft.DataProtection/backupVaults/deletedBackupInstances"

// kindUndelete brings a soft-deleted instance back.
const kindUndelete = "dataprotection.undelete"

// deletedView is a soft-deleted instance as deletedBackupInstances shows it.
func deletedView(bi InstanceResource) InstanceResource {
	bi.ID = vaultOfInstance(bi.ID) + "/deletedBackupInstances/" + bi.Name
	bi.Type = deletedType
	bi.Properties.ObjectType = "DeletedBackupInstance"
	return bi
}

func vaultOfInstance(id string) string {
	return id[:strings.LastIndex(strings.ToLower(id), "/backupinstances/")]
}

func (s *Service) listDeleted(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	resp, err := listUnder[InstanceResource](ctx, s, r, meta.Query{Type: backup.InstanceType, Parent: vaultOf(r)},
		func(bi *InstanceResource) bool {
			if !bi.SoftDeleted() {
				return false
			}
			*bi = deletedView(*bi)
			return true
		})
	return resp, err
}

func (s *Service) getDeleted(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	bi, err := s.Backup.Deleted(ctx, vaultOf(r), r.Param("backupInstanceName"))
	if err != nil {
		return nil, err
	}
	return arm.OK(deletedView(bi)), nil
}

func (s *Service) undelete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	v, err := s.loadVault(ctx, s.Store, vaultOf(r))
	if err != nil {
		return nil, err
	}
	bi, err := s.Backup.Deleted(ctx, v.ID, r.Param("backupInstanceName"))
	if err != nil {
		return nil, err
	}
	var opID string
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		_, opID, err = s.enqueue(ctx, tx, kindUndelete, bi.ID, instanceOpInput{VaultID: v.ID, InstanceID: bi.ID})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	sub := r.Param("subscriptionId")
	return arm.Accepted(http.StatusAccepted, nil, statusURL(r, sub, v.Location, opID), resultURL(r, sub, v.Location, opID), 10), nil
}

func (s *Service) runUndelete(ctx context.Context, op meta.Operation) (any, error) {
	var in instanceOpInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	return nil, s.Backup.Undelete(ctx, in.InstanceID)
}
