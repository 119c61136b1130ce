// Package scopeauthz is the scope_authz handler: one policy, read top to
// bottom, that authorises every request by the user's scopes before
// anything reaches a service, after refusing request paths an upstream
// could read differently.
//
// Its requirement expressions (Requirements, ParseRequirements, ScopesFrom)
// are shared with bff_apps, so that both speak the same language.
package scopeauthz
