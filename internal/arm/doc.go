// Package arm is coffer's Azure Resource Manager front door: it routes a
// request by its resource id, checks the api-version, decodes the body,
// asks the authorizer whether the caller may perform the route's action,
// calls the provider's handler, and writes the response or the CloudError.
//
// Words:
//
//   - Route: a method, a path pattern such as
//     /subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName},
//     the api-versions it accepts, the RBAC action it needs and its handler.
//     Literal segments match case-insensitively; {name...} matches one or
//     more segments (a scope).
//   - Canonical id: the request path rewritten with the pattern's literal
//     casing (resourceGroups, Microsoft.Compute/disks); names keep the casing
//     the client gave. Stored resources keep the casing of their creator.
//   - ResourceID: a parsed id (azcore's parser, then no empty, ".", "..",
//     '%', control or invalid-UTF-8 segment), spelled canonically; Key is
//     its lower case, the one key of maps and rows. Request.ID is the
//     request's resource id, every name on it checked against its type's
//     naming rule (ValidateName) before the authorizer or a handler runs.
//   - Front-door refusals: a path segment or query text no name may hold,
//     a query parameter given twice (in any case), a body that is not
//     UTF-8, a $skipToken this server did not issue; each is a 400 before
//     any lookup, so they cannot reach the store or tell what exists.
//   - CloudError: {"error":{"code","message","target","details","additionalInfo"}}.
//     Only this package turns an errs.Kind into an HTTP status, through one
//     table (statusOf).
//   - LRO: a 201/202 with Azure-AsyncOperation, Location and Retry-After,
//     built by Accepted from an ops operation.
package arm
