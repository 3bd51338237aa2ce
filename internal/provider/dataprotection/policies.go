package dataprotection

import (
	"context"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// Policy is the wire form of a backup policy.
type Policy struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Properties PolicyProperties `json:"properties"`
}

// PolicyProperties is a BackupPolicy.
type PolicyProperties struct {
	PolicyRules     []PolicyRule `json:"policyRules"`
	DatasourceTypes []string     `json:"datasourceTypes"`
	ObjectType      string       `json:"objectType"`
}

// PolicyRule is an AzureBackupRule or an AzureRetentionRule.
type PolicyRule struct {
	// AzureBackupRule
	BackupParameters *BackupParameters `json:"backupParameters,omitempty"`
	Trigger          *Trigger          `json:"trigger,omitempty"`
	DataStore        *DataStoreInfo    `json:"dataStore,omitempty"`
	// AzureRetentionRule
	IsDefault  *bool       `json:"isDefault,omitempty"`
	Lifecycles []Lifecycle `json:"lifecycles,omitempty"`

	Name       string `json:"name"`
	ObjectType string `json:"objectType"`
}

// BackupParameters are AzureBackupParams.
type BackupParameters struct {
	BackupType string `json:"backupType"`
	ObjectType string `json:"objectType"`
}

// DataStoreInfo names a data store. json matches field names without
// regard to case, so "datastoreType" (as some docs spell it) is accepted.
type DataStoreInfo struct {
	DataStoreType string `json:"dataStoreType"`
	ObjectType    string `json:"objectType"`
}

// Trigger is a ScheduleBasedTriggerContext.
type Trigger struct {
	Schedule        *Schedule         `json:"schedule,omitempty"`
	TaggingCriteria []TaggingCriteria `json:"taggingCriteria"`
	ObjectType      string            `json:"objectType"`
}

// Schedule holds one ISO 8601 repeating interval.
type Schedule struct {
	RepeatingTimeIntervals []string `json:"repeatingTimeIntervals"`
	TimeZone               string   `json:"timeZone,omitempty"`
}

// TaggingCriteria decides which retention tag a backup gets.
type TaggingCriteria struct {
	Criteria        []BackupCriteria `json:"criteria,omitempty"`
	IsDefault       *bool            `json:"isDefault"`
	TaggingPriority *int64           `json:"taggingPriority"`
	TagInfo         *TagInfo         `json:"tagInfo"`
}

// BackupCriteria is a ScheduleBasedBackupCriteria.
type BackupCriteria struct {
	AbsoluteCriteria []string `json:"absoluteCriteria,omitempty"`
	DaysOfMonth      []any    `json:"daysOfMonth,omitempty"`
	DaysOfTheWeek    []string `json:"daysOfTheWeek,omitempty"`
	MonthsOfYear     []string `json:"monthsOfYear,omitempty"`
	ScheduleTimes    []string `json:"scheduleTimes,omitempty"`
	WeeksOfTheMonth  []string `json:"weeksOfTheMonth,omitempty"`
	ObjectType       string   `json:"objectType"`
}

// TagInfo names a retention tag; the service fills ID as "<tagName>_".
type TagInfo struct {
	ETag    string `json:"eTag,omitempty"`
	ID      string `json:"id,omitempty"`
	TagName string `json:"tagName"`
}

// Lifecycle says how long backups in a data store are kept.
type Lifecycle struct {
	DeleteAfter                 *DeleteOption     `json:"deleteAfter"`
	SourceDataStore             *DataStoreInfo    `json:"sourceDataStore"`
	TargetDataStoreCopySettings []json.RawMessage `json:"targetDataStoreCopySettings"`
}

// DeleteOption is an AbsoluteDeleteOption.
type DeleteOption struct {
	Duration   string `json:"duration"`
	ObjectType string `json:"objectType"`
}

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
	if err := ValidatePolicy(&p); err != nil {
		return nil, err
	}
	vault := vaultOf(r)
	id := vault + "/backupPolicies/" + name
	out := Policy{ID: id, Name: name, Type: PolicyType, Properties: p}
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
				users, err := s.instancesUsing(ctx, tx, prev.ID)
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
		_, err = s.save(ctx, tx, out.ID, PolicyType, out.Name, vault, out)
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

// instancesUsing names the backup instances whose policy is policyID.
func (s *Service) instancesUsing(ctx context.Context, tx meta.Tx, policyID string) ([]string, error) {
	vault := policyID[:strings.LastIndex(strings.ToLower(policyID), "/backuppolicies/")]
	var names []string
	q := meta.Query{Type: InstanceType, Parent: vault, Limit: 1000}
	for {
		page, err := tx.ListResources(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, res := range page.Items {
			var bi InstanceResource
			if err := json.Unmarshal(res.Body, &bi); err != nil {
				return nil, err
			}
			if strings.EqualFold(bi.Properties.PolicyInfo.PolicyID, policyID) {
				names = append(names, bi.Name)
			}
		}
		if page.Next == "" {
			return names, nil
		}
		q.After = page.Next
	}
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
		users, err := s.instancesUsing(ctx, tx, p.ID)
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
	return listUnder[Policy](ctx, s, r, meta.Query{Type: PolicyType, Parent: vaultOf(r)})
}
