package rbac

import "strings"

// Assignment is a role assignment as the evaluator needs it.
type Assignment struct {
	ID               string // ARM id of the assignment
	Name             string // the assignment's GUID name
	Scope            string
	RoleDefinitionID string // bare GUID; see ParseRoleDefinitionID
	PrincipalID      string
}

// Decision is the outcome of Decide. When access is refused only Allowed is
// set; when it is granted, the assignment that granted it is named so the
// grant can be logged.
type Decision struct {
	Allowed bool
	// AssignmentID and RoleDefinitionID name the first assignment found that
	// grants the action.
	AssignmentID     string
	RoleDefinitionID string
}

// Decide reports whether principal may perform the control-plane action at
// scope. It is allowed when some assignment to principal has a scope covering
// scope and a role, found through roles, whose permissions allow action and
// which is assignable at the assignment's scope. Everything else is refused:
// no assignment, an unknown role, an empty principal or action, a malformed
// scope.
//
// Assignable scopes are checked here as well as when an assignment is
// created: a custom role's scopes can be narrowed after its assignments
// exist, and an assignment left outside them grants nothing. Checking only at
// creation let a principal who could rewrite a role at a narrow scope widen
// what an assignment at a broad scope grants.
func Decide(assignments []Assignment, roles func(id string) (RoleDefinition, bool), principal, action, scope string) Decision {
	if principal == "" || action == "" || roles == nil {
		return Decision{}
	}
	for i := range assignments {
		a := &assignments[i]
		// Cheapest tests first: most assignments belong to other principals.
		if !strings.EqualFold(a.PrincipalID, principal) || !ScopeCovers(a.Scope, scope) {
			continue
		}
		role, ok := roles(a.RoleDefinitionID)
		if !ok || !ValidAssignableScope(role, a.Scope) {
			continue
		}
		if Allows(role, action) {
			return Decision{Allowed: true, AssignmentID: a.ID, RoleDefinitionID: a.RoleDefinitionID}
		}
	}
	return Decision{}
}

// Allows reports whether role grants the control-plane action: some
// permission block has an Actions pattern matching it and no NotActions
// pattern of that same block matching it. Data actions are never granted
// here, whatever Actions says; use AllowsData.
func Allows(role RoleDefinition, action string) bool {
	if action == "" {
		return false
	}
	for i := range role.Permissions {
		p := &role.Permissions[i]
		if matchesAny(p.Actions, action) && !matchesAny(p.NotActions, action) {
			return true
		}
	}
	return false
}

// AllowsData is Allows for data actions, read from DataActions and
// NotDataActions.
func AllowsData(role RoleDefinition, dataAction string) bool {
	if dataAction == "" {
		return false
	}
	for i := range role.Permissions {
		p := &role.Permissions[i]
		if matchesAny(p.DataActions, dataAction) && !matchesAny(p.NotDataActions, dataAction) {
			return true
		}
	}
	return false
}

func matchesAny(patterns []string, action string) bool {
	for _, p := range patterns {
		if MatchAction(p, action) {
			return true
		}
	}
	return false
}

// MatchAction reports whether action matches pattern, ignoring case. A "*"
// in pattern matches any run of characters, "/" included, so "*/read"
// matches every read action of every provider.
//
// Around a "*", case is folded for ASCII letters only: ARM action names are
// ASCII, and folding byte by byte keeps the match free of allocation.
func MatchAction(pattern, action string) bool {
	if pattern == "*" {
		return true
	}
	if strings.IndexByte(pattern, '*') < 0 {
		// Most patterns in a role are literal action names; the length test
		// turns nearly all of them away before any comparison.
		return len(pattern) == len(action) && strings.EqualFold(pattern, action)
	}
	// Greedy match with one backtrack point: when a later literal fails, let
	// the most recent "*" swallow one more character and try again. Patterns
	// have no other metacharacter, so this is complete.
	p, a := 0, 0
	star, mark := -1, 0
	for a < len(action) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, a
			p++
		case p < len(pattern) && (pattern[p] == action[a] || lowerASCII(pattern[p]) == lowerASCII(action[a])):
			p++
			a++
		case star >= 0:
			mark++
			p, a = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// ScopeCovers reports whether access granted at assignmentScope reaches
// scope: "/" covers every scope; any other scope covers itself and every
// scope beneath it. Comparison ignores case and a trailing "/". Both must be
// ARM ids starting with "/"; anything else covers nothing, so a malformed
// scope fails closed.
func ScopeCovers(assignmentScope, scope string) bool {
	as, s := trimScope(assignmentScope), trimScope(scope)
	if as == "" || s == "" {
		return false
	}
	if as == "/" {
		return true
	}
	if len(s) == len(as) {
		return strings.EqualFold(s, as)
	}
	// Beneath means the assignment scope plus a whole segment, so that
	// ".../resourceGroups/rg" does not cover ".../resourceGroups/rg2".
	return len(s) > len(as) && s[len(as)] == '/' && strings.EqualFold(s[:len(as)], as)
}

// trimScope drops trailing slashes but keeps the root "/". It returns "" for
// a scope that is not an ARM id.
func trimScope(s string) string {
	if s == "" || s[0] != '/' {
		return ""
	}
	for len(s) > 1 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// ValidAssignableScope reports whether role may be assigned at scope: scope
// must lie at or beneath one of the role's assignable scopes. A role with no
// assignable scopes may be assigned nowhere.
func ValidAssignableScope(role RoleDefinition, scope string) bool {
	for _, as := range role.AssignableScopes {
		if ScopeCovers(as, scope) {
			return true
		}
	}
	return false
}
