package dataprotection

import (
	"context"
	"net/http"
	"regexp"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
)

const (
	guardPath = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/resourceGuards/{resourceGuardsName}"
	proxyPath = vaultPath + "/backupResourceGuardProxies/{resourceGuardProxyName}"
)

// guardRoutes registers resource guards, their request objects and the
// vault's guard proxy.
func (s *Service) guardRoutes(h func(method, pattern, action string, fn arm.HandlerFunc)) {
	h(http.MethodPut, guardPath, "resourceGuards/write", s.putGuard)
	h(http.MethodGet, guardPath, "resourceGuards/read", s.getGuard)
	h(http.MethodPatch, guardPath, "resourceGuards/write", s.patchGuard)
	h(http.MethodDelete, guardPath, "resourceGuards/delete", s.deleteGuard)
	h(http.MethodGet, "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/resourceGuards", "resourceGuards/read", s.listGuards)
	h(http.MethodGet, "/subscriptions/{subscriptionId}/providers/Microsoft.DataProtection/resourceGuards", "resourceGuards/read", s.listGuards)
	for _, rt := range backup.RequestTypes() {
		h(http.MethodGet, guardPath+"/"+rt, "resourceGuards/"+rt+"/read", s.listGuardRequests(rt))
		h(http.MethodGet, guardPath+"/"+rt+"/{requestName}", "resourceGuards/"+rt+"/read", s.getGuardRequest(rt))
	}

	h(http.MethodPut, proxyPath, "backupVaults/backupResourceGuardProxies/write", s.putProxy)
	h(http.MethodGet, proxyPath, "backupVaults/backupResourceGuardProxies/read", s.getProxy)
	h(http.MethodDelete, proxyPath, "backupVaults/backupResourceGuardProxies/delete", s.deleteProxy)
	h(http.MethodGet, vaultPath+"/backupResourceGuardProxies", "backupVaults/backupResourceGuardProxies/read", s.listProxies)
	h(http.MethodPost, proxyPath+"/unlockDelete", "backupVaults/backupResourceGuardProxies/unlockDelete/action", s.unlockDelete)
}

// callerOf is who asks, with the resourceGuardOperationRequests the body
// names.
func callerOf(r *arm.Request, requests []string) backup.Caller {
	c := backup.Caller{Principal: r.Principal.ObjectID, Requests: requests}
	for _, p := range r.Auxiliary {
		c.Auxiliary = append(c.Auxiliary, p.ObjectID)
	}
	return c
}

var guardName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$`)

func guardID(r *arm.Request) string {
	return "/subscriptions/" + r.Param("subscriptionId") + "/resourceGroups/" + r.Param("resourceGroupName") +
		"/providers/Microsoft.DataProtection/resourceGuards/" + r.Param("resourceGuardsName")
}

func (s *Service) putGuard(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	name := r.Param("resourceGuardsName")
	if !guardName.MatchString(name) {
		return nil, invalid("InvalidResourceName", "resourceGuardsName",
			"The resource guard name '%s' is invalid: use 1-50 letters, digits, '-' and '_', starting with a letter or digit.", name)
	}
	var in struct {
		Location   *string           `json:"location"`
		Tags       map[string]string `json:"tags"`
		Properties *struct {
			VaultCriticalOperationExclusionList []string `json:"vaultCriticalOperationExclusionList"`
		} `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(&in.Tags); err != nil {
		return nil, err
	}
	req := backup.GuardRequest{ID: guardID(r), Location: normalizeLocation(*in.Location), Tags: in.Tags}
	if in.Properties != nil {
		req.Exclusions = in.Properties.VaultCriticalOperationExclusionList
	}
	var out backup.Guard
	created := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := groups.RequireActive(ctx, tx, r.Param("subscriptionId"), r.Param("resourceGroupName")); err != nil {
			return err
		}
		g, c, err := s.Backup.PutGuard(ctx, tx, req)
		if err != nil {
			return err
		}
		created = c
		out, err = s.Backup.Guard(ctx, tx, g.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	if created {
		return arm.Created(out), nil
	}
	return arm.OK(out), nil
}

func (s *Service) getGuard(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	g, err := s.Backup.Guard(ctx, s.Store, guardID(r))
	if err != nil {
		return nil, err
	}
	return arm.OK(g), nil
}

