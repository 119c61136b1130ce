package caddybff

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// mintSource is mode mint: a short-lived JWT signed with signing_key for
// Audience, cached per session until it is too close to expiry or the
// user's scopes change.
type mintSource struct {
	t        *Token
	ttl      time.Duration
	skew     time.Duration
	scopeSet map[string]struct{} // nil: every scope of the user
}

func newMintSource(t *Token) *mintSource {
	m := &mintSource{t: t, ttl: cmp.Or(time.Duration(t.TTL), defaultTTL)}
	m.skew = refreshSkew(m.ttl)
	if len(t.Scopes) > 0 {
		m.scopeSet = make(map[string]struct{}, len(t.Scopes))
		for _, s := range t.Scopes {
			m.scopeSet[s] = struct{}{}
		}
	}
	return m
}

func (m *mintSource) header(r *http.Request, id *oidcauth.Identity) (string, error) {
	if id.Subject == "" {
		return "", errSessionOver
	}
	k := cacheKey{session: id.SessionKey(), subject: id.Subject}
	if m.t.Issuer == "" {
		// The site's origin as the browser sees it, behind a proxy too.
		k.tls, k.host = oidcauth.ExternalOrigin(r)
	}
	// The flight key covers everything the token depends on beyond k, so
	// a request whose scopes changed mid-flight never gets a token minted
	// for the old ones.
	var scopes []string
	e, hit, err := m.t.cache.getOrFill(k,
		func(e *cachedToken) bool { return m.reusable(e, id) },
		func() string {
			scopes = m.grantedScopes(id.Scopes)
			return strings.Join(scopes, " ")
		},
		func() (*cachedToken, error) {
			if scopes == nil {
				scopes = m.grantedScopes(id.Scopes)
			}
			return m.mint(id, m.issuerFor(k), scopes, m.t.now())
		})
	metrics.TokenCache(metrics.ModeMint, hit)
	if err != nil {
		return "", err
	}
	return e.header, nil
}

// reusable reports whether a cached token may be sent for id now: fresh
// enough, and for the scopes the user holds now (they can change when the
// session is refreshed).
func (m *mintSource) reusable(e *cachedToken, id *oidcauth.Identity) bool {
	if !m.t.now().Before(e.refreshAt) {
		return false
	}
	n := 0
	for i, s := range id.Scopes {
		if !m.keepScope(id.Scopes, i) {
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
func (m *mintSource) keepScope(user []string, i int) bool {
	s := user[i]
	if m.scopeSet != nil {
		if _, ok := m.scopeSet[s]; !ok {
			return false
		}
	}
	return !slices.Contains(user[:i], s)
}

// grantedScopes is the `scope` claim's content, in the user's order.
func (m *mintSource) grantedScopes(user []string) []string {
	out := []string{}
	for i := range user {
		if m.keepScope(user, i) {
			out = append(out, user[i])
		}
	}
	return out
}

// issuerFor is the configured issuer or the request's origin.
func (m *mintSource) issuerFor(k cacheKey) string {
	if m.t.Issuer != "" {
		return m.t.Issuer
	}
	scheme := "http://"
	if k.tls {
		scheme = "https://"
	}
	return scheme + strings.ToLower(k.host)
}

// mint signs a new token; a session already over gets errSessionOver.
func (m *mintSource) mint(id *oidcauth.Identity, iss string, scopes []string, now time.Time) (*cachedToken, error) {
	t := m.t
	exp := now.Add(m.ttl)
	if !id.ExpiresAt.IsZero() && id.ExpiresAt.Before(exp) {
		exp = id.ExpiresAt
	}
	if !exp.After(now) {
		return nil, errSessionOver
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
	tok := jwt.NewWithClaims(t.key.Method, claims)
	tok.Header["kid"] = t.key.KID
	signed, err := tok.SignedString(t.key.Private)
	if err != nil {
		// Signing errors describe the key type or claim encoding, never
		// the token.
		t.logger.Error("signing token failed", zap.String("aud", t.Audience), zap.Error(err))
		return nil, errSigning
	}
	if t.minted != nil {
		t.minted()
	}
	if ce := t.logger.Check(zapcore.DebugLevel, "minted token"); ce != nil {
		ce.Write(zap.String("sub", id.Subject), zap.String("aud", t.Audience),
			zap.String("kid", t.key.KID), zap.Time("exp", exp))
	}
	return &cachedToken{
		header:    "Bearer " + signed,
		subject:   id.Subject,
		scopes:    scopes,
		expiresAt: exp,
		refreshAt: exp.Add(-m.skew),
	}, nil
}
