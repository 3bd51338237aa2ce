package authorization

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/rbac"
	"github.com/google/uuid"
)

// AssignmentVersions are the api-versions Azure publishes for role
// assignments; DefinitionVersions those for role definitions. The two
// resource types were versioned apart, so each accepts only its own.
var (
	AssignmentVersions = arm.APIVersions{Provider: "Microsoft.Authorization", Versions: []string{
		"2015-07-01", "2017-10-01-preview", "2018-01-01-preview", "2018-09-01-preview",
		"2020-03-01-preview", "2020-04-01-preview", "2020-08-01-preview", "2020-10-01-preview",
		"2022-04-01", "2026-08-01",
	}}
	DefinitionVersions = arm.APIVersions{Provider: "Microsoft.Authorization", Versions: []string{
		"2015-07-01", "2018-01-01-preview", "2022-04-01", "2022-05-01-preview",
	}}
)

// Types of the resources this package keeps.
const (
	AssignmentType = "Microsoft.Authorization/roleAssignments"
	DefinitionType = "Microsoft.Authorization/roleDefinitions"
	provider       = "/providers/Microsoft.Authorization"

	dWriteAction  = "Microsoft.Authorization/roleDefinitions/write"
	dDeleteAction = "Microsoft.Authorization/roleDefinitions/delete"
)

// Service serves role definitions and assignments and authorizes requests.
type Service struct {
	Store   meta.Store
	Clock   clock.Clock
	builtIn *rbac.RoleIndex
}

var _ arm.Authorizer = (*Service)(nil)

func (s *Service) builtins() *rbac.RoleIndex {
	if s.builtIn == nil {
		s.builtIn = rbac.NewRoleIndex(rbac.BuiltInRoles())
	}
	return s.builtIn
}

// ownerRoleID is the built-in Owner role.
const ownerRoleID = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"

// Bootstrap makes admin an Owner at "/" (idempotent).
func (s *Service) Bootstrap(ctx context.Context, admin string) error {
	s.builtins()
	name := uuid.NewSHA1(uuid.NameSpaceOID, []byte("coffer-bootstrap-owner:"+strings.ToLower(admin))).String()
	id := provider + "/roleAssignments/" + name
	if _, err := s.Store.GetResource(ctx, id); err == nil {
		return nil
	}
	_, _, err := s.createAssignment(ctx, "/", name, assignmentProperties{
		RoleDefinitionID: provider + "/roleDefinitions/" + ownerRoleID,
		PrincipalID:      admin,
		PrincipalType:    "User",
		Description:      "coffer bootstrap administrator",
	}, admin)
	return err
}

// Authorize implements arm.Authorizer.
func (s *Service) Authorize(ctx context.Context, p auth.Principal, action, scope string) error {
	ok, err := s.Allowed(ctx, p.ObjectID, action, scope)
	if err != nil {
		return err
	}
	if !ok {
		return Refusal(p.ObjectID, action, scope)
	}
	return nil
}

// Refusal is Azure's 403 for a missing permission.
func Refusal(principal, action, scope string) error {
	return errs.E(errs.Forbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
		principal, principal, action, scope)
}

// Allowed reports whether principal may perform action at scope: the
// evaluation library call every provider uses (the vault identity checks
// of backup go through it too).
func (s *Service) Allowed(ctx context.Context, principal, action, scope string) (bool, error) {
	rows, err := s.Store.AssignmentsOf(ctx, principal)
	if err != nil {
		return false, err
	}
	if len(rows) == 0 {
		return false, nil
	}
	assignments := make([]rbac.Assignment, len(rows))
	for i, a := range rows {
		assignments[i] = rbac.Assignment{ID: a.ID, Scope: a.Scope, RoleDefinitionID: a.RoleID, PrincipalID: a.Principal}
	}
	var lookupErr error
	roles := func(id string) (rbac.RoleDefinition, bool) {
		def, ok, err := s.role(ctx, id)
		if err != nil {
			lookupErr = err
		}
		return def, ok
	}
	d := rbac.Decide(assignments, roles, strings.ToLower(principal), action, scope)
	if lookupErr != nil {
		return false, lookupErr
	}
	return d.Allowed, nil
}

// role finds a built-in or custom role by GUID.
func (s *Service) role(ctx context.Context, guid string) (rbac.RoleDefinition, bool, error) {
	if def, ok := s.builtins().Lookup(guid); ok {
		return def, true, nil
	}
	res, err := s.Store.GetResource(ctx, provider+"/roleDefinitions/"+guid)
	if errs.Is(err, errs.NotFound) {
		return rbac.RoleDefinition{}, false, nil
	}
	if err != nil {
		return rbac.RoleDefinition{}, false, err
	}
	var stored definitionBody
	if err := json.Unmarshal(res.Body, &stored); err != nil {
		return rbac.RoleDefinition{}, false, err
	}
	return stored.toRBAC(), true, nil
}

