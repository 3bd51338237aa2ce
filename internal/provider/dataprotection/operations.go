package dataprotection

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/google/uuid"
)

// Operation kinds run by internal/ops.
const (
	kindCreateVault    = "dataprotection.createVault"
	kindDeleteVault    = "dataprotection.deleteVault"
	kindValidate       = "dataprotection.validateForBackup"
	kindConfigure      = "dataprotection.configureProtection"
	kindDeleteInstance = "dataprotection.deleteInstance"
	kindChangeState    = "dataprotection.changeProtectionState"
)

// encodeOperationID makes the id clients see: base64 of "<op>;<guid>" in
// the URL-safe alphabet (Azure's ids are base64 too; the URL-safe letters
// keep '/' out of the path).
func encodeOperationID(opID string) string {
	return base64.URLEncoding.EncodeToString([]byte(opID + ";" + uuid.NewString()))
}

func decodeOperationID(s string) (string, bool) {
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding} {
		raw, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		op, _, ok := strings.Cut(string(raw), ";")
		if _, err := uuid.Parse(op); ok && err == nil {
			return op, true
		}
	}
	return "", false
}

func operationNotFound(id string) error {
	return errs.E(errs.NotFound, "OperationNotFound", "The operation '%s' was not found.", id)
}

// lookupOperation finds the operation a status or result URL names and
// checks it belongs to the URL's subscription.
func (s *Service) lookupOperation(ctx context.Context, r *arm.Request) (meta.Operation, error) {
	raw := r.Param("operationId")
	id, ok := decodeOperationID(raw)
	if !ok {
		return meta.Operation{}, operationNotFound(raw)
	}
	op, err := s.Store.GetOperation(ctx, id)
	if errs.Is(err, errs.NotFound) {
		return meta.Operation{}, operationNotFound(raw)
	}
	if err != nil {
		return meta.Operation{}, err
	}
	p, ok := parseSubscription(op.ResourceID)
	if !ok || !strings.EqualFold(p, r.Param("subscriptionId")) {
		return meta.Operation{}, operationNotFound(raw)
	}
	if g := r.Param("resourceGroupName"); g != "" &&
		!strings.HasPrefix(strings.ToLower(op.ResourceID), strings.ToLower("/subscriptions/"+p+"/resourceGroups/"+g+"/")) {
		return meta.Operation{}, operationNotFound(raw)
	}
	if v := r.Param("vaultName"); v != "" && !strings.HasPrefix(strings.ToLower(op.ResourceID), strings.ToLower(vaultOf(r))) {
		return meta.Operation{}, operationNotFound(raw)
	}
	return op, nil
}

func parseSubscription(id string) (string, bool) {
	rid, err := arm.ParseResourceID(id)
	if err != nil || rid.Subscription() == "" {
		return "", false
	}
	return rid.Subscription(), true
}

// enqueue records an operation in tx and returns it with its public id.
func (s *Service) enqueue(ctx context.Context, tx meta.Tx, kind, resourceID string, input any) (meta.Operation, string, error) {
	op, err := s.Ops.Enqueue(ctx, tx, kind, resourceID, input)
	if err != nil {
		return meta.Operation{}, "", err
	}
	return op, encodeOperationID(op.ID), nil
}

// statusURL is the location-scoped status monitor of an operation.
func statusURL(r *arm.Request, sub, location, opID string) string {
	return r.Link("/subscriptions/" + sub + "/providers/Microsoft.DataProtection/locations/" + normalizeLocation(location) + "/operationStatus/" + opID)
}

// resultURL is the location-scoped result of an operation.
func resultURL(r *arm.Request, sub, location, opID string) string {
	return r.Link("/subscriptions/" + sub + "/providers/Microsoft.DataProtection/locations/" + normalizeLocation(location) + "/operationResults/" + opID)
}

// operationResource is the body of every status monitor.
type operationResource struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	StartTime  string          `json:"startTime"`
	EndTime    string          `json:"endTime"`
	Error      *operationError `json:"error,omitempty"`
	Properties json.RawMessage `json:"properties,omitempty"`
}

type operationError struct {
	AdditionalInfo []errs.AdditionalInfo `json:"additionalInfo,omitempty"`
	Code           string                `json:"code"`
	Message        string                `json:"message"`
	Target         string                `json:"target,omitempty"`
}

// wireStatus spells statuses as DataProtection does ("Inprogress").
func wireStatus(s string) string {
	if s == meta.StatusInProgress {
		return "Inprogress"
	}
	return s
}

