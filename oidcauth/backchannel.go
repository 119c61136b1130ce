package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

const (
	// backchannelEvent is the event a logout token must carry
	// (OpenID Connect Back-Channel Logout 1.0 §2.4).
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
	// maxLogoutBody bounds the POST body; a logout token is a few KiB.
	maxLogoutBody = 64 << 10
	// logoutTokenMaxAge bounds how old (iat) a logout token without exp may
	// be, and how far in the future its iat may lie (clock skew).
	logoutTokenMaxAge = 5 * time.Minute
	clockSkew         = time.Minute
)

// serveBackchannel ends sessions on the provider's request (OpenID Connect
// Back-Channel Logout 1.0): it verifies the logout_token (signature via
// the provider's JWKS, iss, aud, iat/exp, the logout event, no nonce, a sid
// or sub, an unseen jti) and ends every session with that sid, or every
// session of that sub. Anything invalid is 400 and ends nothing.
func (h *Handler) serveBackchannel(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		problem.Error(w, r, http.StatusMethodNotAllowed, "back-channel logout takes POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		problem.Error(w, r, http.StatusBadRequest, "malformed logout request")
		return
	}
	raw := r.PostForm["logout_token"]
	if len(raw) != 1 || raw[0] == "" {
		problem.Error(w, r, http.StatusBadRequest, "logout_token is required, once")
		return
	}
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	info, err := h.disc.get(ctx)
	if err != nil {
		h.providerUnavailable(w, r, "back-channel logout", err)
		return
	}
	lt, err := h.verifyLogoutToken(r, info, raw[0])
	if errors.Is(err, errStoreDown) {
		h.logger.Error("back-channel logout: session store unavailable", zap.String("request_id", requestid.From(r)), zap.Error(err))
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "session store unavailable; retry", RetryAfter: 5})
		return
	}
	if err != nil {
		h.logger.Debug("logout token rejected", zap.String("request_id", requestid.From(r)), zap.Error(err))
		audit.Write(h.audit, audit.Backchannel, r, audit.Entry{Outcome: audit.Rejected}, zap.Bool("by_sid", false))
		problem.Error(w, r, http.StatusBadRequest, "invalid logout_token")
		return
	}

	// The endings must outlive the client's request: the provider waits
	// for our answer, but a half-done logout helps nobody.
	sctx := context.WithoutCancel(r.Context())
	n, err := h.endSessionsOf(sctx, lt.Subject, lt.SID)
	if err == nil {
		// Only now is the token spent: had the endings failed, the
		// provider's retry of this token must work.
		err = h.ends.recordJTI(sctx, lt.jti, lt.jtiUntil)
	}
	if err != nil {
		// The provider retries on a non-200: say so rather than claim
		// sessions ended that may not have.
		h.logger.Error("back-channel logout: session store unavailable", zap.String("request_id", requestid.From(r)), zap.Error(err))
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "session store unavailable; retry", RetryAfter: 5})
		return
	}
	h.logger.Debug("back-channel logout", zap.String("request_id", requestid.From(r)), zap.Int("sessions_ended", n))
	if n < 0 {
		// The cookie store cannot count the sessions a logout token ends.
		n = 1
	}
	metrics.SessionsEnded(metrics.EndBackchannel, n)
	audit.Write(h.audit, audit.Backchannel, r, audit.Entry{Sub: lt.Subject, Outcome: audit.Success}, zap.Bool("by_sid", lt.SID != ""))
	w.WriteHeader(http.StatusOK)
}

// endSessionsOf ends every session of sub, or of the provider session sid
// when it is set, on every instance: recorded among the endings (the
// cookie store's copies die by them) and removed from a server-side store.
// It returns how many sessions the store held, or -1 when the store cannot
// tell (the cookie store).
func (h *Handler) endSessionsOf(ctx context.Context, sub, sid string) (int, error) {
	now := h.now()
	until := now.Add(h.lifetime)
	var err error
	if sid != "" {
		err = h.ends.endSID(ctx, sid, until)
	} else {
		err = h.ends.endSub(ctx, sub, now, until)
	}
	n := -1
	switch st := h.store.(type) {
	case memoryView:
		n = st.ms.removeSessions(sub, sid)
	case *redisStore:
		var rerr error
		n, rerr = st.removeSessions(ctx, sub, sid)
		err = errors.Join(err, rerr)
	}
	return n, err
}

type logoutToken struct {
	Subject string
	SID     string
	// jti is the replay key (issuer and jti), to record until jtiUntil
	// once the logout is done.
	jti      string
	jtiUntil time.Time
}

func (h *Handler) verifyLogoutToken(r *http.Request, info *providerInfo, raw string) (*logoutToken, error) {
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	// Logout tokens are JWTs from the same issuer and keys as ID tokens;
	// exp is checked below, since §2.4 lets older providers omit it.
	v := oidc.NewVerifier(h.Issuer, info.keys, &oidc.Config{ClientID: h.ClientID, SupportedSigningAlgs: info.algs,
		SkipExpiryCheck: true, Now: h.now})
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var c struct {
		Sub    string                     `json:"sub"`
		SID    string                     `json:"sid"`
		JTI    string                     `json:"jti"`
		Iat    *float64                   `json:"iat"`
		Exp    *float64                   `json:"exp"`
		Nonce  *json.RawMessage           `json:"nonce"`
		Events map[string]json.RawMessage `json:"events"`
	}
	if err := tok.Claims(&c); err != nil {
		return nil, err
	}
	now := h.now()
	switch {
	case c.Nonce != nil:
		return nil, errors.New("logout token carries a nonce")
	case c.Sub == "" && c.SID == "":
		return nil, errors.New("logout token has neither sub nor sid")
	case c.JTI == "" || len(c.JTI) > 256:
		return nil, errors.New("logout token has no usable jti")
	case c.Iat == nil:
		return nil, errors.New("logout token has no iat")
	}
	iat := time.Unix(int64(*c.Iat), 0)
	if iat.After(now.Add(clockSkew)) {
		return nil, errors.New("logout token issued in the future")
	}
	expires := iat.Add(logoutTokenMaxAge)
	if c.Exp != nil {
		expires = time.Unix(int64(*c.Exp), 0)
	}
	if !now.Before(expires.Add(clockSkew)) {
		return nil, errors.New("logout token expired")
	}
	ev, ok := c.Events[backchannelEvent]
	if !ok {
		return nil, errors.New("logout token lacks the back-channel logout event")
	}
	var obj map[string]any
	if err := json.Unmarshal(ev, &obj); err != nil {
		return nil, fmt.Errorf("logout event is not a JSON object: %w", err)
	}
	jti := tok.Issuer + "\x00" + c.JTI
	seen, err := h.ends.jtiSeen(ctx, jti)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	if seen {
		return nil, errors.New("logout token replayed")
	}
	return &logoutToken{Subject: c.Sub, SID: c.SID, jti: jti, jtiUntil: expires.Add(clockSkew)}, nil
}