// Routes registers the role definition and assignment operations.
func (s *Service) Routes(r *arm.Router) {
	const (
		read   = "Microsoft.Authorization/roleAssignments/read"
		write  = "Microsoft.Authorization/roleAssignments/write"
		delete = "Microsoft.Authorization/roleAssignments/delete"
		dRead  = "Microsoft.Authorization/roleDefinitions/read"
		dWrite = dWriteAction
		dDel   = dDeleteAction
	)
	scoped := func(p string) []string {
		return []string{"/{scope...}" + provider + p, provider + p}
	}
	for _, p := range scoped("/roleAssignments/{roleAssignmentName}") {
		r.Handle(arm.Route{Method: http.MethodGet, Pattern: p, Versions: AssignmentVersions, Action: read, Scope: scopeOf, Handler: s.getAssignment})
		r.Handle(arm.Route{Method: http.MethodPut, Pattern: p, Versions: AssignmentVersions, Action: write, Scope: scopeOf, Handler: s.putAssignment})
		r.Handle(arm.Route{Method: http.MethodDelete, Pattern: p, Versions: AssignmentVersions, Action: delete, Scope: scopeOf, Handler: s.deleteAssignment})
	}
	for _, p := range scoped("/roleAssignments") {
		r.Handle(arm.Route{Method: http.MethodGet, Pattern: p, Versions: AssignmentVersions, Action: read, Scope: scopeOf, Handler: s.listAssignments})
	}
	for _, p := range scoped("/roleDefinitions/{roleDefinitionId}") {
		r.Handle(arm.Route{Method: http.MethodGet, Pattern: p, Versions: DefinitionVersions, Action: dRead, Scope: scopeOf, Handler: s.getDefinition})
		r.Handle(arm.Route{Method: http.MethodPut, Pattern: p, Versions: DefinitionVersions, Action: dWrite, Scope: scopeOf, Handler: s.putDefinition})
		r.Handle(arm.Route{Method: http.MethodDelete, Pattern: p, Versions: DefinitionVersions, Action: dDel, Scope: scopeOf, Handler: s.deleteDefinition})
	}
	for _, p := range scoped("/roleDefinitions") {
		r.Handle(arm.Route{Method: http.MethodGet, Pattern: p, Versions: DefinitionVersions, Action: dRead, Scope: scopeOf, Handler: s.listDefinitions})
	}
}

// scopeOf is the scope an authorization request acts at: the {scope}
// parameter, or "/" for the tenant-level forms.
func scopeOf(r *arm.Request) string {
	sc := r.Param("scope")
	if sc == "" {
		return "/"
	}
	return canonicalScope("/" + sc)
}

// canonicalScope fixes the casing of the well-known segments of a scope.
func canonicalScope(sc string) string {
	parts := strings.Split(strings.TrimSuffix(sc, "/"), "/")
	for i, p := range parts {
		switch strings.ToLower(p) {
		case "subscriptions":
			parts[i] = "subscriptions"
		case "resourcegroups":
			parts[i] = "resourceGroups"
		case "providers":
			parts[i] = "providers"
		}
	}
	out := strings.Join(parts, "/")
	if out == "" {
		return "/"
	}
	return out
}

// checkScope refuses malformed scopes and scopes inside a resource group
// that does not exist.
func (s *Service) checkScope(ctx context.Context, scope string) error {
	if scope == "/" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(scope, "/"), "/")
	if !strings.EqualFold(parts[0], "subscriptions") && !strings.EqualFold(parts[0], "providers") {
		return errs.E(errs.Invalid, "InvalidScope", "The scope '%s' is not valid: scopes start with /subscriptions/ or /providers/.", scope)
	}
	if strings.EqualFold(parts[0], "subscriptions") {
		if len(parts) < 2 {
			return errs.E(errs.Invalid, "InvalidScope", "The scope '%s' is not valid.", scope)
		}
		if err := groups.CheckSubscription(parts[1]); err != nil {
			return err
		}
		if len(parts) >= 4 && strings.EqualFold(parts[2], "resourceGroups") {
			if _, err := groups.Get(ctx, s.Store, parts[1], parts[3]); err != nil {
				return err
			}
		}
	}
	return nil
}

func subscriptionOf(scope string) string {
	parts := strings.Split(strings.TrimPrefix(scope, "/"), "/")
	if len(parts) >= 2 && strings.EqualFold(parts[0], "subscriptions") {
		return parts[1]
	}
	return ""
}

func groupOf(scope string) string {
	parts := strings.Split(strings.TrimPrefix(scope, "/"), "/")
	if len(parts) >= 4 && strings.EqualFold(parts[2], "resourceGroups") {
		return parts[3]
	}
	return ""
}

// joinScope appends a provider path to a scope without doubling "/".
func joinScope(scope, rest string) string {
	if scope == "/" {
		return rest
	}
	return scope + rest
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

// pageSorted pages items already sorted by key.
func pageSorted[T any](items []T, keyOf func(T) string, after string, limit int) ([]T, string) {
	start := sort.Search(len(items), func(i int) bool { return keyOf(items[i]) > after })
	if after == "" {
		start = 0
	}
	end := min(start+limit, len(items))
	next := ""
	if end < len(items) {
		next = keyOf(items[end-1])
	}
	return items[start:end], next
}