func (s *Service) operationStatus(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	op, err := s.lookupOperation(ctx, r)
	if err != nil {
		return nil, err
	}
	body := operationResource{
		ID: r.Canonical, Name: r.Param("operationId"), Status: wireStatus(op.Status),
		StartTime: stamp(op.StartedAt), EndTime: "0001-01-01T00:00:00",
	}
	if !op.EndedAt.IsZero() {
		body.EndTime = op.EndedAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	if op.Status == meta.StatusFailed {
		e := ops.DecodeError(op.Error)
		body.Error = &operationError{AdditionalInfo: e.AdditionalInfo, Code: e.Code, Message: e.Message, Target: e.Target}
	}
	if op.Status == meta.StatusSucceeded && len(op.Result) > 0 && strings.Contains(string(op.Result), "OperationJobExtendedInfo") {
		body.Properties = op.Result
	}
	return arm.OK(body), nil
}

// pending answers a result URL while its operation runs: 202 pointing at
// the status monitor and back at itself.
func pending(r *arm.Request, asyncURL string) *arm.Response {
	return arm.Accepted(http.StatusAccepted, nil, asyncURL, r.Link(r.Canonical), 10)
}

func opsError(op meta.Operation) error { return ops.DecodeError(op.Error) }

// resultOr answers a vault- or instance-scoped result URL: 202 while op
// runs, done's answer (the resource as it is now) once it succeeded, its
// error if it failed.
func resultOr(r *arm.Request, op meta.Operation, done func() (*arm.Response, error)) (*arm.Response, error) {
	switch op.Status {
	case meta.StatusInProgress:
		return pending(r, r.Link(vaultOf(r)+"/operationStatus/"+r.Param("operationId"))), nil
	case meta.StatusSucceeded:
		return done()
	default:
		return nil, opsError(op)
	}
}

func (s *Service) operationResult(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	op, err := s.lookupOperation(ctx, r)
	if err != nil {
		return nil, err
	}
	switch op.Status {
	case meta.StatusInProgress:
		return pending(r, statusURL(r, r.Param("subscriptionId"), r.Param("location"), r.Param("operationId"))), nil
	case meta.StatusSucceeded:
		if len(op.Result) == 0 || string(op.Result) == "null" {
			return arm.NoContent(), nil
		}
		return arm.OK(op.Result), nil
	default:
		return nil, opsError(op)
	}
}

// jobInfo is the OperationJobExtendedInfo final body.
type jobInfo struct {
	ObjectType string `json:"objectType"`
	JobID      string `json:"jobId,omitempty"`
}

func newJobInfo() jobInfo { return jobInfo{ObjectType: "OperationJobExtendedInfo"} }

type providerOperation struct {
	Name         string                 `json:"name"`
	IsDataAction bool                   `json:"isDataAction"`
	Origin       string                 `json:"origin"`
	Display      providerOperationLabel `json:"display"`
}

type providerOperationLabel struct {
	Provider    string `json:"provider"`
	Resource    string `json:"resource"`
	Operation   string `json:"operation"`
	Description string `json:"description"`
}

func (s *Service) listOperations(_ context.Context, r *arm.Request) (*arm.Response, error) {
	table := []struct{ name, resource, op, desc string }{
		{"backupVaults/write", "Backup Vaults", "Create or update a Backup vault", "Creates or updates a Backup vault."},
		{"backupVaults/read", "Backup Vaults", "Get Backup vaults", "Gets a Backup vault or lists them."},
		{"backupVaults/delete", "Backup Vaults", "Delete a Backup vault", "Deletes a Backup vault that holds no backup instances."},
		{"backupVaults/backupPolicies/write", "Backup Policies", "Create a backup policy", "Creates a disk backup policy."},
		{"backupVaults/backupPolicies/read", "Backup Policies", "Get backup policies", "Gets or lists backup policies."},
		{"backupVaults/backupPolicies/delete", "Backup Policies", "Delete a backup policy", "Deletes a backup policy that no instance uses."},
		{"backupVaults/validateForBackup/action", "Backup Instances", "Validate for backup", "Checks that a disk can be protected."},
		{"backupVaults/backupInstances/write", "Backup Instances", "Configure protection", "Creates a backup instance."},
		{"backupVaults/backupInstances/read", "Backup Instances", "Get backup instances", "Gets or lists backup instances."},
		{"backupVaults/backupInstances/delete", "Backup Instances", "Stop protection and delete data", "Deletes a backup instance and its backups."},
		{"resourceGuards/write", "Resource Guards", "Create or update a resource guard", "Creates or updates a resource guard."},
		{"resourceGuards/read", "Resource Guards", "Get resource guards", "Gets or lists resource guards."},
		{"resourceGuards/delete", "Resource Guards", "Delete a resource guard", "Deletes a resource guard that no vault uses."},
		{"backupVaults/backupResourceGuardProxies/write", "Resource Guard Proxies", "Associate a resource guard", "Associates a resource guard with a Backup vault."},
		{"backupVaults/backupResourceGuardProxies/read", "Resource Guard Proxies", "Get resource guard proxies", "Gets or lists a vault's resource guard proxy."},
		{"backupVaults/backupResourceGuardProxies/delete", "Resource Guard Proxies", "Remove a resource guard", "Removes a vault's resource guard; a critical operation."},
		{"backupVaults/backupResourceGuardProxies/unlockDelete/action", "Resource Guard Proxies", "Unlock removing a resource guard", "Approves removing a vault's resource guard for a while."},
		{"locations/operationStatus/read", "Operation Status", "Get operation status", "Gets the status of an asynchronous operation."},
		{"locations/operationResults/read", "Operation Results", "Get operation result", "Gets the result of an asynchronous operation."},
	}
	out := make([]providerOperation, len(table))
	for i, t := range table {
		out[i] = providerOperation{Name: actionPrefix + t.name, Origin: "user",
			Display: providerOperationLabel{Provider: "Microsoft.DataProtection", Resource: t.resource, Operation: t.op, Description: t.desc}}
	}
	return arm.List(r, out, ""), nil
}
