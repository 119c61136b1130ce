package oidcauth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// revalidateRetry is how long a session whose revalidation failed for an
// outage (provider or store) waits before the next attempt. Its requests
// are served meanwhile, as through a refresh outage, without each one
// calling a provider that is down.
const revalidateRetry = 5 * time.Second

// How a session is revalidated (revalidateMethod).
const (
	checkNone          = ""
	checkRefresh       = "refresh"
	checkIntrospection = "introspection"
	checkUserInfo      = "userinfo"
)

// retryAfter holds back revalidations after an outage: per session key,
// the time before which none is tried. The zero value is ready.
type retryAfter struct {
	mu    sync.Mutex
	until map[string]time.Time
	// warned: revalidate is on but the provider offers nothing to check a
	// session without a refresh token with; logged once.
	warned atomic.Bool
}

func (ra *retryAfter) waiting(key string, now time.Time) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	t, ok := ra.until[key]
	return ok && now.Before(t)
}

func (ra *retryAfter) hold(key string, until time.Time) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.until == nil {
		ra.until = make(map[string]time.Time)
	}
	ra.until[key] = until
}

func (ra *retryAfter) sweep(now time.Time) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for k, t := range ra.until {
		if !now.Before(t) {
			delete(ra.until, k)
		}
	}
}

// revalidateDue reports whether s must be checked with the provider
// again: revalidate is on, the provider last vouched for s (login,
// refresh, revalidation) at least that long ago, and no outage holds the
// check back. A session from before revalidate was set counts from its
// creation.
func (h *Handler) revalidateDue(s *session, now time.Time) bool {
	every := time.Duration(h.Revalidate)
	if every <= 0 {
		return false
	}
	last := time.UnixMilli(cmp.Or(s.Checked, s.Created))
	if now.Sub(last) < every {
		return false
	}
	return !h.state.refresh.retry.waiting(s.hkey(), now)
}

// renew refreshes s when its access token is about to expire, else
// revalidates it. The results are refresh's: errSessionEnded when the
// provider no longer knows the session, errProviderDown for an outage,
// errStoreDown or *sessionTooLargeError for the store.
func (h *Handler) renew(r *http.Request, s *session, now time.Time) (*session, string, error) {
	if h.needsRefresh(s, now) {
		return h.refresh(r, s)
	}
	ns, cookie, err := h.revalidate(r, s)
	// Not after an ending, stored or not: a session the provider gave up
	// is never served again.
	if err != nil && !errors.Is(err, errSessionEnded) && !errors.Is(err, errEndUnstored) {
		h.state.refresh.retry.hold(s.hkey(), now.Add(revalidateRetry))
	}
	return ns, cookie, err
}

// revalidate checks s with the provider: the refresh grant when s has a
// refresh token (refresh, with its single flight and cross-instance lock:
// rotating refresh tokens never race), else introspection or UserInfo of
// its access token under the same coordination, so that one call per
// interval serves every request and instance.
func (h *Handler) revalidate(r *http.Request, s *session) (*session, string, error) {
	ctx, cancel := h.providerCtx(r)
	info, err := h.disc.get(ctx)
	cancel()
	if err != nil {
		return nil, "", err
	}
	method := revalidateMethod(s, info, h.userInfoUsable(), h.now())
	switch method {
	case checkRefresh:
		return h.refresh(r, s)
	case checkNone:
		// Nothing can vouch for the session any more (no refresh token,
		// and an access token that expired or that no endpoint takes):
		// fail closed. The user logs in again; a session revalidate cannot
		// check lives at most one interval past its last check.
		if h.state.refresh.retry.warned.CompareAndSwap(false, true) {
			h.logger.Warn("revalidate: a session due for its check has no refresh token and no access token the provider "+
				"can be asked about (expired, or no introspection endpoint and userinfo off or refused); such sessions end "+
				"when their check is due: request offline_access to keep them",
				zap.String("request_id", requestid.From(r)))
		}
		audit.Write(h.audit, audit.Revalidate, r, audit.Entry{Sub: s.Subject, Outcome: audit.Rejected, Detail: "unverifiable"})
		if err := h.endSession(context.WithoutCancel(r.Context()), s, metrics.EndInvalidGrant); err != nil {
			return nil, "", fmt.Errorf("%w: %w: %w", errEndUnstored, errStoreDown, err)
		}
		return nil, "", errSessionEnded
	}
	key := "rv|" + s.hkey() + "|" + strconv.FormatInt(s.Checked, 36)
	return h.renewOnce(r, s, key, func(ctx context.Context, r *http.Request, s *session) (refreshResult, error) {
		return h.doCheck(ctx, r, s, info, method)
	})
}

// revalidateMethod chooses how to check s: its refresh token, else its
// access token at the introspection endpoint, else at UserInfo (when
// userinfo may be called). An access token that expired says nothing
// about the session: checkNone, and the session ends.
func revalidateMethod(s *session, info *providerInfo, userinfo bool, now time.Time) string {
	switch {
	case s.RefreshToken != "":
		return checkRefresh
	case s.AccessToken == "" || (s.TokenExpiry > 0 && !now.Before(time.Unix(s.TokenExpiry, 0))):
		return checkNone
	case info.introspect != "":
		return checkIntrospection
	case info.userinfo != "" && userinfo:
		return checkUserInfo
	}
	return checkNone
}

