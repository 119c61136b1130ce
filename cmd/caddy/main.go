// Command caddy is Caddy with its standard modules plus caddy-bff's
// handlers: oidc_auth, scope_authz, bff_token, bff_jwks, bff_apps and
// bff_rate_limit.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// caddy-bff's modules.
	_ "github.com/caddy-bff/caddy-bff/caddybff"
	_ "github.com/caddy-bff/caddy-bff/oidcauth"
	_ "github.com/caddy-bff/caddy-bff/scopeauthz"
)

func main() {
	caddycmd.Main()
}
