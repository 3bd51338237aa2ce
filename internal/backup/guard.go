package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/google/uuid"
)

// Resource types and the one proxy name of multi-user authorization.
const (
	GuardType = "Microsoft.DataProtection/resourceGuards"
	ProxyType = "Microsoft.DataProtection/backupVaults/backupResourceGuardProxies"
	// ProxyName is the only name a vault's guard proxy has, as in Azure.
	ProxyName = "DppResourceGuardProxy"
)

// The critical operations of a Backup vault, by the ARM action that names
// them in vaultCriticalOperationExclusionList.
const (
	OpDeleteInstance = "Microsoft.DataProtection/backupVaults/backupInstances/delete"
	OpStopProtection = "Microsoft.DataProtection/backupVaults/backupInstances/stopProtection/action"
	OpSuspendBackups = "Microsoft.DataProtection/backupVaults/backupInstances/suspendBackups/action"
	// OpModifyProtection is moving an instance to a policy that keeps
	// backups for less time.
	OpModifyProtection = "Microsoft.DataProtection/backupVaults/backupInstances/write"
	// OpReduceSecurity is a vault write that turns soft delete off,
	// shortens its retention, or disables immutability.
	OpReduceSecurity = "Microsoft.DataProtection/backupVaults/write"
	OpDeleteProxy    = "Microsoft.DataProtection/backupVaults/backupResourceGuardProxies/delete"
)

// CriticalOperation is one operation a resource guard protects.
type CriticalOperation struct {
	Name string // the vault's ARM action
	// RequestType is the guard's sub-resource that stands for approving
	// it: resourceGuardOperationRequests name <guard>/<RequestType>/default.
	RequestType string
	// Mandatory operations cannot be excluded: without them a vault admin
	// could switch the guard off and then do the rest alone.
	Mandatory bool
}

// CriticalOperations lists what a guard protects on an associated vault.
func CriticalOperations() []CriticalOperation {
	return []CriticalOperation{
		{OpDeleteInstance, "deleteProtectedItemRequests", false},
		{OpStopProtection, "updateProtectedItemRequests", false},
		{OpSuspendBackups, "updateProtectedItemRequests", false},
		{OpModifyProtection, "updateProtectedItemRequests", false},
		{OpReduceSecurity, "disableSoftDeleteRequests", true},
		{OpDeleteProxy, "deleteResourceGuardProxyRequests", true},
	}
}

// RequestTypes are the guard's request sub-resources the API defines;
// those no Backup vault operation uses (getBackupSecurityPINRequests,
// updateProtectionPolicyRequests) exist so clients can read them.
func RequestTypes() []string {
	return []string{"deleteProtectedItemRequests", "deleteResourceGuardProxyRequests", "disableSoftDeleteRequests",
		"getBackupSecurityPINRequests", "updateProtectedItemRequests", "updateProtectionPolicyRequests"}
}

// requestAliases are other spellings Azure's own examples use for a request
// type.
var requestAliases = map[string]string{"deletebackupinstancerequests": "deleteprotecteditemrequests"}

// GuardAction is the permission on a guard that approves operations of the
// request type: held through Backup MUA Operator (or Admin, Contributor,
// Owner) at the guard's scope. It is an action, not a read, so that a
// Reader of the guard cannot approve.
func GuardAction(requestType string) string {
	return "Microsoft.DataProtection/resourceGuards/" + requestType + "/action"
}

func criticalOperation(name string) (CriticalOperation, bool) {
	for _, op := range CriticalOperations() {
		if strings.EqualFold(op.Name, name) {
			return op, true
		}
	}
	return CriticalOperation{}, false
}

// Guard is a resource guard as ARM serves it.
type Guard struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	ETag       string            `json:"eTag,omitempty"`
	Properties GuardProperties   `json:"properties"`
}

// GuardProperties are a guard's settings; only the exclusion list is
// written by clients.
type GuardProperties struct {
	ProvisioningState                   string           `json:"provisioningState"`
	AllowAutoApprovals                  bool             `json:"allowAutoApprovals"`
	ResourceGuardOperations             []GuardOperation `json:"resourceGuardOperations"`
	VaultCriticalOperationExclusionList []string         `json:"vaultCriticalOperationExclusionList"`
	Description                         string           `json:"description,omitempty"`
}

// GuardOperation is one protected operation in a guard's listing.
type GuardOperation struct {
	VaultCriticalOperation string `json:"vaultCriticalOperation"`
	RequestResourceType    string `json:"requestResourceType"`
}

// Proxy associates a vault with a guard.
type Proxy struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Properties ProxyProperties `json:"properties"`
}

