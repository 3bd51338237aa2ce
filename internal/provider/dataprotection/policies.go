package dataprotection

import (
	"context"
	"reflect"
	"regexp"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

var policyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,149}$`)

func policyNotFound(name string) error {
	return errs.E(errs.NotFound, "UserErrorBackupPolicyNotFound", "The backup policy '%s' was not found in the vault.", name)
}

func (s *Service) putPolicy(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	name := r.Param("backupPolicyName")
	if !policyName.MatchString(name) {
		return nil, invalid("InvalidResourceName", "backupPolicyName",
			"The policy name '%s' is invalid: use up to 150 letters, digits, '_', '.' and '-', starting with a letter or digit.", name)
	}
	var in struct {
		Properties *PolicyProperties `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, invalid("UserErrorInvalidPolicy", "properties", "The policy has no 'properties'.")
	}
	p := *in.Properties
	if err := backup.ValidatePolicy(&p); err != nil {
		return nil, err
	}
	vault := vaultOf(r)
	id := vault + "/backupPolicies/" + name
	out := Policy{ID: id, Name: name, Type: backup.PolicyType, Properties: p}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := s.loadVault(ctx, tx, vault); err != nil {
			return err
		}
		var prev Policy
		_, err := load(ctx, tx, id, &prev, func() error { return policyNotFound(name) })
		switch {
		case err == nil:
			out.ID, out.Name = prev.ID, prev.Name
			if !reflect.DeepEqual(prev.Properties, out.Properties) {
				users, err := s.Backup.InstancesUsing(ctx, tx, prev.ID)
				if err != nil {
					return err
				}
				if len(users) > 0 {
					return errs.E(errs.Conflict, "UserErrorBackupPolicyInUse",
						"The backup policy '%s' is used by backup instance '%s'; changing a policy in use is not supported. Create a new policy and assign it instead.", prev.Name, users[0])
				}
			}
		case !errs.Is(err, errs.NotFound):
			return err
		}
		_, err = s.save(ctx, tx, out.ID, backup.PolicyType, out.Name, vault, out)
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

func (s *Service) getPolicy(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var p Policy
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	name := r.Param("backupPolicyName")
	if _, err := load(ctx, s.Store, vaultOf(r)+"/backupPolicies/"+name, &p, func() error { return policyNotFound(name) }); err != nil {
		return nil, err
	}
	return arm.OK(p), nil
}

func (s *Service) deletePolicy(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	name := r.Param("backupPolicyName")
	deleted := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		var p Policy
		_, err := load(ctx, tx, vaultOf(r)+"/backupPolicies/"+name, &p, func() error { return policyNotFound(name) })
		if err != nil {
			return err
		}
		users, err := s.Backup.InstancesUsing(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errs.E(errs.Conflict, "UserErrorBackupPolicyInUse",
				"The backup policy '%s' is used by %d backup instances (%s); assign them another policy or delete them first.",
				p.Name, len(users), strings.Join(users, ", "))
		}
		deleted, err = tx.DeleteResource(ctx, p.ID)
		return err
	})
	if errs.Is(err, errs.NotFound) || (err == nil && !deleted) {
		return arm.NoContent(), nil
	}
	if err != nil {
		return nil, err
	}
	return arm.OK(nil), nil
}

func (s *Service) listPolicies(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	return listUnder[Policy](ctx, s, r, meta.Query{Type: backup.PolicyType, Parent: vaultOf(r)})
}
