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
//   - CloudError: {"error":{"code","message","target","details","additionalInfo"}}.
//     Only this package turns an errs.Kind into an HTTP status, through one
//     table (statusOf).
//   - LRO: a 201/202 with Azure-AsyncOperation, Location and Retry-After,
//     built by Accepted from an ops operation.
package arm
