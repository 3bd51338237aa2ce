// Package auth turns a bearer token into a caller.
//
// Words:
//
//   - Token: a JWT in the Authorization header. coffer accepts tokens it
//     signed itself with the data directory's Ed25519 key (what `coffer token`
//     mints) and, when an OIDC issuer is configured, tokens from that issuer
//     (Entra ID, Keycloak), verified against the issuer's published keys.
//   - Audience: whom the token is for. ARM clients ask for
//     https://management.azure.com/; coffer also accepts its own endpoint URL.
//   - Principal: the caller, named by the token's `oid` claim (its object id),
//     the id role assignments name.
//
// A token is refused when it is unsigned (alg none), its signature does not
// verify, it has expired or is not yet valid, or its audience is not ours.
package auth
