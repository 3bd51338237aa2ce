package rbac

import (
	"strings"
	"time"
)

// Role types, as ARM spells them in a role definition's properties.type.
const (
	BuiltInRoleType = "BuiltInRole"
	CustomRoleType  = "CustomRole"
)

// Permission is one permission block of a role definition. NotActions and
// NotDataActions subtract only from the block they appear in.
type Permission struct {
	Actions        []string
	NotActions     []string
	DataActions    []string
	NotDataActions []string
}

// RoleDefinition is a role: a name, permissions and the scopes it may be
// assigned at. ID is the bare GUID; the ARM id is built from it by whoever
// serves the definition, since the same role is addressable under the tenant
// and under every subscription.
type RoleDefinition struct {
	ID               string // GUID
	RoleName         string
	Description      string
	RoleType         string // BuiltInRoleType or CustomRoleType
	Permissions      []Permission
	AssignableScopes []string
	// CreatedOn and UpdatedOn are zero for built-in roles: Microsoft's
	// published list carries no dates.
	CreatedOn time.Time
	UpdatedOn time.Time
}

// BuiltInRoles returns the built-in role definitions coffer knows. Each call
// builds a fresh copy, so the caller may keep or change it freely.
func BuiltInRoles() []RoleDefinition {
	return builtInRoles()
}

// BuiltInRole returns the built-in role whose GUID or roleName equals
// idOrName, ignoring case. It builds the whole list to find one role, so
// callers on the request path should build a RoleIndex once instead.
func BuiltInRole(idOrName string) (RoleDefinition, bool) {
	for _, r := range builtInRoles() {
		if strings.EqualFold(r.ID, idOrName) || strings.EqualFold(r.RoleName, idOrName) {
			return r, true
		}
	}
	return RoleDefinition{}, false
}

// RoleIndex finds role definitions by GUID, ignoring case. Its Lookup method
// has the shape Decide takes. A RoleIndex is read-only once built, so it is
// safe to share between goroutines; rebuild it when custom roles change.
type RoleIndex struct {
	byID map[string]RoleDefinition // keyed by lower-case GUID
}

// NewRoleIndex indexes defs by GUID. A later definition with the same GUID
// replaces an earlier one, so callers can list built-ins first and let a
// stored definition win.
func NewRoleIndex(defs []RoleDefinition) *RoleIndex {
	x := &RoleIndex{byID: make(map[string]RoleDefinition, len(defs))}
	for _, d := range defs {
		x.byID[strings.ToLower(d.ID)] = d
	}
	return x
}

// Lookup returns the role definition with GUID id.
func (x *RoleIndex) Lookup(id string) (RoleDefinition, bool) {
	// GUIDs almost always arrive in lower case; try that first so the common
	// path does not allocate a lowered copy.
	if d, ok := x.byID[id]; ok {
		return d, true
	}
	d, ok := x.byID[strings.ToLower(id)]
	return d, ok
}
