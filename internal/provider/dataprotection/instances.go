package dataprotection

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// InstanceResource is the wire form of a backup instance.
type InstanceResource struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties BackupInstance    `json:"properties"`
}

// BackupInstance is one protected disk.
type BackupInstance struct {
	FriendlyName           string            `json:"friendlyName"`
	DataSourceInfo         *Datasource       `json:"dataSourceInfo"`
	PolicyInfo             *PolicyInfo       `json:"policyInfo"`
	ProtectionStatus       *ProtectionStatus `json:"protectionStatus,omitempty"`
	CurrentProtectionState string            `json:"currentProtectionState,omitempty"`
	ProtectionErrorDetails *UserFacingError  `json:"protectionErrorDetails,omitempty"`
	ProvisioningState      string            `json:"provisioningState,omitempty"`
	ObjectType             string            `json:"objectType"`
}

// Datasource names the protected disk.
type Datasource struct {
	DatasourceType   string `json:"datasourceType"`
	ObjectType       string `json:"objectType"`
	ResourceID       string `json:"resourceID"`
	ResourceLocation string `json:"resourceLocation"`
	ResourceName     string `json:"resourceName"`
	ResourceType     string `json:"resourceType"`
	ResourceURI      string `json:"resourceUri"`
}

// PolicyInfo names the policy and the snapshot resource group.
type PolicyInfo struct {
	PolicyID         string            `json:"policyId"`
	PolicyVersion    string            `json:"policyVersion,omitempty"`
	PolicyParameters *PolicyParameters `json:"policyParameters,omitempty"`
}

// PolicyParameters carry the data store parameters.
type PolicyParameters struct {
	DataStoreParametersList []DataStoreParameters `json:"dataStoreParametersList"`
}

// DataStoreParameters are AzureOperationalStoreParameters.
type DataStoreParameters struct {
	DataStoreType   string `json:"dataStoreType"`
	ObjectType      string `json:"objectType"`
	ResourceGroupID string `json:"resourceGroupId"`
}

// ProtectionStatus is the instance's protection summary.
type ProtectionStatus struct {
	Status       string           `json:"status"`
	ErrorDetails *UserFacingError `json:"errorDetails,omitempty"`
}

// Protection states.
const (
	stateConfiguring       = "ConfiguringProtection"
	stateConfiguringFailed = "ConfiguringProtectionFailed"
	stateConfigured        = "ProtectionConfigured"
	stateStopped           = "ProtectionStopped"
	stateSuspended         = "BackupSchedulesSuspended"
)

func instanceNotFound(name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound", "The backup instance '%s' was not found in the vault.", name)
}

// snapshotGroup returns the snapshot resource group the instance names.
func (b *BackupInstance) snapshotGroup() string {
	if b.PolicyInfo == nil || b.PolicyInfo.PolicyParameters == nil || len(b.PolicyInfo.PolicyParameters.DataStoreParametersList) == 0 {
		return ""
	}
	return b.PolicyInfo.PolicyParameters.DataStoreParametersList[0].ResourceGroupID
}

