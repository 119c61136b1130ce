// Command caddy is Caddy with its standard modules plus caddy-bff's
// handlers: oidc_auth, scope_authz, bff_token, bff_jwks, bff_apps,
// bff_rate_limit and bff_health; the same build xcaddy makes with
// --with github.com/caddy-bff/caddy-bff.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// caddy-bff's modules, as xcaddy imports them.
	_ "github.com/caddy-bff/caddy-bff"
)

func main() {
	caddycmd.Main()
}
