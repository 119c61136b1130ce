package oidcauth

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/internal/claims"
)

// identityVarKey is the caddyhttp var holding *Identity. Anything else
// stored there (or nothing) means anonymous.
const identityVarKey = "bff.identity"

// Identity is the logged-in user of a request, as oidc_auth established it
// from a valid session. Later handlers (scope_authz, bff_token, bff_apps)
// read it with IdentityFrom; it is never built from client input.
type Identity struct {
	// Subject is the provider's `sub` claim.
	Subject string
	// Email is the `email` claim, if any.
	Email string
	// Scopes are the user's granted scopes (the `scope` claim, or the scopes
	// of the token response when no claim carried them).
	Scopes []string
	// Claims are the ID token's claims merged with UserInfo. Read-only.
	Claims map[string]any
	// ExpiresAt is when the session ends at the latest (its lifetime).
	ExpiresAt time.Time
	// ACR is the authentication context class the provider reported for
	// the login (the ID token's `acr`), or empty.
	ACR string
	// AuthTime is when the user last authenticated at the provider (the
	// ID token's `auth_time`), or zero when the provider did not say.
	AuthTime time.Time

	sessionKey    string
	idleExpiresAt time.Time
	accessToken   string
	tokenExpiry   time.Time
	handler       *Handler // for Exchange; nil in test identities
}

// loginVarKey is the caddyhttp var holding the *Handler that saw the
// request, so the handlers after it can build its login URL.
const loginVarKey = "bff.login"

// LoginURLFrom returns where a 401 for r should send the user to log in:
// the login path of the oidc_auth that saw r, with the same-origin page
// that made the request (its Referer) as return_to, exactly as oidc_auth's
// own 401s carry it. Without an oidc_auth in front it is DefaultLoginPath.
func LoginURLFrom(r *http.Request) string {
	h, _ := caddyhttp.GetVar(r.Context(), loginVarKey).(*Handler)
	if h == nil {
		return DefaultLoginPath
	}
	return h.loginURL(refererReturnTo(r))
}

// IdentityFrom returns the identity oidc_auth attached to r, or nil when
// the request is anonymous.
func IdentityFrom(r *http.Request) *Identity {
	id, _ := caddyhttp.GetVar(r.Context(), identityVarKey).(*Identity)
	return id
}

// SessionKey is a stable, non-secret key for the session (a hash of its
// id, never the id), for per-session caches in later handlers.
func (id *Identity) SessionKey() string { return id.sessionKey }

// AccessToken returns the provider's access token for this session and its
// expiry; oidc_auth has refreshed it within refresh_skew of expiry. It is a
// secret: never log it or send it to the browser.
func (id *Identity) AccessToken() (string, time.Time) { return id.accessToken, id.tokenExpiry }

// MeetsACR reports whether the login's authentication context class is
// want, or one the oidc_auth that saw the request ranks at least as strong
// (acr_levels, strongest first). An unranked value meets only itself.
func (id *Identity) MeetsACR(want string) bool {
	if id.ACR == "" {
		return false
	}
	if id.ACR == want {
		return true
	}
	if id.handler == nil {
		return false
	}
	return id.handler.acrMeets(id.ACR, want)
}

// HasScope reports whether the user was granted scope s.
func (id *Identity) HasScope(s string) bool {
	for _, have := range id.Scopes {
		if have == s {
			return true
		}
	}
	return false
}

// Claim returns a claim by name; a dotted path ("realm_access.roles")
// reaches into nested objects when no top-level claim has the full name.
func (id *Identity) Claim(name string) (any, bool) { return claims.Lookup(id.Claims, name) }

// InsecureSetIdentity attaches an identity to r as oidc_auth would, with
// no session behind it. It exists for the unit tests of handlers that
// consume identities; a handler that calls it in production makes anyone
// that user.
func InsecureSetIdentity(r *http.Request, id *Identity, sessionKey, accessToken string, tokenExpiry time.Time) {
	id.sessionKey, id.accessToken, id.tokenExpiry = sessionKey, accessToken, tokenExpiry
	caddyhttp.SetVar(r.Context(), identityVarKey, id)
}
