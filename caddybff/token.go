package caddybff

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// Token modes.
const (
	modeAccessToken = "access_token"
	modeExchange    = "exchange"
	modeMint        = "mint"
)

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
	// refreshed; "mint" signs a short-lived JWT with signing_key, which
	// services verify with the keys bff_jwks publishes. "exchange" (RFC
	// 8693 token exchange) is reserved and not available yet.
	Mode string `json:"mode,omitempty"`

	// Audience is the `aud` claim of minted tokens: the service they are
	// for. Required in mode mint.
	Audience string `json:"audience,omitempty"`

	// Scopes narrow the `scope` claim of minted tokens to these scopes:
	// the token carries the user's scopes that are also listed here. When
	// empty, it carries all the user's scopes.
	Scopes []string `json:"scopes,omitempty"`

	// TTL is the lifetime of minted tokens, from 10s to 1h. Default: 5m.
	// A token never outlives the session it was minted for. Cached tokens
	// are reused until a fifth of their lifetime (at least 10s, at most
	// half) remains.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// Issuer is the `iss` claim of minted tokens. Default: the origin the
	// request was made to (scheme://host), which follows the Host header;
	// set it when services check the issuer.
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

	logger   *zap.Logger
	mode     string
	ttl      time.Duration
	skew     time.Duration
	key      *signingKey
	scopeSet map[string]struct{}
	cache    *tokenCache
	group    singleflight.Group

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
	t.mode = t.Mode
	if t.mode == "" {
		t.mode = modeAccessToken
	}
	if t.mode == modeExchange {
		t.cache = newTokenCache(maxCachedTokens)
		t.cache.sweepEvery(ctx, t.logger, time.Now)
		return nil
	}
	if t.mode != modeMint {
		return nil
	}

	t.ttl = time.Duration(t.TTL)
	if t.ttl == 0 {
		t.ttl = defaultTTL
	}
	t.skew = refreshSkew(t.ttl)
	if len(t.Scopes) > 0 {
		t.scopeSet = make(map[string]struct{}, len(t.Scopes))
		for _, s := range t.Scopes {
			t.scopeSet[s] = struct{}{}
		}
	}
	if t.SigningKey != "" {
		key, err := loadSigningKey(t.SigningKey, false)
		if err != nil {
			return fmt.Errorf("bff_token: signing_key: %w", err)
		}
		t.key = key
	}
	t.cache = newTokenCache(maxCachedTokens)
	t.cache.sweepEvery(ctx, t.logger, time.Now)
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
		for i, s := range t.Scopes {
			if s == "" || strings.ContainsFunc(s, isSpace) {
				return fmt.Errorf("bff_token: scopes: scope %d (%q) is empty or contains white space", i+1, s)
			}
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
	if strings.ContainsFunc(t.Issuer, isSpace) {
		return fmt.Errorf("bff_token: issuer %q contains white space", t.Issuer)
	}
	for i, s := range t.Scopes {
		if s == "" || strings.ContainsFunc(s, isSpace) {
			return fmt.Errorf("bff_token: scopes: scope %d (%q) is empty or contains white space", i+1, s)
		}
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

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

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

	var header string
	switch t.mode {
	case modeExchange:
		var status int
		header, status = t.exchangedHeader(r, id)
		switch status {
		case 0:
		case http.StatusUnauthorized:
			unauthorized(w, r, "session has no access token; log in again")
			return nil
		case http.StatusForbidden:
			problem.Error(w, r, status, "the identity provider refused a token for this service")
			return nil
		default:
			problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
				Detail: "identity provider unavailable; try again shortly", RetryAfter: 5})
			return nil
		}
	case modeMint:
		var status int
		header, status = t.mintedHeader(r, id)
		if status != 0 {
			if status == http.StatusUnauthorized {
				unauthorized(w, r, "session expired; log in again")
			} else {
				problem.Error(w, r, status, "could not issue a token for the service")
			}
			return nil
		}
	default:
		tok, exp := id.AccessToken()
		if tok == "" {
			unauthorized(w, r, "session has no access token; log in again")
			return nil
		}
		if !exp.IsZero() && !t.now().Before(exp) {
			unauthorized(w, r, "access token expired; log in again")
			return nil
		}
		header = "Bearer " + tok
	}
	r.Header.Set("Authorization", header)
	return next.ServeHTTP(w, r)
}

func unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	problem.Write(w, r, problem.Details{Status: http.StatusUnauthorized, Detail: detail, LoginURL: oidcauth.LoginURLFrom(r)})
}

