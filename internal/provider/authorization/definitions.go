package authorization

import (
	"context"
	"encoding/json"
	"regexp"
	"sort"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/rbac"
	"github.com/google/uuid"
)

type permission struct {
	Actions        []string `json:"actions"`
	NotActions     []string `json:"notActions"`
	DataActions    []string `json:"dataActions"`
	NotDataActions []string `json:"notDataActions"`
}

type definitionProperties struct {
	RoleName         string       `json:"roleName"`
	Type             string       `json:"type"`
	Description      string       `json:"description"`
	AssignableScopes []string     `json:"assignableScopes"`
	Permissions      []permission `json:"permissions"`
	CreatedOn        string       `json:"createdOn,omitempty"`
	UpdatedOn        string       `json:"updatedOn,omitempty"`
	CreatedBy        string       `json:"createdBy,omitempty"`
	UpdatedBy        string       `json:"updatedBy,omitempty"`
}

// Definition is the wire form of a role definition.
type Definition struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Properties definitionProperties `json:"properties"`
}

// definitionBody is how a custom role is stored.
type definitionBody = Definition

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (d Definition) toRBAC() rbac.RoleDefinition {
	out := rbac.RoleDefinition{ID: d.Name, RoleName: d.Properties.RoleName, Description: d.Properties.Description,
		RoleType: d.Properties.Type, AssignableScopes: d.Properties.AssignableScopes}
	for _, p := range d.Properties.Permissions {
		out.Permissions = append(out.Permissions, rbac.Permission{Actions: p.Actions, NotActions: p.NotActions,
			DataActions: p.DataActions, NotDataActions: p.NotDataActions})
	}
	return out
}

// wireDefinition renders def as seen from scope.
func wireDefinition(def rbac.RoleDefinition, scope string, times definitionProperties) Definition {
	d := Definition{ID: roleDefinitionID(scope, def.ID), Name: def.ID, Type: DefinitionType, Properties: definitionProperties{
		RoleName: def.RoleName, Type: def.RoleType, Description: def.Description,
		AssignableScopes: orEmpty(def.AssignableScopes), Permissions: []permission{},
		CreatedOn: times.CreatedOn, UpdatedOn: times.UpdatedOn, CreatedBy: times.CreatedBy, UpdatedBy: times.UpdatedBy,
	}}
	for _, p := range def.Permissions {
		d.Properties.Permissions = append(d.Properties.Permissions, permission{Actions: orEmpty(p.Actions),
			NotActions: orEmpty(p.NotActions), DataActions: orEmpty(p.DataActions), NotDataActions: orEmpty(p.NotDataActions)})
	}
	return d
}

func definitionNotFound(id string) error {
	return errs.E(errs.NotFound, "RoleDefinitionDoesNotExist", "The specified role definition with ID '%s' does not exist.", id)
}

func (s *Service) getDefinition(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := r.Param("roleDefinitionId")
	def, times, ok, err := s.definition(ctx, guid)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, definitionNotFound(guid)
	}
	return arm.OK(wireDefinition(def, scopeOf(r), times)), nil
}

func (s *Service) definition(ctx context.Context, guid string) (rbac.RoleDefinition, definitionProperties, bool, error) {
	if def, ok := s.builtins().Lookup(guid); ok {
		return def, definitionProperties{}, true, nil
	}
	res, err := s.Store.GetResource(ctx, provider+"/roleDefinitions/"+guid)
	if errs.Is(err, errs.NotFound) {
		return rbac.RoleDefinition{}, definitionProperties{}, false, nil
	}
	if err != nil {
		return rbac.RoleDefinition{}, definitionProperties{}, false, err
	}
	var d Definition
	if err := json.Unmarshal(res.Body, &d); err != nil {
		return rbac.RoleDefinition{}, definitionProperties{}, false, err
	}
	return d.toRBAC(), d.Properties, true, nil
}

var (
	roleNameFilter = regexp.MustCompile(`(?i)^roleName\s+eq\s+'([^']+)'$`)
	typeFilter     = regexp.MustCompile(`(?i)^type\s+eq\s+'([^']+)'$`)
)