// ProxyProperties name the guard and the requests that approve each
// protected operation.
type ProxyProperties struct {
	ResourceGuardResourceID       string              `json:"resourceGuardResourceId"`
	ResourceGuardOperationDetails []GuardOperationRef `json:"resourceGuardOperationDetails"`
	LastUpdatedTime               string              `json:"lastUpdatedTime"`
	Description                   string              `json:"description,omitempty"`
}

// GuardOperationRef names the default request of one operation.
type GuardOperationRef struct {
	VaultCriticalOperation string `json:"vaultCriticalOperation"`
	DefaultResourceRequest string `json:"defaultResourceRequest"`
}

// Caller is who asks for an operation on a vault: the request's principal,
// the principals of its x-ms-authorization-auxiliary tokens, and the
// resourceGuardOperationRequests its body names.
type Caller struct {
	Principal string
	Auxiliary []string
	Requests  []string
}

// GuardRequest is a guard PUT.
type GuardRequest struct {
	ID, Location string
	Tags         map[string]string
	Exclusions   []string
}

// guardLabel indexes proxies by the guard they name, so a guard in use is
// found without a scan.
const guardLabel = "resourceGuard"

// PutGuard creates or updates a guard. An exclusion that is not a critical
// operation, or is a mandatory one, is refused: it would be stored and not
// take effect.
func (s *Service) PutGuard(ctx context.Context, tx meta.Tx, in GuardRequest) (Guard, bool, error) {
	exclusions := make([]string, 0, len(in.Exclusions))
	for i, name := range in.Exclusions {
		op, ok := criticalOperation(name)
		if !ok {
			return Guard{}, false, errs.E(errs.Invalid, "UserErrorInvalidCriticalOperation",
				"vaultCriticalOperationExclusionList[%d] '%s' is not a critical operation of a Backup vault; see properties.resourceGuardOperations of any guard.", i, name).
				WithTarget("properties.vaultCriticalOperationExclusionList")
		}
		if op.Mandatory {
			return Guard{}, false, errs.E(errs.Invalid, "UserErrorMandatoryCriticalOperationCannotBeExcluded",
				"The critical operation '%s' is mandatory and cannot be excluded from the resource guard.", op.Name).
				WithTarget("properties.vaultCriticalOperationExclusionList")
		}
		exclusions = append(exclusions, op.Name)
	}
	g, err := s.Guard(ctx, tx, in.ID)
	created := errs.Is(err, errs.NotFound)
	switch {
	case created:
		g = Guard{ID: in.ID, Name: lastSegment(in.ID), Type: GuardType, Location: in.Location}
	case err != nil:
		return Guard{}, false, err
	case normalizeLocation(g.Location) != normalizeLocation(in.Location):
		return Guard{}, false, errs.E(errs.Invalid, "UserErrorResourceGuardLocationChange",
			"The resource guard '%s' is in '%s'; it cannot move to '%s'.", g.Name, g.Location, in.Location).WithTarget("location")
	}
	g.Tags = in.Tags
	g.Properties.VaultCriticalOperationExclusionList = exclusions
	return g, created, s.saveGuard(ctx, tx, g)
}

// PatchGuardTags replaces a guard's tags, the only thing PATCH changes.
func (s *Service) PatchGuardTags(ctx context.Context, tx meta.Tx, id string, tags map[string]string) (Guard, error) {
	g, err := s.Guard(ctx, tx, id)
	if err != nil {
		return Guard{}, err
	}
	if tags != nil {
		g.Tags = tags
	}
	return g, s.saveGuard(ctx, tx, g)
}

func (s *Service) saveGuard(ctx context.Context, tx meta.Tx, g Guard) error {
	g.ETag = uuid.NewString()
	g.Properties = guardView(g.Properties)
	_, err := s.put(ctx, tx, g.ID, GuardType, g.Name, groupOf(g.ID), g)
	return err
}

// guardView fills the read-only properties.
func guardView(p GuardProperties) GuardProperties {
	p.ProvisioningState = "Succeeded"
	p.Description = "Critical operations on an associated Backup vault succeed only when the caller also holds the guard's permission for them (Backup MUA Operator on this guard)."
	p.ResourceGuardOperations = p.ResourceGuardOperations[:0]
	for _, op := range CriticalOperations() {
		p.ResourceGuardOperations = append(p.ResourceGuardOperations,
			GuardOperation{VaultCriticalOperation: op.Name, RequestResourceType: GuardType + "/" + op.RequestType})
	}
	if p.VaultCriticalOperationExclusionList == nil {
		p.VaultCriticalOperationExclusionList = []string{}
	}
	return p
}