// mintedHeader returns the Authorization value with a minted token for id,
// from the cache when one is fresh enough. On failure it returns the HTTP
// status to answer with.
func (t *Token) mintedHeader(r *http.Request, id *oidcauth.Identity) (string, int) {
	if id.Subject == "" {
		return "", http.StatusUnauthorized
	}
	k := cacheKey{session: id.SessionKey(), subject: id.Subject}
	if t.Issuer == "" {
		k.host, k.tls = r.Host, r.TLS != nil
	}

	// A session key is what keeps users apart in the cache; without one,
	// mint every time rather than risk handing out another user's token.
	if k.session == "" {
		metrics.TokenCache(metrics.ModeMint, false)
		e, status := t.mint(id, t.issuerFor(k), t.grantedScopes(id.Scopes), t.now())
		if status != 0 {
			return "", status
		}
		return e.header, 0
	}

	// Fast path: a read lock and a map lookup, no allocation.
	if e := t.cache.get(k); e != nil && t.reusable(e, id) {
		metrics.TokenCache(metrics.ModeMint, true)
		return e.header, 0
	}
	metrics.TokenCache(metrics.ModeMint, false)

	scopes := t.grantedScopes(id.Scopes)
	iss := t.issuerFor(k)
	// Concurrent first requests of a session mint once; the flight key
	// covers everything the token depends on.
	flight := k.session + "\x00" + k.subject + "\x00" + iss + "\x00" + strings.Join(scopes, " ")
	v, _, _ := t.group.Do(flight, func() (any, error) {
		// A flight that ended between our cache miss and Do has already
		// stored its token.
		if e := t.cache.get(k); e != nil && t.reusable(e, id) {
			return mintResult{entry: e}, nil
		}
		now := t.now()
		e, status := t.mint(id, iss, scopes, now)
		if status != 0 {
			return mintResult{status: status}, nil
		}
		t.cache.put(k, e, now)
		return mintResult{entry: e}, nil
	})
	res := v.(mintResult)
	if res.status != 0 {
		return "", res.status
	}
	return res.entry.header, 0
}

type mintResult struct {
	entry  *cachedToken
	status int
}

// reusable reports whether a cached token may be sent for id now: fresh
// enough, and for the scopes the user holds now (they can change when the
// session is refreshed).
func (t *Token) reusable(e *cachedToken, id *oidcauth.Identity) bool {
	if !t.now().Before(e.refreshAt) {
		return false
	}
	n := 0
	for i, s := range id.Scopes {
		if !t.keepScope(id.Scopes, i) {
			continue
		}
		if n >= len(e.scopes) || e.scopes[n] != s {
			return false
		}
		n++
	}
	return n == len(e.scopes)
}

// keepScope reports whether the user's i-th scope goes into the token:
// allowed by Scopes, and not a repeat.
func (t *Token) keepScope(user []string, i int) bool {
	s := user[i]
	if t.scopeSet != nil {
		if _, ok := t.scopeSet[s]; !ok {
			return false
		}
	}
	return !slices.Contains(user[:i], s)
}

// grantedScopes is the `scope` claim's content, in the user's order.
func (t *Token) grantedScopes(user []string) []string {
	var out []string
	for i := range user {
		if t.keepScope(user, i) {
			out = append(out, user[i])
		}
	}
	return out
}

// issuerFor is the configured issuer or the request's origin.
func (t *Token) issuerFor(k cacheKey) string {
	if t.Issuer != "" {
		return t.Issuer
	}
	scheme := "http://"
	if k.tls {
		scheme = "https://"
	}
	return scheme + strings.ToLower(k.host)
}

// mint signs a new token.
func (t *Token) mint(id *oidcauth.Identity, iss string, scopes []string, now time.Time) (*cachedToken, int) {
	exp := now.Add(t.ttl)
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(exp) {
		exp = id.ExpiresAt
	}
	if !exp.After(now) {
		return nil, http.StatusUnauthorized
	}

	var jti [16]byte
	_, _ = rand.Read(jti[:]) // crypto/rand.Read never fails (Go 1.24+)
	claims := jwt.MapClaims{
		"iss": iss,
		"sub": id.Subject,
		"aud": t.Audience,
		"exp": exp.Unix(),
		"iat": now.Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	for _, name := range t.Claims {
		if v, ok := id.Claim(name); ok {
			claims[name] = v
		}
	}
	tok := jwt.NewWithClaims(t.key.method, claims)
	tok.Header["kid"] = t.key.kid
	signed, err := tok.SignedString(t.key.private)
	if err != nil {
		// Signing errors describe the key type or claim encoding, never
		// the token.
		t.logger.Error("signing token failed", zap.String("aud", t.Audience), zap.Error(err))
		return nil, http.StatusInternalServerError
	}
	if t.minted != nil {
		t.minted()
	}
	if ce := t.logger.Check(zapcore.DebugLevel, "minted token"); ce != nil {
		ce.Write(zap.String("sub", id.Subject), zap.String("aud", t.Audience),
			zap.String("kid", t.key.kid), zap.Time("exp", exp))
	}
	return &cachedToken{
		header:    "Bearer " + signed,
		subject:   id.Subject,
		scopes:    scopes,
		expiresAt: exp,
		refreshAt: exp.Add(-t.skew),
	}, 0
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Token)(nil)
	_ caddy.Validator             = (*Token)(nil)
	_ caddyhttp.MiddlewareHandler = (*Token)(nil)
	_ caddyfile.Unmarshaler       = (*Token)(nil)
)
