package oidcauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/caddybff/metrics"
	"github.com/caddy-bff/caddy-bff/caddybff/problem"
	"github.com/caddy-bff/caddy-bff/caddybff/requestid"
)

// serveLogout ends the session: POST only and same-origin only, so a link
// or a cross-site form cannot log a user out. It deletes the session
// everywhere, clears the cookies, revokes the refresh token (RFC 7009) and
// sends the browser to the provider's end_session_endpoint (RP-Initiated
// Logout 1.0) or to post_logout_redirect.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		problem.Error(w, r, http.StatusMethodNotAllowed, "logout takes POST")
		return
	}
	if err := h.csrf.Check(r); err != nil {
		problem.Error(w, r, http.StatusForbidden, "cross-origin request refused")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	// Clear-Site-Data drops anything the page cached for this user.
	w.Header().Set("Clear-Site-Data", `"cache"`)
	target := h.PostLogoutRedirect
	value, present := readSessionCookie(r)
	if present {
		clearSessionCookie(w, r)
	}
	var s *session
	if present {
		s, _ = h.store.load(r.Context(), value)
	}
	if s == nil {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	if err := h.store.remove(r.Context(), s, s.end(h.idle, h.lifetime)); err != nil {
		h.logger.Error("logout: session store unavailable", zap.String("request_id", requestid.From(r)), zap.Error(err))
		problem.Error(w, r, http.StatusServiceUnavailable, "session store unavailable; the session may still be active")
		return
	}
	metrics.SessionsEnded(metrics.EndLogout, 1)
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	if info, err := h.disc.get(ctx); err == nil {
		if s.RefreshToken != "" && info.revocation != "" {
			h.revoke(ctx, r, info.revocation, s.RefreshToken)
		}
		if info.endSession != "" {
			if u, err := url.Parse(info.endSession); err == nil {
				q := u.Query()
				if s.IDToken != "" {
					q.Set("id_token_hint", s.IDToken)
				}
				q.Set("client_id", h.ClientID)
				q.Set("post_logout_redirect_uri", h.absURL(r, h.PostLogoutRedirect))
				u.RawQuery = q.Encode()
				target = u.String()
			}
		}
	} else {
		h.logger.Warn("logout: identity provider unavailable; session ended locally only",
			zap.String("request_id", requestid.From(r)), zap.Error(err))
	}
	h.audit.Info("logout",
		zap.String("request_id", requestid.From(r)),
		zap.String("sub", s.Subject),
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.String("outcome", "success"))
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// revoke asks the provider to revoke the refresh token (RFC 7009). Failure
// is logged, not fatal: the session is already gone here.
func (h *Handler) revoke(ctx context.Context, r *http.Request, endpoint, token string) {
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(h.ClientID), url.QueryEscape(h.clientSecret))
	start := time.Now()
	resp, err := h.disc.client.Do(req)
	if err != nil {
		metrics.ProviderCall(metrics.CallRevocation, start, err)
		h.logger.Warn("logout: token revocation failed", zap.String("request_id", requestid.From(r)), zap.Error(err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		metrics.ProviderCall(metrics.CallRevocation, start, errRevocationRefused)
		h.logger.Warn("logout: token revocation refused", zap.String("request_id", requestid.From(r)), zap.Int("status", resp.StatusCode))
		return
	}
	metrics.ProviderCall(metrics.CallRevocation, start, nil)
}

// errRevocationRefused labels a revocation the provider answered with a
// status other than 200.
var errRevocationRefused = errors.New("token revocation refused")
