package caddybff

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/internal/signkey"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// Token modes, as written in the config.
const (
	modeAccessToken = "access_token"
	modeExchange    = "exchange"
	modeMint        = "mint"
)

// tokenSource is one mode of bff_token: where the bearer token for a
// request comes from. header returns the Authorization value for the
// request of id, or a *tokenError saying what to answer instead.
type tokenSource interface {
	header(r *http.Request, id *oidcauth.Identity) (string, error)
}

// tokenError is why a mode could not give a token. ServeHTTP turns it
// into the response; detail goes to the client, so it never holds a token
// or a provider's words.
type tokenError struct {
	status int // 401, 403, 500 or 503
	detail string
}

func (e *tokenError) Error() string { return e.detail }

// The ways a mode fails, each with the answer the client gets.
var (
	errSessionOver   = &tokenError{http.StatusUnauthorized, "session expired; log in again"}
	errNoAccessToken = &tokenError{http.StatusUnauthorized, "session has no access token; log in again"}
	errTokenExpired  = &tokenError{http.StatusUnauthorized, "access token expired; log in again"}
	errRefused       = &tokenError{http.StatusForbidden, "the identity provider refused a token for this service"}
	errUnavailable   = &tokenError{http.StatusServiceUnavailable, "identity provider unavailable; try again shortly"}
	errSigning       = &tokenError{http.StatusInternalServerError, "could not issue a token for the service"}
)

// writeTokenError answers a request whose mode gave no token.
func writeTokenError(w http.ResponseWriter, r *http.Request, err error) {
	te, ok := err.(*tokenError)
	if !ok {
		te = errSigning // not reachable: every source returns a *tokenError
	}
	switch te.status {
	case http.StatusUnauthorized:
		unauthorized(w, r, te.detail)
	case http.StatusServiceUnavailable:
		problem.Write(w, r, problem.Details{Status: te.status, Detail: te.detail, RetryAfter: 5})
	default:
		problem.Error(w, r, te.status, te.detail)
	}
}

const (
	// defaultTTL is the lifetime of a minted token.
	defaultTTL = 5 * time.Minute
	// minTTL and maxTTL bound ttl: shorter tokens cannot be cached
	// usefully, longer ones outlive a logout by too much.
	minTTL = 10 * time.Second
	maxTTL = time.Hour
	// minRefreshSkew is the least remaining lifetime a cached token must
	// have to be reused, so it does not expire in flight to the service.
	minRefreshSkew = 10 * time.Second
)

// reservedClaims are set by bff_token itself; claims cannot copy over
// them (RFC 7519 §4.1 registered claims, plus scope of RFC 8693 §4.2).
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"}

// Token puts a bearer token for the logged-in user on the request before
// it is proxied: it deletes any Authorization header the client sent and
// sets `Authorization: Bearer <token>`. It must run after oidc_auth;
// without a session it answers 401 with a problem body and ends the
// request.
//
// The token never reaches the client or a log.
type Token struct {
	// Mode chooses the token: "access_token" (default) forwards the
	// provider's access token of the session, as oidc_auth keeps it
	// refreshed; "exchange" asks the provider for a token for Audience
	// (RFC 8693 token exchange, the session's access token as the subject
	// token) and caches it while it is fresh; "mint" signs a short-lived
	// JWT with signing_key, which services verify with the keys bff_jwks
	// publishes.
	Mode string `json:"mode,omitempty"`

	// Audience is the service the token is for: the `aud` claim of minted
	// tokens, the `audience` of an exchange. Required in modes mint and
	// exchange.
	Audience string `json:"audience,omitempty"`

	// Scopes narrow the `scope` claim of minted tokens to these scopes:
	// the token carries the user's scopes that are also listed here. When
	// empty, it carries all the user's scopes. In mode exchange they are
	// the `scope` asked of the provider.
	Scopes []string `json:"scopes,omitempty"`

	// TTL is the lifetime of minted tokens, from 10s to 1h. Default: 5m.
	// A token never outlives the session it was minted for. Cached tokens
	// are reused until a fifth of their lifetime (at least 10s, at most
	// half) remains.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Issuer is the `iss` claim of minted tokens. Default: the site's
	// origin as oidc_auth sees it (scheme://host: external_url, a trusted
	// proxy's scheme, the Host header); set it when services check the
	// issuer.
	Issuer string `json:"issuer,omitempty"`

	// Claims names session claims (ID token and UserInfo) to copy into
	// minted tokens, such as `email name groups`; a dotted name reaches
	// into nested objects. Absent claims are left out. The claims bff_token
	// sets itself (iss, sub, aud, exp, nbf, iat, jti, scope) cannot be
	// named.
	Claims []string `json:"claims,omitempty"`

	// SigningKey is the private key minted tokens are signed with: PEM
	// text (PKCS#8, SEC1 "EC PRIVATE KEY" or PKCS#1), or the path of a
	// file holding it. Placeholders are resolved when the config loads, so
	// `{file./etc/bff/signing-key.pem}` or `{env.BFF_SIGNING_KEY}` keep the
	// key out of the saved config. EC P-256 keys sign with ES256, RSA keys
	// of at least 2048 bits with RS256, Ed25519 keys with EdDSA. The
	// token's `kid` is the key's RFC 7638 thumbprint, as bff_jwks
	// publishes it. Required in mode mint.
	SigningKey string `json:"signing_key,omitempty"`

	logger *zap.Logger
	source tokenSource
	key    *signkey.Key
	cache  *tokenCache

	// now is the clock; tests replace it after Provision.
	now func() time.Time
	// minted, if set, is called after each token is signed (tests).
	minted func()
}