func (s *Service) listDefinitions(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	scope := scopeOf(r)
	var roleName, roleType string
	if f := strings.TrimSpace(r.Query("$filter")); f != "" {
		for _, term := range regexp.MustCompile(`(?i)\s+and\s+`).Split(f, -1) {
			switch {
			case roleNameFilter.MatchString(term):
				roleName = roleNameFilter.FindStringSubmatch(term)[1]
			case typeFilter.MatchString(term):
				roleType = typeFilter.FindStringSubmatch(term)[1]
			case strings.EqualFold(term, "atScopeAndBelow()"):
			default:
				return nil, errs.E(errs.Invalid, "UnsupportedQuery",
					"The filter '%s' is not supported. Supported: roleName eq '{name}', type eq '{BuiltInRole|CustomRole}', atScopeAndBelow().", f).WithTarget("$filter")
			}
		}
	}
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	var all []Definition
	for _, def := range rbac.BuiltInRoles() {
		all = append(all, wireDefinition(def, scope, definitionProperties{}))
	}
	q := meta.Query{Type: DefinitionType, Limit: 1000}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, res := range page.Items {
			var d Definition
			if err := json.Unmarshal(res.Body, &d); err != nil {
				return nil, err
			}
			if rbac.ValidAssignableScope(d.toRBAC(), scope) || scopeIsAbove(scope, d.Properties.AssignableScopes) {
				all = append(all, wireDefinition(d.toRBAC(), scope, d.Properties))
			}
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	kept := all[:0]
	for _, d := range all {
		if (roleName == "" || strings.EqualFold(d.Properties.RoleName, roleName)) &&
			(roleType == "" || strings.EqualFold(d.Properties.Type, roleType)) {
			kept = append(kept, d)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name < kept[j].Name })
	items, next := pageSorted(kept, func(d Definition) string { return d.Name }, after, limit)
	return arm.List(r, items, next), nil
}

// scopeIsAbove reports whether scope is an ancestor of any of scopes, so a
// role assignable at a resource group is listed at its subscription.
func scopeIsAbove(scope string, scopes []string) bool {
	for _, sc := range scopes {
		if rbac.ScopeCovers(scope, sc) {
			return true
		}
	}
	return false
}

func (s *Service) putDefinition(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := strings.ToLower(r.Param("roleDefinitionId"))
	if !guidRE.MatchString(guid) {
		return nil, errs.E(errs.Invalid, "InvalidRoleDefinitionId", "The role definition ID '%s' must be a GUID.", guid).WithTarget("roleDefinitionId")
	}
	if _, ok := s.builtins().Lookup(guid); ok {
		return nil, errs.E(errs.Forbidden, "RoleDefinitionUpdateNotPermitted", "Built-in role '%s' cannot be changed.", guid)
	}
	var in Definition
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	p := in.Properties
	scope := scopeOf(r)
	switch {
	case strings.TrimSpace(p.RoleName) == "":
		return nil, errs.E(errs.Invalid, "RoleDefinitionNameNullOrEmpty", "The role definition name cannot be null or empty.").WithTarget("properties.roleName")
	case p.Type != "" && !strings.EqualFold(p.Type, rbac.CustomRoleType):
		return nil, errs.E(errs.Invalid, "InvalidRoleDefinitionType", "Only roles of type 'CustomRole' can be created, not '%s'.", p.Type).WithTarget("properties.type")
	case len(p.AssignableScopes) == 0:
		return nil, errs.E(errs.Invalid, "InvalidAssignableScopes", "A custom role needs at least one assignable scope.").WithTarget("properties.assignableScopes")
	case len(p.Permissions) == 0:
		return nil, errs.E(errs.Invalid, "InvalidPermissions", "A custom role needs at least one permission block.").WithTarget("properties.permissions")
	}
	for i, sc := range p.AssignableScopes {
		sc = canonicalScope(sc)
		if err := s.checkScope(ctx, sc); err != nil {
			return nil, err
		}
		if !rbac.ScopeCovers(scope, sc) {
			return nil, errs.E(errs.Invalid, "InvalidAssignableScopes",
				"The assignable scope '%s' is not at or below the scope '%s' the role is created at.", sc, scope).WithTarget("properties.assignableScopes")
		}
		p.AssignableScopes[i] = sc
	}
	prev, _, exists, err := s.definition(ctx, guid)
	if err != nil {
		return nil, err
	}
	var touched []string
	if exists {
		touched = append(touched, prev.AssignableScopes...)
	}
	if err := s.authorizeOver(ctx, r, dWriteAction, append(touched, p.AssignableScopes...)); err != nil {
		return nil, err
	}
	for _, def := range rbac.BuiltInRoles() {
		if strings.EqualFold(def.RoleName, p.RoleName) {
			return nil, errs.E(errs.Conflict, "RoleDefinitionWithSameNameExists", "A role definition named '%s' already exists.", p.RoleName)
		}
	}
	p.Type = rbac.CustomRoleType
	now := timestamp(s.Clock.Now())
	id := provider + "/roleDefinitions/" + guid
	var out Definition
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		page, err := tx.ListResources(ctx, meta.Query{Type: DefinitionType, Limit: 1000})
		if err != nil {
			return err
		}
		for _, res := range page.Items {
			var d Definition
			if json.Unmarshal(res.Body, &d) == nil && d.Name != guid && strings.EqualFold(d.Properties.RoleName, p.RoleName) {
				return errs.E(errs.Conflict, "RoleDefinitionWithSameNameExists", "A role definition named '%s' already exists.", p.RoleName)
			}
		}
		p.CreatedOn, p.CreatedBy = now, r.Principal.ObjectID
		if res, err := tx.GetResource(ctx, id); err == nil {
			var prev Definition
			if json.Unmarshal(res.Body, &prev) == nil {
				p.CreatedOn, p.CreatedBy = prev.Properties.CreatedOn, prev.Properties.CreatedBy
			}
		}
		p.UpdatedOn, p.UpdatedBy = now, r.Principal.ObjectID
		out = wireDefinition(Definition{Name: guid, Properties: p}.toRBAC(), "/", p)
		body, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = tx.PutResource(ctx, meta.Resource{ID: id, Type: DefinitionType, Name: guid, Parent: "/",
			Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()})
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.Created(wireDefinition(out.toRBAC(), scope, out.Properties)), nil
}

func (s *Service) deleteDefinition(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	guid := strings.ToLower(r.Param("roleDefinitionId"))
	if _, ok := s.builtins().Lookup(guid); ok {
		return nil, errs.E(errs.Forbidden, "RoleDefinitionUpdateNotPermitted", "Built-in role '%s' cannot be deleted.", guid)
	}
	def, times, ok, err := s.definition(ctx, guid)
	if err != nil {
		return nil, err
	}
	if !ok {
		return arm.NoContent(), nil
	}
	if err := s.authorizeOver(ctx, r, dDeleteAction, def.AssignableScopes); err != nil {
		return nil, err
	}
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		n, err := tx.CountAssignmentsOfRole(ctx, guid)
		if err != nil {
			return err
		}
		if n > 0 {
			return errs.E(errs.Conflict, "RoleDefinitionHasAssignments",
				"There are %d role assignments of role '%s'; delete them before the role.", n, def.RoleName)
		}
		_, err = tx.DeleteResource(ctx, provider+"/roleDefinitions/"+guid)
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(wireDefinition(def, scopeOf(r), times)), nil
}

// authorizeOver refuses the caller unless it holds action over every one of
// scopes. A role definition is one row for the whole tenant, so changing it
// changes what every assignment of it grants: the caller must hold the right
// over each scope the role is, or would become, assignable at, not only over
// the scope the request names.
func (s *Service) authorizeOver(ctx context.Context, r *arm.Request, action string, scopes []string) error {
	for _, sc := range scopes {
		if err := s.Authorize(ctx, r.Principal, action, sc); err != nil {
			return err
		}
	}
	return nil
}
