package oidcauth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/internal/claims"
)

// session is what a login establishes. Field names are short because the
// cookie store seals the JSON into cookies.
type session struct {
	ID           string         `json:"i,omitempty"`
	Subject      string         `json:"s"`
	SID          string         `json:"sid,omitempty"` // the provider's session id (back-channel logout)
	Claims       map[string]any `json:"c,omitempty"`
	AccessToken  string         `json:"at,omitempty"`
	RefreshToken string         `json:"rt,omitempty"`
	IDToken      string         `json:"it,omitempty"`
	TokenExpiry  int64          `json:"ax,omitempty"`  // unix seconds; 0 = unknown
	TokenLife    int64          `json:"al,omitempty"`  // the access token's lifetime when issued, seconds; 0 = unknown
	ACR          string         `json:"acr,omitempty"` // the login's acr claim (step-up)
	AuthTime     int64          `json:"au,omitempty"`  // the login's auth_time claim, unix seconds; 0 = not given
	Created      int64          `json:"ct"`            // unix milliseconds
	LastSeen     int64          `json:"ls"`            // unix milliseconds
	Checked      int64          `json:"rv,omitempty"`  // unix milliseconds: the provider last vouched for it (login, refresh, revalidate)

	key   string    // hashID(ID), set before the session is shared
	ident *Identity // precomputed identity (without handler), or nil
}

// hkey returns the session's store/cache key, computing it when unset.
func (s *session) hkey() string {
	if s.key == "" {
		return hashID(s.ID)
	}
	return s.key
}

// sessionIDLen is the length of a session id: 32 random bytes, base64url
// without padding. A cookie value of another length is no session.
const sessionIDLen = 43

// newSessionID returns 256 random bits, base64url: unguessable, and fresh
// for every login so that a planted id is never adopted (no fixation).
func newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// hashID is the non-secret form of a session id used as a store key and
// cache key: a server-side store never holds the id a cookie carries.
func hashID(id string) string {
	sum := sha256.Sum256([]byte("caddy-bff session\x00" + id))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// setTokenExpiry records when the access token of tok expires and how
// long it lived when issued (oauth2 computes Expiry from expires_in by the
// real clock, at receipt).
func (s *session) setTokenExpiry(tok *oauth2.Token) {
	s.TokenExpiry, s.TokenLife = 0, 0
	if tok.Expiry.IsZero() {
		return
	}
	s.TokenExpiry = tok.Expiry.Unix()
	s.TokenLife = tok.ExpiresIn
	if s.TokenLife <= 0 {
		s.TokenLife = max(int64(time.Until(tok.Expiry).Round(time.Second)/time.Second), 0)
	}
}

// refreshSkew is how long before the access token's expiry a request
// refreshes it: refresh_skew, but at most half the token's lifetime, so a
// short-lived token (20 s, with the default 30 s skew) is not "about to
// expire" from the moment it is issued, which would refresh on every
// request.
func (s *session) refreshSkew(skew time.Duration) time.Duration {
	if s.TokenLife > 0 {
		return min(skew, time.Duration(s.TokenLife)*time.Second/2)
	}
	return skew
}

// expiresAt is the absolute end of the session (its lifetime).
func (s *session) expiresAt(lifetime time.Duration) time.Time {
	return time.UnixMilli(s.Created).Add(lifetime)
}

// idleExpiresAt is when the session ends unless it is used again.
func (s *session) idleExpiresAt(idle time.Duration) time.Time {
	return time.UnixMilli(s.LastSeen).Add(idle)
}

// alive reports whether neither the lifetime nor the idle timeout passed.
func (s *session) alive(now time.Time, idle, lifetime time.Duration) bool {
	return now.Before(s.expiresAt(lifetime)) && now.Before(s.idleExpiresAt(idle))
}

// end is the earlier of the two expiries: how long a store or a revocation
// list must remember the session.
func (s *session) end(idle, lifetime time.Duration) time.Time {
	a, b := s.expiresAt(lifetime), s.idleExpiresAt(idle)
	if b.Before(a) {
		return b
	}
	return a
}

// identity builds the read-only view later handlers get.
func (s *session) identity(idle, lifetime time.Duration) *Identity {
	id := &Identity{
		Subject:       s.Subject,
		Claims:        s.Claims,
		Scopes:        claims.Strings(s.Claims["scope"]),
		ExpiresAt:     s.expiresAt(lifetime),
		idleExpiresAt: s.idleExpiresAt(idle),
		sessionKey:    s.hkey(),
		accessToken:   s.AccessToken,
		ACR:           s.ACR,
	}
	if s.AuthTime > 0 {
		id.AuthTime = time.Unix(s.AuthTime, 0)
	}
	if email, ok := s.Claims["email"].(string); ok {
		id.Email = email
	}
	if s.TokenExpiry > 0 {
		id.tokenExpiry = time.Unix(s.TokenExpiry, 0)
	}
	return id
}
