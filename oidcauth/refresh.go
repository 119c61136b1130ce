package oidcauth

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-bff/caddy-bff/caddybff/metrics"
	"github.com/caddy-bff/caddy-bff/caddybff/requestid"
)

// recentTTL is how long a refresh result is remembered for requests that
// still carry the pre-refresh cookie (they were in flight, or another tab
// raced): with rotating refresh tokens, refreshing again with the spent
// token would end the session.
const recentTTL = 2 * time.Minute

// refreshState coordinates refreshes in this process: one per session at a
// time (singleflight), and their results for late racers.
type refreshState struct {
	group singleflight.Group
	mu    sync.Mutex
	done  map[string]refreshResult
}

type refreshResult struct {
	s      *session
	cookie string
	until  time.Time
}

func newRefreshState() *refreshState {
	return &refreshState{done: make(map[string]refreshResult)}
}

func (rs *refreshState) recent(key string, now time.Time) (refreshResult, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	res, ok := rs.done[key]
	if !ok || !now.Before(res.until) {
		return refreshResult{}, false
	}
	return res, true
}

func (rs *refreshState) remember(key string, res refreshResult) {
	rs.mu.Lock()
	rs.done[key] = res
	rs.mu.Unlock()
}

func (rs *refreshState) sweep(now time.Time) {
	rs.mu.Lock()
	for k, res := range rs.done {
		if !now.Before(res.until) {
			delete(rs.done, k)
		}
	}
	rs.mu.Unlock()
}

// refreshKey names one refresh: the session and the refresh token spent.
func refreshKey(s *session) string {
	sum := sha256.Sum256([]byte(s.RefreshToken))
	return s.hkey() + "|" + base64.RawURLEncoding.EncodeToString(sum[:16])
}

// refresh renews the session's tokens with its refresh token, at most once
// at a time per session. It returns the new session and the cookie value to
// set (for the cookie store). errSessionEnded means the provider refused the
// grant (invalid_grant) or the session was ended meanwhile; any other error
// means the provider is unavailable.
func (h *Handler) refresh(r *http.Request, s *session) (*session, string, error) {
	key := refreshKey(s)
	if res, ok := h.state.refresh.recent(key, h.now()); ok {
		return res.s, res.cookie, nil
	}
	v, err, _ := h.state.refresh.group.Do(key, func() (any, error) {
		if res, ok := h.state.refresh.recent(key, h.now()); ok {
			return res, nil
		}
		var res refreshResult
		var err error
		if h.redis != nil {
			res, err = h.coordinatedRefresh(r, s, key)
		} else {
			res, err = h.doRefresh(r, s)
		}
		if err != nil {
			return nil, err
		}
		if !res.until.IsZero() {
			h.state.refresh.remember(key, res)
		}
		return res, nil
	})
	if err != nil {
		return nil, "", err
	}
	res := v.(refreshResult)
	return res.s, res.cookie, nil
}

func (h *Handler) doRefresh(r *http.Request, s *session) (refreshResult, error) {
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	info, err := h.disc.get(ctx)
	if err != nil {
		return refreshResult{}, err
	}
	start := time.Now()
	tok, err := info.oauth.TokenSource(ctx, &oauth2.Token{
		RefreshToken: s.RefreshToken,
		Expiry:       time.Unix(1, 0), // force the refresh
	}).Token()
	metrics.ProviderCall(metrics.CallRefresh, start, err)
	if err != nil {
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok && re.ErrorCode == "invalid_grant" {
			// A server-side store may already hold the winner's tokens (a
			// race with another instance that rotated the refresh token).
			if h.Session.Store != "cookie" {
				if cur, lerr := h.store.load(r.Context(), s.ID); lerr == nil && cur.RefreshToken != s.RefreshToken {
					return refreshResult{s: cur, cookie: ""}, nil
				}
			}
			// The refresh token may have been spent by a racing request
			// elsewhere (the cookie store cannot share state between
			// instances without Redis): while the access token is still
			// valid, keep serving it rather than log the user out; the
			// winner's cookie replaces this one. Once it expires, the
			// session ends.
			if exp := time.Unix(s.TokenExpiry, 0); s.TokenExpiry > 0 && h.now().Before(exp) {
				h.auditRefresh(r, s.Subject, "invalid_grant_token_still_valid")
				// Remembered until the token expires, so this instance's
				// other racers don't spend provider calls on it too.
				return refreshResult{s: s, until: exp}, nil
			}
			_ = h.store.remove(r.Context(), s, s.end(h.idle, h.lifetime))
			metrics.SessionsEnded(metrics.EndInvalidGrant, 1)
			h.auditRefresh(r, s.Subject, "invalid_grant")
			return refreshResult{}, errSessionEnded
		}
		h.auditRefresh(r, s.Subject, "provider_error")
		h.logger.Error("token refresh failed", zap.String("request_id", requestid.From(r)), zap.Error(scrub(err)))
		return refreshResult{}, fmt.Errorf("%w: refresh", errProviderDown)
	}
	ns := *s
	ns.ident = nil
	ns.AccessToken = tok.AccessToken
	if tok.RefreshToken != "" {
		ns.RefreshToken = tok.RefreshToken
	}
	ns.TokenExpiry = 0
	if !tok.Expiry.IsZero() {
		ns.TokenExpiry = tok.Expiry.Unix()
	}
	if rawID, _ := tok.Extra("id_token").(string); rawID != "" {
		// OpenID Connect Core §12.2: a refreshed ID token must name the
		// same subject; its nonce, if any, is not checked again.
		idt, err := info.verifier.Verify(ctx, rawID)
		if err != nil || idt.Subject != s.Subject {
			h.auditRefresh(r, s.Subject, "bad_id_token")
			_ = h.store.remove(r.Context(), s, s.end(h.idle, h.lifetime))
			return refreshResult{}, errSessionEnded
		}
		var idClaims map[string]any
		if idt.Claims(&idClaims) == nil {
			ns.Claims = h.userClaims(ctx, r, info, idClaims, tok)
		}
		ns.IDToken = rawID
	}
	cookie, err := h.store.save(r.Context(), &ns, false, ns.end(h.idle, h.lifetime))
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			// Logout won the race: the new tokens are dropped.
			return refreshResult{}, errSessionEnded
		}
		return refreshResult{}, err
	}
	h.auditRefresh(r, s.Subject, "success")
	return refreshResult{s: &ns, cookie: cookie, until: h.now().Add(recentTTL)}, nil
}

func (h *Handler) auditRefresh(r *http.Request, sub, outcome string) {
	metrics.Refresh(outcome)
	h.audit.Info("refresh",
		zap.String("request_id", requestid.From(r)),
		zap.String("sub", sub),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.String("outcome", outcome))
}
