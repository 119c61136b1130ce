package caddybff

import (
	"net/http"

	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// accessTokenSource is mode access_token: the provider's access token of
// the session, which oidc_auth keeps refreshed, forwarded as it is.
type accessTokenSource struct{ t *Token }

func (s accessTokenSource) header(_ *http.Request, id *oidcauth.Identity) (string, error) {
	tok, exp := id.AccessToken()
	if tok == "" {
		return "", errNoAccessToken
	}
	if !exp.IsZero() && !s.t.now().Before(exp) {
		return "", errTokenExpired
	}
	return "Bearer " + tok, nil
}
