// Package rbac owns Azure role-based access control as coffer enforces it: the
// built-in role definitions, and the decision whether a principal may perform
// an action at a scope given its role assignments.
//
// The package is pure: it reads no store and keeps no state. Callers (the
// authorization provider, the ARM front door) load assignments and custom role
// definitions from the metadata store and hand them in. Decide runs on every
// HTTP request, so it allocates nothing and does no I/O.
//
// Words used here, as Azure uses them:
//
//   - Scope: an ARM resource id that access is granted at or asked for, such
//     as "/" (the root, above every subscription), "/subscriptions/{sub}",
//     "/subscriptions/{sub}/resourceGroups/{rg}" or a resource id beneath
//     that. Access granted at a scope is inherited by every scope beneath it;
//     scopes compare case-insensitively. Management-group hierarchy is not
//     modelled: a management group does not cover the subscriptions in it.
//   - Action: the name of a control-plane operation,
//     "{provider namespace}/{resource type}/.../{verb}", for example
//     "Microsoft.Compute/disks/write" or
//     "Microsoft.Compute/disks/beginGetAccess/action". A data action names an
//     operation on the data inside a resource (a blob read, say); data actions
//     are granted only by DataActions, never by Actions.
//   - Role definition: a named set of permissions. Each permission block lists
//     action patterns it grants (Actions, DataActions) and patterns it takes
//     back from that same block (NotActions, NotDataActions). A pattern may
//     contain "*", which matches any run of characters, "/" included. A
//     NotActions entry is not a deny: another role, or another block, that
//     grants the action still grants it. Built-in roles (RoleType
//     "BuiltInRole") come from Microsoft's published list with their real
//     GUIDs; custom roles (RoleType "CustomRole") are evaluated the same way
//     and may only be assigned within their AssignableScopes.
//   - Principal: the identity a request acts as, named by its object id (a
//     GUID): a user, a group, a service principal, or the system-assigned
//     identity of a backup vault.
//   - Assignment: a role assignment, the grant of one role definition to one
//     principal at one scope. Nothing is allowed without one: access is
//     denied by default.
package rbac
