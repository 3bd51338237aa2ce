package dataprotection

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/google/uuid"
)

// Versions are the Microsoft.DataProtection api-versions accepted: every
// stable version from 2021-01-01 to 2026-06-01.
var Versions = arm.APIVersions{Provider: "Microsoft.DataProtection", Versions: []string{
	"2021-01-01", "2021-07-01", "2022-01-01", "2022-03-01", "2022-04-01", "2022-05-01", "2022-12-01",
	"2023-01-01", "2023-05-01", "2023-11-01", "2023-12-01", "2024-03-01", "2024-04-01", "2025-01-01",
	"2025-02-01", "2025-07-01", "2025-09-01", "2026-03-01", "2026-06-01",
}}

// Resource types.
const (
	VaultType    = "Microsoft.DataProtection/backupVaults"
	PolicyType   = "Microsoft.DataProtection/backupVaults/backupPolicies"
	InstanceType = "Microsoft.DataProtection/backupVaults/backupInstances"
	DiskType     = "Microsoft.Compute/disks"
)

// PermissionChecker answers whether a principal may perform an action at a
// scope; the authorization provider implements it.
type PermissionChecker interface {
	Allowed(ctx context.Context, principal, action, scope string) (bool, error)
}

// BackupData removes what a backup instance stored (its snapshots in the
// snapshot resource group) when the instance is deleted. Idempotent.
type BackupData interface {
	DeleteInstanceData(ctx context.Context, instanceID, snapshotGroupID string) error
}

// Service serves Microsoft.DataProtection.
type Service struct {
	Store       meta.Store
	Ops         *ops.Runner
	Clock       clock.Clock
	TenantID    string
	Permissions PermissionChecker
	BackupData  BackupData // nil until snapshots exist
}

const (
	vaultPath    = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}"
	policyPath   = vaultPath + "/backupPolicies/{backupPolicyName}"
	instancePath = vaultPath + "/backupInstances/{backupInstanceName}"
	locationPath = "/subscriptions/{subscriptionId}/providers/Microsoft.DataProtection/locations/{location}"
	actionPrefix = "Microsoft.DataProtection/"
)

// Routes registers every DataProtection operation.
func (s *Service) Routes(r *arm.Router) {
	h := func(method, pattern, action string, fn arm.HandlerFunc) {
		r.Handle(arm.Route{Method: method, Pattern: pattern, Versions: Versions, Action: actionPrefix + action, Handler: fn})
	}
	// Vaults.
	h(http.MethodPut, vaultPath, "backupVaults/write", s.putVault)
	h(http.MethodGet, vaultPath, "backupVaults/read", s.getVault)
	h(http.MethodPatch, vaultPath, "backupVaults/write", s.patchVault)
	h(http.MethodDelete, vaultPath, "backupVaults/delete", s.deleteVault)
	h(http.MethodGet, "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults", "backupVaults/read", s.listVaults)
	h(http.MethodGet, "/subscriptions/{subscriptionId}/providers/Microsoft.DataProtection/backupVaults", "backupVaults/read", s.listVaults)
	h(http.MethodPost, "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/locations/{location}/checkNameAvailability",
		"locations/checkNameAvailability/action", s.checkNameAvailability)
	h(http.MethodGet, vaultPath+"/operationResults/{operationId}", "backupVaults/operationResults/read", s.vaultOperationResult)
	h(http.MethodGet, vaultPath+"/operationStatus/{operationId}", "backupVaults/operationStatus/read", s.operationStatus)

	// Policies.
	h(http.MethodPut, policyPath, "backupVaults/backupPolicies/write", s.putPolicy)
	h(http.MethodGet, policyPath, "backupVaults/backupPolicies/read", s.getPolicy)
	h(http.MethodDelete, policyPath, "backupVaults/backupPolicies/delete", s.deletePolicy)
	h(http.MethodGet, vaultPath+"/backupPolicies", "backupVaults/backupPolicies/read", s.listPolicies)

	// Backup instances.
	h(http.MethodPost, vaultPath+"/validateForBackup", "backupVaults/validateForBackup/action", s.validateForBackup)
	h(http.MethodPut, instancePath, "backupVaults/backupInstances/write", s.putInstance)
	h(http.MethodGet, instancePath, "backupVaults/backupInstances/read", s.getInstance)
	h(http.MethodDelete, instancePath, "backupVaults/backupInstances/delete", s.deleteInstance)
	h(http.MethodGet, vaultPath+"/backupInstances", "backupVaults/backupInstances/read", s.listInstances)
	h(http.MethodGet, instancePath+"/operationResults/{operationId}", "backupVaults/backupInstances/operationResults/read", s.instanceOperationResult)
	for _, a := range stateActions {
		h(http.MethodPost, instancePath+"/"+a.name, "backupVaults/backupInstances/"+a.name+"/action", s.changeState(a))
	}

	// Operations of the provider and their status.
	h(http.MethodGet, locationPath+"/operationStatus/{operationId}", "locations/operationStatus/read", s.operationStatus)
	h(http.MethodGet, locationPath+"/operationResults/{operationId}", "locations/operationResults/read", s.operationResult)
	h(http.MethodGet, "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/operationStatus/{operationId}",
		"operationStatus/read", s.operationStatus)
	r.Handle(arm.Route{Method: http.MethodGet, Pattern: "/providers/Microsoft.DataProtection/operations", Versions: Versions,
		AnyPrincipal: true, Handler: s.listOperations})

	s.Ops.Register(kindCreateVault, s.runCreateVault)
	s.Ops.Register(kindDeleteVault, s.runDeleteVault)
	s.Ops.Register(kindValidate, s.runValidate)
	s.Ops.Register(kindConfigure, s.runConfigure)
	s.Ops.Register(kindDeleteInstance, s.runDeleteInstance)
	s.Ops.Register(kindChangeState, s.runChangeState)
}