// Guard reads the guard id; ResourceNotFound if absent.
func (s *Service) Guard(ctx context.Context, tx meta.Tx, id string) (Guard, error) {
	var g Guard
	_, err := load(ctx, tx, id, &g, func() error {
		return errs.E(errs.NotFound, "ResourceNotFound", "The Resource 'Microsoft.DataProtection/resourceGuards/%s' under resource group was not found.", lastSegment(id))
	})
	if err == nil {
		g.Properties = guardView(g.Properties)
	}
	return g, err
}

// DeleteGuard deletes the guard id; refused while a vault is associated
// with it, since deleting it would lift the vault's protection without the
// vault's critical operation for that.
func (s *Service) DeleteGuard(ctx context.Context, tx meta.Tx, id string) error {
	g, err := s.Guard(ctx, tx, id)
	if err != nil {
		return err
	}
	proxies, err := tx.FindLabeled(ctx, guardLabel, g.ID)
	if err != nil {
		return err
	}
	if len(proxies) > 0 {
		return errs.E(errs.Conflict, "UserErrorResourceGuardInUse",
			"The resource guard '%s' protects %d Backup vaults (the first is '%s'); remove their resource guard proxies first.",
			g.Name, len(proxies), proxies[0][:strings.LastIndex(strings.ToLower(proxies[0]), "/backupresourceguardproxies/")])
	}
	_, err = tx.DeleteResource(ctx, g.ID)
	return err
}

// guardsInUseUnder refuses deleting the resource group groupID while a
// guard in it protects a vault outside it: the group delete would lift the
// vault's protection without its critical operation.
//
// It also refuses deleting the group of a guarded vault that holds backup
// instances: the group delete would take them without the guard's
// approval of deleting each.
func (s *Service) guardsInUseUnder(ctx context.Context, groupID string) error {
	proxies, err := s.Store.ListResources(ctx, meta.Query{Type: ProxyType, Under: groupID, Limit: 500})
	if err != nil {
		return err
	}
	for _, p := range proxies.Items {
		n, err := s.CountInstances(ctx, s.Store, p.Parent)
		if err != nil {
			return err
		}
		if n > 0 {
			return errs.E(errs.Conflict, "UserErrorBackupVaultHasBackupInstances",
				"The Backup vault '%s' in this resource group holds %d backup instances and is protected by a resource guard; delete them, with the guard's approval, before the group.",
				p.Parent, n)
		}
	}
	q := meta.Query{Type: GuardType, Under: groupID, Limit: 500}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			proxies, err := s.Store.FindLabeled(ctx, guardLabel, res.ID)
			if err != nil {
				return err
			}
			for _, p := range proxies {
				if !strings.HasPrefix(strings.ToLower(p), strings.ToLower(groupID)+"/") {
					return errs.E(errs.Conflict, "UserErrorResourceGuardInUse",
						"The resource guard '%s' in this resource group protects the Backup vault '%s'; remove its resource guard proxy first.",
						res.ID, p[:strings.LastIndex(strings.ToLower(p), "/backupresourceguardproxies/")])
				}
			}
		}
		if page.Next == "" {
			return nil
		}
		q.After = page.Next
	}
}

// Proxy reads the vault's guard proxy; ResourceNotFound if it has none.
func (s *Service) Proxy(ctx context.Context, tx meta.Tx, vaultID string) (Proxy, error) {
	var p Proxy
	_, err := load(ctx, tx, vaultID+"/backupResourceGuardProxies/"+ProxyName, &p, func() error {
		return errs.E(errs.NotFound, "ResourceNotFound", "The Backup vault '%s' has no resource guard proxy.", lastSegment(vaultID))
	})
	return p, err
}

