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

type assignmentProperties struct {
	Scope                              string `json:"scope,omitempty"`
	RoleDefinitionID                   string `json:"roleDefinitionId"`
	PrincipalID                        string `json:"principalId"`
	PrincipalType                      string `json:"principalType,omitempty"`
	Description                        string `json:"description,omitempty"`
	Condition                          string `json:"condition,omitempty"`
	ConditionVersion                   string `json:"conditionVersion,omitempty"`
	DelegatedManagedIdentityResourceID string `json:"delegatedManagedIdentityResourceId,omitempty"`
	CreatedOn                          string `json:"createdOn,omitempty"`
	UpdatedOn                          string `json:"updatedOn,omitempty"`
	CreatedBy                          string `json:"createdBy,omitempty"`
	UpdatedBy                          string `json:"updatedBy,omitempty"`
}

// Assignment is the wire form of a role assignment.
type Assignment struct {
	ID         string               `json:"id"`
	Name       string               `json:"name"`
	Type       string               `json:"type"`
	Properties assignmentProperties `json:"properties"`
}

var principalTypes = []string{"User", "Group", "ServicePrincipal", "ForeignGroup", "Device", "AgentUser", "AgentServicePrincipal"}

func (s *Service) getAssignment(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	a, err := s.loadAssignment(ctx, scopeOf(r), r.Param("roleAssignmentName"))
	if err != nil {
		return nil, err
	}
	return arm.OK(a), nil
}

func assignmentNotFound(name string) error {
	return errs.E(errs.NotFound, "RoleAssignmentNotFound", "The role assignment '%s' is not found.", name)
}

func (s *Service) loadAssignment(ctx context.Context, scope, name string) (Assignment, error) {
	res, err := s.Store.GetResource(ctx, joinScope(scope, provider+"/roleAssignments/"+name))
	if errs.Is(err, errs.NotFound) {
		return Assignment{}, assignmentNotFound(name)
	}
	if err != nil {
		return Assignment{}, err
	}
	var a Assignment
	return a, json.Unmarshal(res.Body, &a)
}

