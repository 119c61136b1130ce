package oidcauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
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
	retry retryAfter // revalidations held back after an outage (revalidate.go)
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
	// A panic below must not leave the lock held: Safely recovers it and
	// every request would then wait forever.
	defer rs.mu.Unlock()
	for k, res := range rs.done {
		if !now.Before(res.until) {
			delete(rs.done, k)
		}
	}
	rs.retry.sweep(now)
}

// refreshKey names one refresh: the session and the refresh token spent,
// and when the provider last vouched for the session: with a refresh
// token that does not rotate, a revalidation (revalidate.go) must call the
// provider again rather than find the previous refresh's result.
func refreshKey(s *session) string {
	sum := sha256.Sum256([]byte(s.RefreshToken))
	key := s.hkey() + "|" + base64.RawURLEncoding.EncodeToString(sum[:16])
	if s.Checked != 0 {
		key += "|" + strconv.FormatInt(s.Checked, 36)
	}
	return key
}

// errEndUnstored: the provider ended the session (invalid_grant), but the
// store could not record it. The session is not served (503), whatever
// its access token.
var errEndUnstored = errors.New("session ended by the provider; the ending could not be stored")

// refreshTimeout bounds one refresh, whoever waits for it: the provider
// call, or waiting for another instance's (see coordinatedRefresh).
const refreshTimeout = providerTimeout + 5*time.Second

// refresh renews the session's tokens with its refresh token, at most once
// at a time per session. It returns the new session and the cookie value to
// set (for the cookie store). errSessionEnded means the provider refused the
// grant (invalid_grant) or the session was ended meanwhile; a
// *sessionTooLargeError that the new session does not fit the cookie
// store; any other error means the provider or the store is unavailable.
//
// The work runs for every request waiting on it, so it runs under its own
// deadline, detached from the request that started it: one client going
// away never fails the others.
func (h *Handler) refresh(r *http.Request, s *session) (*session, string, error) {
	return h.renewOnce(r, s, refreshKey(s), h.doRefresh)
}

// renewWork renews or checks s with the provider (doRefresh, or a
// revalidation's check); ctx bounds it.
type renewWork func(ctx context.Context, r *http.Request, s *session) (refreshResult, error)

// renewOnce runs work for s at most once at a time per key, in this process
// (singleflight) and across instances (coordinatedRefresh), and lets late
// racers with the same key have its result; see refresh.
func (h *Handler) renewOnce(r *http.Request, s *session, key string, work renewWork) (*session, string, error) {
	if res, ok := h.state.refresh.recent(key, h.now()); ok {
		return res.s, res.cookie, nil
	}
	v, err, _ := h.state.refresh.group.Do(key, func() (any, error) {
		if res, ok := h.state.refresh.recent(key, h.now()); ok {
			return res, nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), refreshTimeout)
		defer cancel()
		var res refreshResult
		var err error
		if h.redis != nil {
			res, err = h.coordinatedRefresh(ctx, r, s, key, work)
		} else {
			res, err = work(ctx, r, s)
		}
		if err != nil {
			return nil, err
		}
		h.state.refresh.remember(key, res)
		return res, nil
	})
	if err != nil {
		return nil, "", err
	}
	res := v.(refreshResult)
	return res.s, res.cookie, nil
}

// doRefresh is one refresh at the provider; ctx bounds it.
func (h *Handler) doRefresh(ctx context.Context, r *http.Request, s *session) (refreshResult, error) {
	pctx, cancel := context.WithTimeout(h.disc.clientCtx(ctx), providerTimeout)
	defer cancel()
	info, err := h.disc.get(pctx)
	if err != nil {
		return refreshResult{}, err
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.RefreshToken}}
	h.addResources(form)
	tok, err := h.client.token(pctx, metrics.CallRefresh, info.tokenURL, info.auth, form)
	if err != nil {
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok && re.ErrorCode == "invalid_grant" {
			// A server-side store may already hold the winner's tokens (a
			// race with another instance that rotated the refresh token).
			if h.Session.Store != storeCookie {
				if cur, lerr := h.store.load(ctx, s.ID); lerr == nil && cur.RefreshToken != s.RefreshToken {
					return refreshResult{s: cur, until: h.now().Add(recentTTL)}, nil
				}
			}
			// The provider revoked the grant (SPEC §4): the session ends
			// now, even while its access token is still valid. Several
			// instances racing with rotating refresh tokens coordinate
			// through Redis (coordinatedRefresh), so a lost race does not
			// land here.
			audit.Write(h.audit, audit.Refresh, r, audit.Entry{Sub: s.Subject, Outcome: audit.InvalidGrant})
			if err := h.endSession(ctx, s, metrics.EndInvalidGrant); err != nil {
				// Not remembered: the session must not be served either.
				return refreshResult{}, fmt.Errorf("%w: %w: %w", errEndUnstored, errStoreDown, err)
			}
			return refreshResult{}, errSessionEnded
		}
		audit.Write(h.audit, audit.Refresh, r, audit.Entry{Sub: s.Subject, Outcome: audit.ProviderError})
		h.logger.Error("token refresh failed", zap.String("request_id", requestid.From(r)), zap.Error(scrub(err)))
		return refreshResult{}, fmt.Errorf("%w: refresh", errProviderDown)
	}
	ns := *s
	ns.ident = nil
	ns.Checked = h.now().UnixMilli()
	ns.AccessToken = tok.AccessToken
	if tok.RefreshToken != "" {
		ns.RefreshToken = tok.RefreshToken
	}
	ns.setTokenExpiry(tok)
	if rawID, _ := tok.Extra("id_token").(string); rawID != "" {
		// OpenID Connect Core §12.2: a refreshed ID token must name the
		// same subject; its nonce, if any, is not checked again.
		idt, err := info.verifier.Verify(pctx, rawID)
		if err != nil || idt.Subject != s.Subject {
			audit.Write(h.audit, audit.Refresh, r, audit.Entry{Sub: s.Subject, Outcome: audit.BadIDToken})
			if err := h.endSession(ctx, s, metrics.EndInvalidGrant); err != nil {
				return refreshResult{}, fmt.Errorf("%w: %w: %w", errEndUnstored, errStoreDown, err)
			}
			return refreshResult{}, errSessionEnded
		}
		var idClaims map[string]any
		if idt.Claims(&idClaims) == nil {
			ns.Claims = h.userClaims(pctx, r, info, idClaims, tok)
		}
		ns.IDToken = rawID
	}
	cookie, err := h.store.save(ctx, &ns, false, ns.end(h.idle, h.lifetime))
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			// Logout won the race: the new tokens are dropped.
			return refreshResult{}, errSessionEnded
		}
		if _, ok := errors.AsType[*sessionTooLargeError](err); ok {
			audit.Write(h.audit, audit.Refresh, r, audit.Entry{Sub: s.Subject, Outcome: audit.SessionTooLarge})
			return refreshResult{}, err
		}
		return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	audit.Write(h.audit, audit.Refresh, r, audit.Entry{Sub: s.Subject, Outcome: audit.Success})
	return refreshResult{s: &ns, cookie: cookie, until: h.now().Add(recentTTL)}, nil
}