func (s *Service) patchGuard(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		Tags map[string]string `json:"tags"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Tags != nil {
		if err := arm.CheckTags(&in.Tags); err != nil {
			return nil, err
		}
	}
	var out backup.Guard
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		if _, err := s.Backup.PatchGuardTags(ctx, tx, guardID(r), in.Tags); err != nil {
			return err
		}
		var err error
		out, err = s.Backup.Guard(ctx, tx, guardID(r))
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

func (s *Service) deleteGuard(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	err := s.Store.InTx(ctx, func(tx meta.Tx) error { return s.Backup.DeleteGuard(ctx, tx, guardID(r)) })
	if errs.Is(err, errs.NotFound) {
		return arm.NoContent(), nil
	}
	if err != nil {
		return nil, err
	}
	return arm.OK(nil), nil
}

func (s *Service) listGuards(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	q := meta.Query{Type: backup.GuardType, Subscription: r.Param("subscriptionId"), ResourceGroup: r.Param("resourceGroupName")}
	return listUnder[backup.Guard](ctx, s, r, q, func(g *backup.Guard) bool {
		// The stored document may predate the read-only listing.
		if fresh, err := s.Backup.Guard(ctx, s.Store, g.ID); err == nil {
			*g = fresh
		}
		return true
	})
}

// guardRequest is one request object of a guard (DppBaseResource): only
// "default" exists, the request a vault names to be approved.
type guardRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

func (s *Service) listGuardRequests(requestType string) arm.HandlerFunc {
	return func(ctx context.Context, r *arm.Request) (*arm.Response, error) {
		g, err := s.Backup.Guard(ctx, s.Store, guardID(r))
		if err != nil {
			return nil, err
		}
		return arm.List(r, []guardRequest{{ID: g.ID + "/" + requestType + "/default", Name: "default", Type: backup.GuardType + "/" + requestType}}, ""), nil
	}
}

func (s *Service) getGuardRequest(requestType string) arm.HandlerFunc {
	return func(ctx context.Context, r *arm.Request) (*arm.Response, error) {
		g, err := s.Backup.Guard(ctx, s.Store, guardID(r))
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(r.Param("requestName"), "default") {
			return nil, errs.E(errs.NotFound, "ResourceNotFound",
				"The resource guard '%s' has no %s request named '%s'; the only one is 'default'.", g.Name, requestType, r.Param("requestName"))
		}
		return arm.OK(guardRequest{ID: g.ID + "/" + requestType + "/default", Name: "default", Type: backup.GuardType + "/" + requestType}), nil
	}
}

func checkProxyName(r *arm.Request) error {
	if n := r.Param("resourceGuardProxyName"); n != backup.ProxyName {
		return errs.E(errs.NotFound, "ResourceNotFound",
			"A Backup vault's resource guard proxy is named '%s', not '%s'.", backup.ProxyName, n)
	}
	return nil
}

func (s *Service) putProxy(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if err := checkProxyName(r); err != nil {
		return nil, err
	}
	var in struct {
		Properties *struct {
			ResourceGuardResourceID        string   `json:"resourceGuardResourceId"`
			ResourceGuardOperationRequests []string `json:"resourceGuardOperationRequests"`
		} `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil || in.Properties.ResourceGuardResourceID == "" {
		return nil, invalid("InvalidRequestContent", "properties.resourceGuardResourceId",
			"The request needs properties.resourceGuardResourceId, the resource guard to associate with the vault.")
	}
	gid, err := arm.ParseResourceID(in.Properties.ResourceGuardResourceID)
	if err != nil || !strings.EqualFold(gid.Type(), backup.GuardType) {
		return nil, invalid("InvalidRequestContent", "properties.resourceGuardResourceId",
			"'%s' is not the id of a Microsoft.DataProtection/resourceGuards resource.", in.Properties.ResourceGuardResourceID)
	}
	var out backup.Proxy
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		out, _, err = s.Backup.PutProxy(ctx, tx, vaultOf(r), gid.String(), callerOf(r, in.Properties.ResourceGuardOperationRequests))
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

func (s *Service) getProxy(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	if err := checkProxyName(r); err != nil {
		return nil, err
	}
	p, err := s.Backup.Proxy(ctx, s.Store, vaultOf(r))
	if err != nil {
		return nil, err
	}
	return arm.OK(p), nil
}

func (s *Service) listProxies(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	return listUnder[backup.Proxy](ctx, s, r, meta.Query{Type: backup.ProxyType, Parent: vaultOf(r)})
}

func (s *Service) deleteProxy(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	if err := checkProxyName(r); err != nil {
		return nil, err
	}
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		return s.Backup.DeleteProxy(ctx, tx, vaultOf(r), callerOf(r, nil))
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(nil), nil
}

func (s *Service) unlockDelete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	if err := checkProxyName(r); err != nil {
		return nil, err
	}
	var in struct {
		ResourceGuardOperationRequests []string `json:"resourceGuardOperationRequests"`
		ResourceToBeDeleted            string   `json:"resourceToBeDeleted"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.ResourceToBeDeleted != "" && !strings.EqualFold(strings.TrimSuffix(in.ResourceToBeDeleted, "/"), vaultOf(r)+"/backupResourceGuardProxies/"+backup.ProxyName) {
		return nil, invalid("InvalidRequestContent", "resourceToBeDeleted",
			"unlockDelete unlocks this vault's resource guard proxy only, not '%s'.", in.ResourceToBeDeleted)
	}
	until, err := s.Backup.UnlockDelete(ctx, vaultOf(r), callerOf(r, in.ResourceGuardOperationRequests))
	if err != nil {
		return nil, err
	}
	return arm.OK(map[string]string{"unlockDeleteExpiryTime": stamp(until)}), nil
}
