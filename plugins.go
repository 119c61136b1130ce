// Package caddybff is what `xcaddy build --with github.com/caddy-bff/caddy-bff`
// imports: it registers every caddy-bff module with Caddy (oidc_auth,
// scope_authz, bff_token, bff_jwks, bff_apps, bff_rate_limit and
// bff_health) and their Caddyfile directives. It has no API of its own.
package caddybff

import (
	// caddy-bff's modules.
	_ "github.com/caddy-bff/caddy-bff/caddybff"
	_ "github.com/caddy-bff/caddy-bff/oidcauth"
	_ "github.com/caddy-bff/caddy-bff/scopeauthz"
)