// checkInstanceShape validates the request body of a backup instance for
// vault and normalizes it. These are the synchronous 400s.
func checkInstanceShape(b *BackupInstance, vault string) error {
	if t, ok := oneOfFold(b.ObjectType, "BackupInstance"); ok {
		b.ObjectType = t
	} else {
		return invalid("InvalidRequestContent", "properties.objectType", "properties.objectType must be 'BackupInstance', not '%s'.", b.ObjectType)
	}
	ds := b.DataSourceInfo
	if ds == nil {
		return invalid("InvalidRequestContent", "properties.dataSourceInfo", "properties.dataSourceInfo is required.")
	}
	if ds.ResourceID == "" {
		return invalid("InvalidRequestContent", "properties.dataSourceInfo.resourceID", "properties.dataSourceInfo.resourceID (the disk's ARM id) is required.")
	}
	p, ok := parseID(ds.ResourceID)
	if !ok || !strings.EqualFold(p.Provider, "Microsoft.Compute") || !strings.EqualFold(p.Type, "disks") {
		return invalid("UserErrorInvalidDatasource", "properties.dataSourceInfo.resourceID",
			"'%s' is not the id of a managed disk (/subscriptions/…/resourceGroups/…/providers/Microsoft.Compute/disks/…).", ds.ResourceID)
	}
	for field, v := range map[string]string{"datasourceType": ds.DatasourceType, "resourceType": ds.ResourceType} {
		if v != "" && !strings.EqualFold(v, DiskType) {
			return invalid("UserErrorUnsupportedDatasourceType", "properties.dataSourceInfo."+field,
				"properties.dataSourceInfo.%s '%s' is not supported; this service protects 'Microsoft.Compute/disks'.", field, v)
		}
	}
	ds.DatasourceType, ds.ResourceType, ds.ObjectType = DiskType, DiskType, "Datasource"
	if ds.ResourceName == "" {
		ds.ResourceName = p.Name
	}
	if b.PolicyInfo == nil || b.PolicyInfo.PolicyID == "" {
		return invalid("InvalidRequestContent", "properties.policyInfo.policyId", "properties.policyInfo.policyId is required.")
	}
	if !strings.HasPrefix(strings.ToLower(b.PolicyInfo.PolicyID), strings.ToLower(vault+"/backupPolicies/")) {
		return invalid("UserErrorPolicyNotInVault", "properties.policyInfo.policyId",
			"The policy '%s' is not a policy of the vault '%s'.", b.PolicyInfo.PolicyID, vault)
	}
	pp := b.PolicyInfo.PolicyParameters
	if pp == nil || len(pp.DataStoreParametersList) != 1 {
		return invalid("UserErrorSnapshotResourceGroupMissing", "properties.policyInfo.policyParameters.dataStoreParametersList",
			"Give exactly one AzureOperationalStoreParameters entry with the snapshot resource group in properties.policyInfo.policyParameters.dataStoreParametersList.")
	}
	dp := &pp.DataStoreParametersList[0]
	if t, ok := oneOfFold(dp.ObjectType, "AzureOperationalStoreParameters"); ok {
		dp.ObjectType = t
	} else {
		return invalid("InvalidRequestContent", "properties.policyInfo.policyParameters.dataStoreParametersList[0].objectType",
			"dataStoreParametersList[0].objectType must be 'AzureOperationalStoreParameters', not '%s'.", dp.ObjectType)
	}
	if t, ok := oneOfFold(dp.DataStoreType, "OperationalStore"); ok {
		dp.DataStoreType = t
	} else {
		return invalid("InvalidRequestContent", "properties.policyInfo.policyParameters.dataStoreParametersList[0].dataStoreType",
			"dataStoreParametersList[0].dataStoreType must be 'OperationalStore', not '%s'.", dp.DataStoreType)
	}
	if g, ok := parseID(dp.ResourceGroupID); !ok || g.Provider != "" {
		return invalid("UserErrorInvalidSnapshotResourceGroup", "properties.policyInfo.policyParameters.dataStoreParametersList[0].resourceGroupId",
			"'%s' is not a resource group id (/subscriptions/…/resourceGroups/…).", dp.ResourceGroupID)
	}
	if b.FriendlyName == "" {
		b.FriendlyName = ds.ResourceName
	}
	return nil
}

// protectedElsewhere reports the backup instance (other than self) that
// protects disk already, from any vault.
func (s *Service) protectedElsewhere(ctx context.Context, tx meta.Tx, disk, self string) (InstanceResource, bool, error) {
	q := meta.Query{Type: InstanceType, Limit: 1000}
	for {
		page, err := tx.ListResources(ctx, q)
		if err != nil {
			return InstanceResource{}, false, err
		}
		for _, res := range page.Items {
			var bi InstanceResource
			if err := json.Unmarshal(res.Body, &bi); err != nil {
				return InstanceResource{}, false, err
			}
			if strings.EqualFold(bi.ID, self) || bi.Properties.DataSourceInfo == nil {
				continue
			}
			if strings.EqualFold(bi.Properties.DataSourceInfo.ResourceID, disk) {
				return bi, true, nil
			}
		}
		if page.Next == "" {
			return InstanceResource{}, false, nil
		}
		q.After = page.Next
	}
}

func alreadyProtected(bi InstanceResource, activityID string) error {
	vault := bi.ID[:strings.LastIndex(strings.ToLower(bi.ID), "/backupinstances/")]
	msg := "Datasource is already protected under the Backup vault " + vault + "."
	return userError(errs.Invalid, "UserErrorDppDatasourceAlreadyProtected", msg, UserFacingError{
		RecommendedAction: []string{"Delete the backup instance " + bi.Name + " from the Backup vault " + vault +
			" to re-protect the datasource in any other vault."},
		Properties: map[string]string{"ActivityId": activityID},
	})
}

func activityOf(r *arm.Request) string {
	if c := r.HTTP.Header.Get("x-ms-correlation-request-id"); c != "" {
		return c
	}
	return r.RequestID
}

