package dataprotection

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/google/uuid"
)

// Versions are the Microsoft.DataProtection api-versions accepted: every
// version Azure publishes, stable and preview, from 2021-01-01 on.
var Versions = arm.APIVersions{Provider: "Microsoft.DataProtection", Versions: []string{
	"2021-01-01", "2021-02-01-preview", "2021-06-01-preview", "2021-07-01", "2021-10-01-preview",
	"2021-12-01-preview", "2022-01-01", "2022-02-01-preview", "2022-03-01", "2022-03-31-preview",
	"2022-04-01", "2022-05-01", "2022-09-01-preview", "2022-10-01-preview", "2022-11-01-preview",
	"2022-12-01", "2023-01-01", "2023-04-01-preview", "2023-05-01", "2023-06-01-preview",
	"2023-08-01", "2023-08-01-preview", "2023-11-01", "2023-12-01", "2024-02-01-preview",
	"2024-03-01", "2024-04-01", "2025-01-01", "2025-02-01", "2025-07-01", "2025-09-01", "2026-03-01",
	"2026-04-01-preview", "2026-06-01", "2026-08-31-preview",
}}

// Service serves Microsoft.DataProtection: it parses and checks requests,
// hands them to the protection use cases in Backup, and runs their durable
// operations.
type Service struct {
	Store    meta.Store
	Ops      *ops.Runner
	Clock    clock.Clock
	TenantID string
	Backup   *backup.Service
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
	for _, a := range backup.Actions() {
		h(http.MethodPost, instancePath+"/"+a.Name, "backupVaults/backupInstances/"+a.Name+"/action", s.changeState(a))
	}

	s.backupRoutes(h)
	s.guardRoutes(h)

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
	parts := strings.Split(id, "/") // "", "subscriptions", S, "resourceGroups", G, ...
	return tx.PutResource(ctx, meta.Resource{ID: id, Type: typ, Name: name, Subscription: parts[2],
		ResourceGroup: parts[4], Parent: parent, Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()})
}

// listUnder lists one page of resources of typ under parent.
func listUnder[T any](ctx context.Context, s *Service, r *arm.Request, q meta.Query, keep ...func(*T) bool) (*arm.Response, error) {
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
		if len(keep) > 0 && !keep[0](&v) {
			continue
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
