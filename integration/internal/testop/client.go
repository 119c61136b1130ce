package testop

import (
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is the provider's one registered relying party: a confidential
// web client (client_secret_basic or client_secret_post) allowed the
// authorization code flow (PKCE optional, S256 supported), refresh tokens
// and RFC 8693 token exchange.
type client struct {
	id                    string
	secret                string
	redirectURIs          []string // exact
	redirectGlobs         []string // doublestar patterns
	postLogoutURIs        []string // exact
	postLogoutGlobs       []string // path.Match patterns
	jwtAccessTokens       bool
	idTokenUserinfoClaims bool
	customScopes          []string
	authMethod            oidc.AuthMethod
	key                   any // public key for private_key_jwt
	keyID                 string
}

var (
	_ op.Client           = (*client)(nil)
	_ op.HasRedirectGlobs = (*client)(nil)
)

// splitGlobs separates exact URIs from patterns (those holding '*'),
// expanding a port wildcard.
func splitGlobs(uris []string) (exact, globs []string) {
	for _, u := range uris {
		if strings.Contains(u, "*") {
			globs = append(globs, expandPort(u)...)
		} else {
			exact = append(exact, u)
		}
	}
	return exact, globs
}

// expandPort turns a '*' standing for the port ("host:*/…" or a trailing
// "host:*") into digit-only patterns of one to five digits. A bare '*'
// there would match any text without a slash, so
// http://127.0.0.1:*/cb would admit http://127.0.0.1:1@evil.example/cb.
// Character classes work both for the library's doublestar redirect URI
// globs and its path.Match post-logout globs.
func expandPort(pattern string) []string {
	scheme, rest, ok := strings.Cut(pattern, "://")
	if !ok {
		return []string{pattern}
	}
	authority, path, _ := strings.Cut(rest, "/")
	host, port, ok := strings.Cut(authority, ":")
	if !ok || port != "*" {
		return []string{pattern}
	}
	hasPath := strings.Contains(rest, "/")
	out := make([]string, 0, 5)
	for n := 1; n <= 5; n++ {
		p := scheme + "://" + host + ":" + strings.Repeat("[0-9]", n)
		if hasPath {
			p += "/" + path
		}
		out = append(out, p)
	}
	return out
}

func (c *client) GetID() string                        { return c.id }
func (c *client) RedirectURIs() []string               { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string     { return c.postLogoutURIs }
func (c *client) RedirectURIGlobs() []string           { return c.redirectGlobs }
func (c *client) PostLogoutRedirectURIGlobs() []string { return c.postLogoutGlobs }
func (c *client) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod          { return c.authMethod }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeTokenExchange}
}

// LoginURL is the example's login UI, relative to the issuer.
func (c *client) LoginURL(id string) string { return "/login/username?authRequestID=" + id }

func (c *client) AccessTokenType() op.AccessTokenType {
	if c.jwtAccessTokens {
		return op.AccessTokenTypeJWT
	}
	return op.AccessTokenTypeBearer
}

func (c *client) IDTokenLifetime() time.Duration { return time.Hour }

// DevMode admits http redirect URIs (the issuer is http too).
func (c *client) DevMode() bool { return true }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) IsScopeAllowed(scope string) bool { return slices.Contains(c.customScopes, scope) }

func (c *client) IDTokenUserinfoClaimsAssertion() bool { return c.idTokenUserinfoClaims }

func (c *client) ClockSkew() time.Duration { return 0 }