// validateInput is what the validate and configure operations check.
type validateInput struct {
	VaultID    string         `json:"vaultId"`
	InstanceID string         `json:"instanceId,omitempty"`
	Instance   BackupInstance `json:"instance"`
	ActivityID string         `json:"activityId"`
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
	if err := checkInstanceShape(in.BackupInstance, vault); err != nil {
		return nil, err
	}
	var opID, location string
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, vault)
		if err != nil {
			return err
		}
		location = v.Location
		if bi, found, err := s.protectedElsewhere(ctx, tx, in.BackupInstance.DataSourceInfo.ResourceID, ""); err != nil {
			return err
		} else if found {
			return alreadyProtected(bi, activityOf(r))
		}
		_, opID, err = s.enqueue(ctx, tx, kindValidate, v.ID, validateInput{VaultID: v.ID, Instance: *in.BackupInstance, ActivityID: activityOf(r)})
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
	var in validateInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	if err := s.check(ctx, in); err != nil {
		return nil, err
	}
	return newJobInfo(), nil
}

func (s *Service) loadInstance(ctx context.Context, tx meta.Tx, id string) (InstanceResource, error) {
	var bi InstanceResource
	name := id[strings.LastIndex(id, "/")+1:]
	_, err := load(ctx, tx, id, &bi, func() error { return instanceNotFound(name) })
	return bi, err
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
	if err := checkInstanceShape(in.Properties, vault); err != nil {
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
		var p Policy
		policyName := in.Properties.PolicyInfo.PolicyID[strings.LastIndex(in.Properties.PolicyInfo.PolicyID, "/")+1:]
		if _, err := load(ctx, tx, vault+"/backupPolicies/"+policyName, &p, func() error {
			return invalid("UserErrorBackupPolicyNotFound", "properties.policyInfo.policyId", "The backup policy '%s' does not exist in the vault.", policyName)
		}); err != nil {
			return err
		}
		if bi, found, err := s.protectedElsewhere(ctx, tx, in.Properties.DataSourceInfo.ResourceID, id); err != nil {
			return err
		} else if found {
			return alreadyProtected(bi, activityOf(r))
		}
		prev, err := s.loadInstance(ctx, tx, id)
		switch {
		case err == nil:
			if !strings.EqualFold(prev.Properties.DataSourceInfo.ResourceID, in.Properties.DataSourceInfo.ResourceID) {
				return invalid("UserErrorDatasourceChangeNotAllowed", "properties.dataSourceInfo.resourceID",
					"The backup instance '%s' protects '%s'; it cannot be changed to protect another disk.", prev.Name, prev.Properties.DataSourceInfo.ResourceID)
			}
			out = prev
		case errs.Is(err, errs.NotFound):
			out = InstanceResource{ID: id, Name: name, Type: InstanceType}
			created = true
		default:
			return err
		}
		props := *in.Properties
		props.PolicyInfo.PolicyID = p.ID
		props.ProtectionStatus = &ProtectionStatus{Status: stateConfiguring}
		props.CurrentProtectionState = stateConfiguring
		props.ProtectionErrorDetails = nil
		props.ProvisioningState = "Provisioning"
		out.Properties = props
		if in.Tags != nil {
			out.Tags = in.Tags
		}
		if _, err := s.save(ctx, tx, id, InstanceType, name, vault, out); err != nil {
			return err
		}
		_, opID, err = s.enqueue(ctx, tx, kindConfigure, id, validateInput{VaultID: vault, InstanceID: id, Instance: props, ActivityID: activityOf(r)})
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
	var in validateInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	checkErr := s.check(ctx, in)
	if checkErr != nil && errs.KindOf(checkErr) == errs.Internal {
		return nil, checkErr
	}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.loadInstance(ctx, tx, in.InstanceID)
		if err != nil {
			return err
		}
		if checkErr != nil {
			details := facingOf(checkErr)
			bi.Properties.ProtectionStatus = &ProtectionStatus{Status: stateConfiguringFailed, ErrorDetails: details}
			bi.Properties.CurrentProtectionState = stateConfiguringFailed
			bi.Properties.ProtectionErrorDetails = details
			bi.Properties.ProvisioningState = "Failed"
		} else {
			bi.Properties.ProtectionStatus = &ProtectionStatus{Status: stateConfigured}
			bi.Properties.CurrentProtectionState = stateConfigured
			bi.Properties.ProtectionErrorDetails = nil
			bi.Properties.ProvisioningState = "Succeeded"
		}
		_, err = s.save(ctx, tx, bi.ID, InstanceType, bi.Name, in.VaultID, bi)
		return err
	})
	if err != nil {
		return nil, err
	}
	return nil, checkErr
}

func (s *Service) getInstance(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	bi, err := s.loadInstance(ctx, s.Store, vaultOf(r)+"/backupInstances/"+r.Param("backupInstanceName"))
	if err != nil {
		return nil, err
	}
	return arm.OK(bi), nil
}

func (s *Service) listInstances(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	return listUnder[InstanceResource](ctx, s, r, meta.Query{Type: InstanceType, Parent: vaultOf(r)})
}

