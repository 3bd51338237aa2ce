// Package authorization serves Microsoft.Authorization role definitions and
// role assignments, and is the authorizer every ARM request passes: may
// principal P perform action A at scope S? The roles are internal/rbac's
// built-ins plus custom roles kept in the metadata store; assignments are
// resources indexed by principal so a decision is one indexed query and an
// in-memory evaluation, with no cache to go stale: a change applies at once.
package authorization