// PutProxy associates the vault with the guard guardID. The caller must be
// able to read the guard (checked here as the vault's authorization cannot
// see it); replacing one guard by another lifts the first guard's
// protection, so it is the critical operation of deleting the proxy.
func (s *Service) PutProxy(ctx context.Context, tx meta.Tx, vaultID, guardID string, c Caller) (Proxy, bool, error) {
	v, err := LoadVault(ctx, tx, vaultID)
	if err != nil {
		return Proxy{}, false, err
	}
	g, err := s.Guard(ctx, tx, guardID)
	if errs.Is(err, errs.NotFound) {
		return Proxy{}, false, errs.E(errs.Invalid, "UserErrorResourceGuardNotFound",
			"The resource guard '%s' does not exist.", guardID).WithTarget("properties.resourceGuardResourceId")
	}
	if err != nil {
		return Proxy{}, false, err
	}
	if normalizeLocation(g.Location) != normalizeLocation(v.Location) {
		return Proxy{}, false, errs.E(errs.Invalid, "UserErrorResourceGuardAndVaultLocationMismatch",
			"The resource guard is in '%s' but the Backup vault is in '%s'; they must be in the same region.", g.Location, v.Location).
			WithTarget("properties.resourceGuardResourceId")
	}
	ok, err := s.Permissions.Allowed(ctx, c.Principal, GuardType+"/read", g.ID)
	if err != nil {
		return Proxy{}, false, err
	}
	if !ok {
		return Proxy{}, false, errs.E(errs.Forbidden, "AuthorizationFailed",
			"The client '%s' with object id '%s' does not have authorization to perform action '%s/read' over scope '%s': associating a vault with a resource guard needs read access to the guard.",
			c.Principal, c.Principal, GuardType, g.ID)
	}
	prev, err := s.Proxy(ctx, tx, vaultID)
	created := errs.Is(err, errs.NotFound)
	if err != nil && !created {
		return Proxy{}, false, err
	}
	if !created && !strings.EqualFold(prev.Properties.ResourceGuardResourceID, g.ID) {
		if err := s.authorizeCritical(ctx, tx, vaultID, OpDeleteProxy, c); err != nil {
			return Proxy{}, false, err
		}
	}
	p := Proxy{ID: vaultID + "/backupResourceGuardProxies/" + ProxyName, Name: ProxyName, Type: ProxyType}
	p.Properties.ResourceGuardResourceID = g.ID
	p.Properties.LastUpdatedTime = s.Clock.Now().UTC().Format(time.RFC3339Nano)
	p.Properties.ResourceGuardOperationDetails = []GuardOperationRef{}
	for _, op := range CriticalOperations() {
		p.Properties.ResourceGuardOperationDetails = append(p.Properties.ResourceGuardOperationDetails,
			GuardOperationRef{VaultCriticalOperation: op.Name, DefaultResourceRequest: g.ID + "/" + op.RequestType + "/default"})
	}
	if _, err := s.put(ctx, tx, p.ID, ProxyType, p.Name, vaultID, p); err != nil {
		return Proxy{}, false, err
	}
	if err := tx.SetLabel(ctx, p.ID, guardLabel, g.ID); err != nil {
		return Proxy{}, false, err
	}
	// Writing the association again locks it again.
	if err := tx.SetTime(ctx, p.ID, timeUnlocked, "", time.Time{}); err != nil {
		return Proxy{}, false, err
	}
	return p, created, s.markVault(ctx, tx, v, true)
}

// unlockWindow is how long an approved unlockDelete lets the proxy go.
const unlockWindow = 30 * time.Minute

// timeUnlocked indexes a proxy by the end of its unlockDelete window; it is
// kept beside the proxy, not in it, because the proxy's document is what
// clients see.
const timeUnlocked = "unlockDelete"

// UnlockDelete approves deleting the vault's proxy: the critical operation
// is checked now, and the proxy may then be deleted until the returned
// time without a second approval.
func (s *Service) UnlockDelete(ctx context.Context, vaultID string, c Caller) (time.Time, error) {
	var until time.Time
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		p, err := s.Proxy(ctx, tx, vaultID)
		if err != nil {
			return err
		}
		if err := s.authorizeCritical(ctx, tx, vaultID, OpDeleteProxy, c); err != nil {
			return err
		}
		until = s.Clock.Now().UTC().Add(unlockWindow)
		return tx.SetTime(ctx, p.ID, timeUnlocked, "", until)
	})
	return until, err
}

// DeleteProxy removes the vault's guard: allowed within an unlockDelete
// window, or when the caller approves it now. Deleting a proxy that is not
// there succeeds.
func (s *Service) DeleteProxy(ctx context.Context, tx meta.Tx, vaultID string, c Caller) error {
	p, err := s.Proxy(ctx, tx, vaultID)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	until, unlocked, err := tx.GetTime(ctx, p.ID, timeUnlocked)
	if err != nil {
		return err
	}
	if !unlocked || !s.Clock.Now().Before(until) {
		if err := s.authorizeCritical(ctx, tx, vaultID, OpDeleteProxy, c); err != nil {
			return err
		}
	}
	if _, err := tx.DeleteResource(ctx, p.ID); err != nil {
		return err
	}
	v, err := LoadVault(ctx, tx, vaultID)
	if err != nil {
		return err
	}
	return s.markVault(ctx, tx, v, false)
}