// ids

func vaultID(sub, group, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + group + "/providers/Microsoft.DataProtection/backupVaults/" + name
}

// vaultOf returns the vault id of a request under a vault.
func vaultOf(r *arm.Request) string {
	return vaultID(r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("vaultName"))
}

// parsedID is an ARM resource id split into the parts we need.
type parsedID struct {
	Subscription, Group, Provider, Type, Name string
}

// parseID splits /subscriptions/S/resourceGroups/G[/providers/P/T/N].
func parseID(id string) (parsedID, bool) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	if len(parts) < 4 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") {
		return parsedID{}, false
	}
	p := parsedID{Subscription: parts[1], Group: parts[3]}
	if len(parts) == 4 {
		return p, true
	}
	if len(parts) != 8 || !strings.EqualFold(parts[4], "providers") {
		return parsedID{}, false
	}
	p.Provider, p.Type, p.Name = parts[5], parts[6], parts[7]
	return p, true
}

// time formats the service uses on the wire
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

// load reads the JSON body of a stored resource into v.
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

// save stores v as the resource id.
func (s *Service) save(ctx context.Context, tx meta.Tx, id, typ, name, parent string, v any) (bool, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	p, _ := parseID(id)
	if p.Subscription == "" { // nested resources: take the vault's parts
		parts := strings.Split(strings.Trim(id, "/"), "/")
		p.Subscription, p.Group = parts[1], parts[3]
	}
	return tx.PutResource(ctx, meta.Resource{ID: id, Type: typ, Name: name, Subscription: p.Subscription,
		ResourceGroup: p.Group, Parent: parent, Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()})
}

// listUnder lists one page of resources of typ under parent.
func listUnder[T any](ctx context.Context, s *Service, r *arm.Request, q meta.Query) (*arm.Response, error) {
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	q.After, q.Limit = after, limit
	page, err := s.Store.ListResources(ctx, q)
	if err != nil {
		return nil, err
	}
	items := make([]T, 0, len(page.Items))
	for _, res := range page.Items {
		var v T
		if err := json.Unmarshal(res.Body, &v); err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	return arm.List(r, items, page.Next), nil
}

func invalid(code, target, format string, args ...any) *errs.Error {
	return errs.E(errs.Invalid, code, format, args...).WithTarget(target)
}

func oneOfFold(v string, set ...string) (string, bool) {
	for _, s := range set {
		if strings.EqualFold(v, s) {
			return s, true
		}
	}
	return "", false
}

func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}