// CaddyModule returns the Caddy module information.
func (*Token) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bff_token",
		New: func() caddy.Module { return new(Token) },
	}
}

// Provision applies defaults and, in mode mint, loads the signing key and
// starts the cache's sweeper, which ends with ctx.
func (t *Token) Provision(ctx caddy.Context) error {
	t.logger = ctx.Logger()
	t.now = time.Now
	if err := metrics.Register(ctx); err != nil {
		return fmt.Errorf("bff_token: %w", err)
	}
	switch t.Mode {
	case modeExchange:
		t.source = exchangeSource{t}
	case modeMint:
		src := newMintSource(t)
		if t.SigningKey != "" {
			key, err := signkey.Load(t.SigningKey, false)
			if err != nil {
				return fmt.Errorf("bff_token: signing_key: %w", err)
			}
			t.key = key
		}
		t.source = src
	default:
		t.source = accessTokenSource{t}
		return nil
	}
	t.cache = newTokenCache(maxCachedTokens, func() time.Time { return t.now() })
	t.cache.sweepEvery(ctx, t.logger)
	return nil
}

// refreshSkew is how much lifetime a cached token must have left to be
// reused: a fifth of ttl, at least minRefreshSkew, but at most half of ttl
// so that short-lived tokens are still reused.
func refreshSkew(ttl time.Duration) time.Duration {
	return min(max(ttl/5, minRefreshSkew), ttl/2)
}

// Validate checks the configuration.
func (t *Token) Validate() error {
	mode := t.Mode
	if mode == "" {
		mode = modeAccessToken
	}
	switch mode {
	case modeAccessToken, modeMint, modeExchange:
	default:
		return fmt.Errorf("bff_token: unknown mode %q: want access_token, exchange or mint", mode)
	}

	// Settings of another mode are errors, not silently ignored: a
	// forgotten `mode mint` must not leave `scopes` looking like it
	// narrows the forwarded access token.
	if mode == modeExchange {
		if t.Audience == "" {
			return errors.New("bff_token: mode exchange needs audience")
		}
		if err := validScopes(t.Scopes); err != nil {
			return err
		}
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"ttl", t.TTL != 0},
			{"issuer", t.Issuer != ""},
			{"claims", len(t.Claims) > 0},
			{"signing_key", t.SigningKey != ""},
		} {
			if f.set {
				return fmt.Errorf("bff_token: %s does not apply to mode exchange (the provider issues the token)", f.name)
			}
		}
		return nil
	}
	if mode != modeMint {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"audience", t.Audience != ""},
			{"scopes", len(t.Scopes) > 0},
			{"ttl", t.TTL != 0},
			{"issuer", t.Issuer != ""},
			{"claims", len(t.Claims) > 0},
			{"signing_key", t.SigningKey != ""},
		} {
			if f.set {
				return fmt.Errorf("bff_token: %s does not apply to mode %s", f.name, mode)
			}
		}
		return nil
	}

	if t.Audience == "" {
		return errors.New("bff_token: mode mint needs audience")
	}
	if t.SigningKey == "" {
		return errors.New("bff_token: mode mint needs signing_key")
	}
	if ttl := time.Duration(t.TTL); ttl != 0 && (ttl < minTTL || ttl > maxTTL) {
		return fmt.Errorf("bff_token: ttl %s is out of range: need %s to %s", ttl, minTTL, maxTTL)
	}
	if strings.ContainsAny(t.Issuer, whiteSpace) {
		return fmt.Errorf("bff_token: issuer %q contains white space", t.Issuer)
	}
	if err := validScopes(t.Scopes); err != nil {
		return err
	}
	for _, c := range t.Claims {
		if c == "" {
			return errors.New("bff_token: claims: empty claim name")
		}
		if slices.Contains(reservedClaims, c) {
			return fmt.Errorf("bff_token: claims: %q is set by bff_token itself", c)
		}
	}
	return nil
}

// whiteSpace is what separates scopes (RFC 6749 §3.3 uses spaces; the
// claim readers also split on the other ASCII white space).
const whiteSpace = " \t\n\r\v\f"

func validScopes(scopes []string) error {
	for i, s := range scopes {
		if s == "" || strings.ContainsAny(s, whiteSpace) {
			return fmt.Errorf("bff_token: scopes: scope %d (%q) is empty or contains white space", i+1, s)
		}
	}
	return nil
}

// ServeHTTP sets the Authorization header for the upstream and calls next.
func (t *Token) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	requestid.Ensure(w, r)
	// Whatever the client sent is never forwarded (nor is our token ever
	// confused with it).
	r.Header.Del("Authorization")

	id := oidcauth.IdentityFrom(r)
	if id == nil {
		unauthorized(w, r, "login required")
		return nil
	}

	header, err := t.source.header(r, id)
	if err != nil {
		writeTokenError(w, r, err)
		return nil
	}
	r.Header.Set("Authorization", header)
	return next.ServeHTTP(w, r)
}

func unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	problem.Write(w, r, problem.Details{Status: http.StatusUnauthorized, Detail: detail, LoginURL: oidcauth.LoginURLFrom(r)})
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Token)(nil)
	_ caddy.Validator             = (*Token)(nil)
	_ caddyhttp.MiddlewareHandler = (*Token)(nil)
	_ caddyfile.Unmarshaler       = (*Token)(nil)
)