func (s *Service) markVault(ctx context.Context, tx meta.Tx, v Vault, guarded bool) error {
	if v.Properties.IsVaultProtectedByResourceGuard == guarded {
		return nil
	}
	v.Properties.IsVaultProtectedByResourceGuard = guarded
	_, err := s.put(ctx, tx, v.ID, VaultType, v.Name, groupOf(v.ID), v)
	return err
}

// Authorize checks in tx that c may perform the critical operation op on
// the vault: nil when the vault has no guard, when its guard excludes op,
// or when c approves it; otherwise ResourceGuardAuthorizationFailed.
func (s *Service) Authorize(ctx context.Context, tx meta.Tx, vaultID, op string, c Caller) error {
	return s.authorizeCritical(ctx, tx, vaultID, op, c)
}

// authorizeCritical: c approves op when its body names the guard's request
// for op and its principal holds the guard permission, or when the
// principal of one of its auxiliary tokens holds it.
func (s *Service) authorizeCritical(ctx context.Context, tx meta.Tx, vaultID, name string, c Caller) error {
	op, ok := criticalOperation(name)
	if !ok {
		return fmt.Errorf("backup: %q is not a critical operation", name)
	}
	p, err := s.Proxy(ctx, tx, vaultID)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	guardID := p.Properties.ResourceGuardResourceID
	g, err := s.Guard(ctx, tx, guardID)
	if err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	if err == nil && !op.Mandatory {
		for _, ex := range g.Properties.VaultCriticalOperationExclusionList {
			if strings.EqualFold(ex, op.Name) {
				return nil
			}
		}
	}
	action := GuardAction(op.RequestType)
	var candidates []string
	if namesRequest(c.Requests, guardID, op.RequestType) {
		candidates = append(candidates, c.Principal)
	}
	candidates = append(candidates, c.Auxiliary...)
	for _, principal := range candidates {
		ok, err := s.Permissions.Allowed(ctx, principal, action, guardID)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	how := "Name '" + guardID + "/" + op.RequestType + "/default' in resourceGuardOperationRequests, or send an x-ms-authorization-auxiliary token,"
	return UserError(errs.Forbidden, "ResourceGuardAuthorizationFailed",
		"The operation '"+op.Name+"' is protected by the resource guard '"+guardID+"' and the request does not carry its approval.",
		UserFacingError{
			RecommendedAction: []string{how + " of a principal holding '" + action + "' on the resource guard (Backup MUA Operator), and retry."},
			InnerError: &InnerError{Code: "ResourceGuardAuthorizationFailed", AdditionalInfo: map[string]string{
				"ResourceGuardId": guardID, "RequiredAction": action}},
			IsUserError: true, Details: []UserFacingError{}, Properties: map[string]string{},
		})
}

// namesRequest reports whether requests names <guardID>/<requestType>/<any>.
func namesRequest(requests []string, guardID, requestType string) bool {
	want := strings.ToLower(requestType)
	for _, r := range requests {
		r = strings.TrimSuffix(strings.TrimSpace(r), "/")
		i := strings.LastIndex(r, "/")
		if i < 0 {
			continue
		}
		j := strings.LastIndex(r[:i], "/")
		if j < 0 {
			continue
		}
		typ := strings.ToLower(r[j+1 : i])
		if a, ok := requestAliases[typ]; ok {
			typ = a
		}
		if typ == want && strings.EqualFold(r[:j], guardID) {
			return true
		}
	}
	return false
}

// SecurityReduced reports whether going from before to after lowers a
// vault's protection: soft delete off or kept for fewer days, immutability
// disabled.
func SecurityReduced(before, after *SecuritySettings) bool {
	b, a := Vault{}, Vault{}
	b.Properties.SecuritySettings, a.Properties.SecuritySettings = before, after
	bd, bOn := b.softDeleteDays()
	ad, aOn := a.softDeleteDays()
	if bOn && (!aOn || ad < bd) {
		return true
	}
	return b.Immutable() && !a.Immutable()
}

// put stores v as the resource id.
func (s *Service) put(ctx context.Context, tx meta.Tx, id, typ, name, parent string, v any) (bool, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	parts := strings.Split(id, "/")
	return tx.PutResource(ctx, meta.Resource{ID: id, Type: typ, Name: name, Subscription: parts[2],
		ResourceGroup: parts[4], Parent: parent, Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()})
}

// groupOf is the resource group id at the start of a resource id.
func groupOf(id string) string {
	parts := strings.SplitN(id, "/", 6)
	return strings.Join(parts[:5], "/")
}