func (s *Service) putAssignment(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		Properties *assignmentProperties `json:"properties"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.Properties == nil {
		return nil, errs.E(errs.Invalid, "InvalidRequestContent", "The request content must have 'properties'.").WithTarget("properties")
	}
	a, created, err := s.createAssignment(ctx, scopeOf(r), r.Param("roleAssignmentName"), *in.Properties, r.Principal.ObjectID)
	if err != nil {
		return nil, err
	}
	if created {
		return arm.Created(a), nil
	}
	return arm.OK(a), nil
}

// CreateAssignment grants role (GUID or role definition id) to principal at
// scope, as `coffer role assign` and the vault identity setup do.
func (s *Service) createAssignment(ctx context.Context, scope, name string, p assignmentProperties, caller string) (Assignment, bool, error) {
	if !guidRE.MatchString(name) {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidRoleAssignmentId",
			"The role assignment ID '%s' is not valid. The role assignment ID must be a GUID.", name).WithTarget("roleAssignmentName")
	}
	name = strings.ToLower(name)
	if !guidRE.MatchString(p.PrincipalID) {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidPrincipalId",
			"The principal ID '%s' is not valid. Principal IDs must be GUIDs.", p.PrincipalID).WithTarget("properties.principalId")
	}
	p.PrincipalID = strings.ToLower(p.PrincipalID)
	if p.PrincipalType == "" {
		p.PrincipalType = "User"
	}
	if !oneOf(p.PrincipalType, principalTypes) {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidPrincipalType",
			"The principal type '%s' is not one of %s.", p.PrincipalType, strings.Join(principalTypes, ", ")).WithTarget("properties.principalType")
	}
	if p.ConditionVersion != "" && p.ConditionVersion != "2.0" {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidConditionVersion", "The condition version must be '2.0'.").WithTarget("properties.conditionVersion")
	}
	if p.Condition != "" {
		return Assignment{}, false, errs.E(errs.Invalid, "ConditionNotSupported",
			"Role assignment conditions are not supported by this server.").WithTarget("properties.condition")
	}
	roleGUID, roleScope, err := rbac.ParseRoleDefinitionID(p.RoleDefinitionID)
	if err != nil {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidRoleDefinitionId",
			"The role definition ID '%s' is not valid.", p.RoleDefinitionID).WithTarget("properties.roleDefinitionId")
	}
	if sub := subscriptionOf(roleScope); sub != "" && !strings.EqualFold(sub, subscriptionOf(scope)) {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidRoleDefinitionId",
			"The role definition ID '%s' names another subscription than the scope '%s'.", p.RoleDefinitionID, scope).WithTarget("properties.roleDefinitionId")
	}
	if err := s.checkScope(ctx, scope); err != nil {
		return Assignment{}, false, err
	}
	role, ok, err := s.role(ctx, roleGUID)
	if err != nil {
		return Assignment{}, false, err
	}
	if !ok {
		return Assignment{}, false, errs.E(errs.Invalid, "RoleDefinitionDoesNotExist",
			"The specified role definition with ID '%s' does not exist.", roleGUID).WithTarget("properties.roleDefinitionId")
	}
	if !rbac.ValidAssignableScope(role, scope) {
		return Assignment{}, false, errs.E(errs.Invalid, "InvalidRoleAssignmentScope",
			"The role '%s' cannot be assigned at scope '%s': it is not within its assignable scopes.", role.RoleName, scope)
	}
	p.RoleDefinitionID = roleDefinitionID(scope, roleGUID)
	p.Scope = scope
	id := joinScope(scope, provider+"/roleAssignments/"+name)
	now := timestamp(s.Clock.Now())
	var out Assignment
	created := false
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		existing, err := tx.AssignmentsOf(ctx, p.PrincipalID)
		if err != nil {
			return err
		}
		for _, e := range existing {
			if strings.EqualFold(e.Scope, scope) && strings.EqualFold(e.RoleID, roleGUID) && !strings.EqualFold(e.ID, id) {
				return errs.E(errs.Conflict, "RoleAssignmentExists", "The role assignment already exists.").
					WithTarget(e.ID)
			}
		}
		res, err := tx.GetResource(ctx, id)
		switch {
		case err == nil:
			var prev Assignment
			if err := json.Unmarshal(res.Body, &prev); err != nil {
				return err
			}
			if !strings.EqualFold(prev.Properties.PrincipalID, p.PrincipalID) || !strings.EqualFold(path(prev.Properties.RoleDefinitionID), roleGUID) {
				return errs.E(errs.Invalid, "RoleAssignmentUpdateNotPermitted",
					"Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
			}
			p.CreatedOn, p.CreatedBy = prev.Properties.CreatedOn, prev.Properties.CreatedBy
			id = prev.ID
		case errs.Is(err, errs.NotFound):
			p.CreatedOn, p.CreatedBy = now, caller
		default:
			return err
		}
		p.UpdatedOn, p.UpdatedBy = now, caller
		out = Assignment{ID: id, Name: name, Type: AssignmentType, Properties: p}
		body, err := json.Marshal(out)
		if err != nil {
			return err
		}
		created, err = tx.PutResource(ctx, meta.Resource{ID: id, Type: AssignmentType, Name: name,
			Subscription: subscriptionOf(scope), ResourceGroup: groupOf(scope), Parent: scope,
			Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now()})
		if err != nil {
			return err
		}
		return tx.IndexAssignment(ctx, meta.AssignmentIndex{ID: id, Principal: p.PrincipalID, Scope: scope, RoleID: roleGUID})
	})
	return out, created, err
}

// path returns the last segment of an id.
func path(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// roleDefinitionID is the form Azure returns: subscription form inside a
// subscription, tenant form otherwise.
func roleDefinitionID(scope, guid string) string {
	if sub := subscriptionOf(scope); sub != "" {
		return "/subscriptions/" + sub + provider + "/roleDefinitions/" + guid
	}
	return provider + "/roleDefinitions/" + guid
}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}

func (s *Service) deleteAssignment(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	a, err := s.loadAssignment(ctx, scopeOf(r), r.Param("roleAssignmentName"))
	if errs.Is(err, errs.NotFound) {
		return arm.NoContent(), nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.Store.DeleteResource(ctx, a.ID); err != nil {
		return nil, err
	}
	return arm.OK(a), nil
}

var (
	principalFilter = regexp.MustCompile(`(?i)^principalId\s+eq\s+'([0-9a-f-]{36})'$`)
	assignedTo      = regexp.MustCompile(`(?i)^assignedTo\('([0-9a-f-]{36})'\)$`)
	atScopeFilter   = regexp.MustCompile(`(?i)^atScope\(\)$`)
)

type assignmentFilter struct {
	atScope   bool
	principal string
}

func parseAssignmentFilter(f string) (assignmentFilter, error) {
	var out assignmentFilter
	if strings.TrimSpace(f) == "" {
		return out, nil
	}
	for _, term := range regexp.MustCompile(`(?i)\s+and\s+`).Split(strings.TrimSpace(f), -1) {
		switch {
		case atScopeFilter.MatchString(term):
			out.atScope = true
		case principalFilter.MatchString(term):
			out.principal = strings.ToLower(principalFilter.FindStringSubmatch(term)[1])
		case assignedTo.MatchString(term):
			out.principal = strings.ToLower(assignedTo.FindStringSubmatch(term)[1])
		default:
			return out, errs.E(errs.Invalid, "UnsupportedQuery",
				"The filter '%s' is not supported. Supported: atScope(), principalId eq '{id}', assignedTo('{id}'), joined by 'and'.", f).WithTarget("$filter")
		}
	}
	return out, nil
}

func (s *Service) listAssignments(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	scope := scopeOf(r)
	if err := s.checkScope(ctx, scope); err != nil {
		return nil, err
	}
	f, err := parseAssignmentFilter(r.Query("$filter"))
	if err != nil {
		return nil, err
	}
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	var all []Assignment
	q := meta.Query{Type: AssignmentType, Limit: 1000}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, res := range page.Items {
			var a Assignment
			if err := json.Unmarshal(res.Body, &a); err != nil {
				return nil, err
			}
			if keep(a, scope, f) {
				all = append(all, a)
			}
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	sort.Slice(all, func(i, j int) bool { return strings.ToLower(all[i].ID) < strings.ToLower(all[j].ID) })
	items, next := pageSorted(all, func(a Assignment) string { return strings.ToLower(a.ID) }, after, limit)
	return arm.List(r, items, next), nil
}

// keep applies ARM's list semantics: atScope() keeps assignments at or
// above the scope; otherwise assignments at, above or below it are listed.
func keep(a Assignment, scope string, f assignmentFilter) bool {
	if f.principal != "" && !strings.EqualFold(a.Properties.PrincipalID, f.principal) {
		return false
	}
	above := rbac.ScopeCovers(a.Properties.Scope, scope)
	if f.atScope {
		return above
	}
	return above || rbac.ScopeCovers(scope, a.Properties.Scope)
}

// GrantInput is what the CLI and other services pass to Grant.
type GrantInput struct {
	Scope, Role, Principal, PrincipalType, Description string
}

// Grant assigns a role (name, GUID or definition id) to a principal; the
// assignment name is derived so granting twice is harmless.
func (s *Service) Grant(ctx context.Context, in GrantInput, caller string) (Assignment, error) {
	roleID := in.Role
	if def, ok := rbac.BuiltInRole(in.Role); ok {
		roleID = def.ID
	}
	name := uuid.NewSHA1(uuid.NameSpaceOID, []byte(strings.ToLower(in.Scope+"|"+roleID+"|"+in.Principal))).String()
	a, _, err := s.createAssignment(ctx, canonicalScope(in.Scope), name, assignmentProperties{
		RoleDefinitionID: roleID, PrincipalID: in.Principal, PrincipalType: in.PrincipalType, Description: in.Description,
	}, caller)
	return a, err
}