// userInfoUsable reports whether the UserInfo endpoint may be called: not
// with userinfo off, nor (auto) once it refused an access token, which a
// provider binding tokens to another resource does for every session.
func (h *Handler) userInfoUsable() bool {
	mode := cmp.Or(h.UserInfo, "auto")
	return mode == "on" || (mode == "auto" && !h.disc.userinfoRefused.Load())
}

// doCheck asks the provider whether it still knows s (introspection or
// UserInfo of its access token) and, when it does, saves s as checked now
// (the cookie store gets a new cookie). A session it no longer knows ends
// as after invalid_grant; an outage changes nothing.
func (h *Handler) doCheck(ctx context.Context, r *http.Request, s *session, info *providerInfo, method string) (refreshResult, error) {
	// Another instance may have ended it while this one waited for the
	// lock: no call for a dead session.
	if h.endedMeanwhile(ctx, s) {
		return refreshResult{}, errSessionEnded
	}
	pctx, cancel := context.WithTimeout(h.disc.clientCtx(ctx), providerTimeout)
	defer cancel()
	var known bool
	var err error
	if method == checkIntrospection {
		known, err = h.introspect(pctx, info, s)
	} else {
		known, err = h.userInfoKnows(pctx, info, s)
	}
	if err != nil {
		audit.Write(h.audit, audit.Revalidate, r, audit.Entry{Sub: s.Subject, Outcome: audit.ProviderError, Detail: method})
		h.logger.Warn("session revalidation failed; the session is kept", zap.String("request_id", requestid.From(r)),
			zap.String("method", method), zap.Error(err))
		return refreshResult{}, err
	}
	if !known {
		audit.Write(h.audit, audit.Revalidate, r, audit.Entry{Sub: s.Subject, Outcome: audit.Rejected, Detail: method})
		if err := h.endSession(ctx, s, metrics.EndInvalidGrant); err != nil {
			return refreshResult{}, fmt.Errorf("%w: %w: %w", errEndUnstored, errStoreDown, err)
		}
		return refreshResult{}, errSessionEnded
	}
	ns := *s
	ns.ident = nil
	ns.Checked = h.now().UnixMilli()
	cookie, err := h.store.save(ctx, &ns, false, ns.end(h.idle, h.lifetime))
	if err != nil {
		if errors.Is(err, errSessionEnded) {
			return refreshResult{}, errSessionEnded // logout won the race
		}
		if _, ok := errors.AsType[*sessionTooLargeError](err); ok {
			return refreshResult{}, err
		}
		return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	audit.Write(h.audit, audit.Revalidate, r, audit.Entry{Sub: s.Subject, Outcome: audit.Success, Detail: method})
	return refreshResult{s: &ns, cookie: cookie, until: h.now().Add(recentTTL)}, nil
}

// endedMeanwhile reports whether s was ended since its request loaded it;
// a store that cannot tell says no (the check goes ahead).
func (h *Handler) endedMeanwhile(ctx context.Context, s *session) bool {
	if h.Session.Store == storeCookie {
		ended, err := h.ends.ended(ctx, s)
		return err == nil && ended
	}
	_, err := h.store.load(ctx, s.ID)
	return errors.Is(err, errNoSession)
}

// introspect asks the introspection endpoint (RFC 7662) about s's access
// token, authenticated as every form call is. active:false, or a token of
// another subject, means the provider no longer knows the session; an
// answer without a boolean active, or not 200, is an outage (a refused
// client authentication is the operator's to fix, not the user's).
func (h *Handler) introspect(ctx context.Context, info *providerInfo, s *session) (bool, error) {
	form := url.Values{"token": {s.AccessToken}, "token_type_hint": {"access_token"}}
	status, body, err := h.client.post(ctx, metrics.CallIntrospection, info.introspect, info.auth, form)
	if err != nil {
		return false, err
	}
	if status != http.StatusOK {
		return false, fmt.Errorf("%w: introspection endpoint answered %d", errProviderDown, status)
	}
	var out struct {
		Active *bool  `json:"active"`
		Sub    string `json:"sub"`
	}
	if json.Unmarshal(body, &out) != nil || out.Active == nil {
		return false, fmt.Errorf("%w: introspection: the answer has no active member", errProviderDown)
	}
	return *out.Active && (out.Sub == "" || out.Sub == s.Subject), nil
}

// userInfoKnows calls UserInfo with s's access token: 401 (RFC 6750
// §3.1: the token is invalid, revoked or expired), or another subject,
// means the provider no longer knows the session. A 403 is
// insufficient_scope, which says nothing about the session: an outage,
// the session kept.
func (h *Handler) userInfoKnows(ctx context.Context, info *providerInfo, s *session) (bool, error) {
	start := time.Now()
	sctx, span := providerSpan(ctx, metrics.CallUserInfo)
	ui, err := info.oidc.UserInfo(sctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: s.AccessToken, TokenType: "Bearer"}))
	metrics.ProviderCall(metrics.CallUserInfo, start, err)
	switch {
	case err == nil:
		endProviderSpan(span, "ok", 0)
		return ui.Subject == s.Subject, nil
	case userInfoStatus(err) == "401":
		endProviderSpan(span, "refused", 0)
		return false, nil
	}
	endProviderSpan(span, "unavailable", 0)
	return false, fmt.Errorf("%w: userinfo: %w", errProviderDown, userInfoError(err))
}