type instanceOpInput struct {
	VaultID    string `json:"vaultId"`
	InstanceID string `json:"instanceId"`
	Action     string `json:"action,omitempty"`
}

// startOnInstance runs prepare on the addressed backup instance and, in the
// same transaction, enqueues an operation of kind on it; it answers 202
// with the location-scoped status and result URLs.
func (s *Service) startOnInstance(ctx context.Context, r *arm.Request, kind, action string, retryAfter int,
	prepare func(tx meta.Tx, bi *InstanceResource) error) (*arm.Response, error) {
	vault := vaultOf(r)
	id := vault + "/backupInstances/" + r.Param("backupInstanceName")
	var opID, location string
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		v, err := s.loadVault(ctx, tx, vault)
		if err != nil {
			return err
		}
		location = v.Location
		bi, err := s.loadInstance(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := prepare(tx, &bi); err != nil {
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
	resp, err := s.startOnInstance(ctx, r, kindDeleteInstance, "", 30, func(tx meta.Tx, bi *InstanceResource) error {
		bi.Properties.ProvisioningState = "Deleting"
		_, err := s.save(ctx, tx, bi.ID, InstanceType, bi.Name, vaultOf(r), bi)
		return err
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
	bi, err := s.loadInstance(ctx, s.Store, in.InstanceID)
	if errs.Is(err, errs.NotFound) {
		return nil, nil // an earlier attempt finished
	}
	if err != nil {
		return nil, err
	}
	// Backup data goes first: a crash after it leaves the instance, and the
	// next attempt deletes (nothing more) and then the instance.
	if s.BackupData != nil {
		if err := s.BackupData.DeleteInstanceData(ctx, bi.ID, bi.Properties.snapshotGroup()); err != nil {
			return nil, err
		}
	}
	_, err = s.Store.DeleteTree(ctx, bi.ID)
	return nil, err
}

func (s *Service) instanceOperationResult(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	op, err := s.lookupOperation(ctx, r)
	if err != nil {
		return nil, err
	}
	return resultOr(r, op, func() (*arm.Response, error) { return s.getInstance(ctx, r) })
}

// stateAction is a protection state change.
type stateAction struct {
	name   string
	from   []string
	to     string
	status string
}

var stateActions = []stateAction{
	{name: "stopProtection", from: []string{stateConfigured, stateSuspended, "ProtectionError"}, to: stateStopped, status: stateStopped},
	{name: "suspendBackups", from: []string{stateConfigured}, to: stateSuspended, status: stateStopped},
	{name: "resumeProtection", from: []string{stateStopped}, to: stateConfigured, status: stateConfigured},
	{name: "resumeBackups", from: []string{stateSuspended}, to: stateConfigured, status: stateConfigured},
}

func actionNamed(name string) (stateAction, bool) {
	for _, a := range stateActions {
		if a.name == name {
			return a, true
		}
	}
	return stateAction{}, false
}

func (a stateAction) allowedFrom(state string) error {
	for _, f := range a.from {
		if f == state {
			return nil
		}
	}
	return errs.E(errs.Invalid, "UserErrorInvalidProtectionStateForOperation",
		"%s is not possible while the backup instance is '%s'; it needs one of: %s.", a.name, state, strings.Join(a.from, ", "))
}

func (s *Service) changeState(a stateAction) arm.HandlerFunc {
	return func(ctx context.Context, r *arm.Request) (*arm.Response, error) {
		if len(strings.TrimSpace(string(r.Body))) > 0 && !json.Valid(r.Body) {
			return nil, invalid("InvalidRequestContent", "", "The request content is not valid JSON.")
		}
		return s.startOnInstance(ctx, r, kindChangeState, a.name, 10, func(_ meta.Tx, bi *InstanceResource) error {
			return a.allowedFrom(bi.Properties.CurrentProtectionState)
		})
	}
}

func (s *Service) runChangeState(ctx context.Context, op meta.Operation) (any, error) {
	var in instanceOpInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	a, ok := actionNamed(in.Action)
	if !ok {
		return nil, fmt.Errorf("unknown protection action %q", in.Action)
	}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.loadInstance(ctx, tx, in.InstanceID)
		if err != nil {
			return err
		}
		if bi.Properties.CurrentProtectionState == a.to {
			return nil // done by an earlier attempt
		}
		if err := a.allowedFrom(bi.Properties.CurrentProtectionState); err != nil {
			return err
		}
		bi.Properties.CurrentProtectionState = a.to
		bi.Properties.ProtectionStatus = &ProtectionStatus{Status: a.status}
		_, err = s.save(ctx, tx, bi.ID, InstanceType, bi.Name, in.VaultID, bi)
		return err
	})
	return nil, err
}
