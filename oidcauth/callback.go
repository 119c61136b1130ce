package oidcauth

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// maxParamLen bounds callback parameters; providers use far less.
const maxParamLen = 2048

// errorCode matches an RFC 6749 error code, the only part of a provider's
// error we repeat (never its free-text description).
var errorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// claims dropped from the session: they describe the ID token, not the user,
// and would only grow the cookie.
var tokenOnlyClaims = []string{"nonce", "at_hash", "c_hash", "exp", "iat", "nbf", "auth_time", "azp", "aud", "iss", "jti", "acr", "amr", "sid"}

// serveCallback completes the login: it checks state against the login
// cookie, exchanges the code with the PKCE verifier, verifies the ID token
// (signature, issuer, audience, expiry, nonce) and creates a fresh session.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		problem.Error(w, r, http.StatusMethodNotAllowed, "callback takes GET")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	if len(state) > maxParamLen || len(code) > maxParamLen || len(q["state"]) > 1 || len(q["code"]) > 1 {
		problem.Error(w, r, http.StatusBadRequest, "malformed callback")
		return
	}
	if state == "" {
		problem.Error(w, r, http.StatusBadRequest, "callback without state")
		return
	}
	cookieName := loginCookieName(r, state)
	c, err := r.Cookie(cookieName)
	if err != nil {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.UnknownState})
		problem.Error(w, r, http.StatusBadRequest, "unknown or expired login; start again")
		return
	}
	// One use only: whatever happens next, this login is over.
	expireCookie(w, cookieName, isHTTPS(r))
	pt, err := h.keys.open(purposeLogin, c.Value)
	var ls loginState
	if err != nil || json.Unmarshal(pt, &ls) != nil ||
		subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) != 1 {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.BadState})
		problem.Error(w, r, http.StatusBadRequest, "unknown or expired login; start again")
		return
	}
	if h.now().Unix() > ls.Expires {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.Expired})
		problem.Error(w, r, http.StatusBadRequest, "login took too long; start again")
		return
	}
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	info, err := h.disc.get(ctx)
	if err != nil {
		h.providerUnavailable(w, r, "callback", err)
		return
	}
	// RFC 9207: the response names the issuer that sent it, when present
	// or when the provider says it always does; a response from another
	// issuer (a mix-up attack) is refused, error responses included.
	if iss, ok := q["iss"]; ok || info.issParameter {
		if len(iss) != 1 || iss[0] != h.Issuer {
			audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.BadIss})
			problem.Error(w, r, http.StatusBadRequest, "the authorization response is not from the configured issuer")
			return
		}
	}
	if e := q.Get("error"); e != "" {
		if !errorCode.MatchString(e) {
			e = "invalid"
		}
		audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.ProviderError, Detail: e})
		problem.Error(w, r, http.StatusUnauthorized, "the identity provider refused the login ("+e+")")
		return
	}
	if code == "" {
		problem.Error(w, r, http.StatusBadRequest, "callback without code")
		return
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {h.absURL(r, h.CallbackPath)},
		"code_verifier": {ls.Verifier},
	}
	h.addResources(form)
	tok, err := h.client.token(ctx, metrics.CallCodeExchange, info.tokenURL, info.auth, form)
	if err != nil {
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok && re.Response != nil && re.Response.StatusCode < 500 {
			audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.CodeRejected, Detail: safeCode(re.ErrorCode)})
			problem.Error(w, r, http.StatusUnauthorized, "the identity provider rejected the login; start again")
			return
		}
		h.providerUnavailable(w, r, "code exchange", err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.NoIDToken})
		problem.Error(w, r, http.StatusUnauthorized, "the identity provider returned no ID token")
		return
	}
	idt, err := info.verifier.Verify(ctx, rawID)
	if err != nil {
		h.logger.Warn("login: ID token rejected", zap.String("request_id", requestid.From(r)), zap.Error(err))
		audit.Write(h.audit, audit.Login, r, audit.Entry{Outcome: audit.BadIDToken})
		problem.Error(w, r, http.StatusUnauthorized, "the ID token did not verify")
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(ls.Nonce)) != 1 {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Sub: idt.Subject, Outcome: audit.BadNonce})
		problem.Error(w, r, http.StatusUnauthorized, "the ID token did not verify")
		return
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil && idt.AccessTokenHash != "" {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Sub: idt.Subject, Outcome: audit.BadAtHash})
		problem.Error(w, r, http.StatusUnauthorized, "the access token does not belong to the ID token")
		return
	}
	var idClaims map[string]any
	if err := idt.Claims(&idClaims); err != nil {
		problem.Error(w, r, http.StatusUnauthorized, "the ID token did not verify")
		return
	}
	acr, _ := idClaims["acr"].(string)
	authTime := numericDate(idClaims["auth_time"])
	if authTime.After(h.now().Add(authTimeLeeway)) {
		// A login from the future would meet every max_age for as long
		// as it is ahead: not a time we can use.
		authTime = time.Time{}
	}
	// Step-up: a provider that ignored acr_values or max_age must not
	// satisfy them; the browser's current session, if any, stays as it was.
	if !h.stepUpDelivered(&ls, acr, authTime) {
		audit.Write(h.audit, audit.Login, r, audit.Entry{Sub: idt.Subject, Outcome: audit.StepUpNotMet})
		problem.Write(w, r, problem.Details{Status: http.StatusUnauthorized, Error: "insufficient_user_authentication",
			Detail: "the identity provider did not perform the authentication this login asked for (acr_values or max_age)"})
		return
	}

	// No fixation: whatever session the browser had ends, and the new one
	// gets a fresh random id. An ending that cannot be recorded fails the
	// login: a copy of the old cookie would live on.
	if old, present := readSessionCookie(r); present {
		s, err := h.store.load(r.Context(), old)
		if err == nil {
			err = h.endSession(r.Context(), s, metrics.EndReplaced)
		}
		if err != nil && !errors.Is(err, errNoSession) {
			h.logStoreFailure(r, "login", err)
			h.storeUnavailable(w, r, err)
			return
		}
	}
	now := h.now()
	s := &session{
		ID:           newSessionID(),
		Subject:      idt.Subject,
		Claims:       h.userClaims(ctx, r, info, idClaims, tok),
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		IDToken:      rawID,
		Created:      now.UnixMilli(),
		LastSeen:     now.UnixMilli(),
		Checked:      now.UnixMilli(),
	}
	if sid, ok := idClaims["sid"].(string); ok {
		s.SID = sid
	}
	if len(acr) <= 128 {
		s.ACR = acr
	}
	if !authTime.IsZero() {
		s.AuthTime = authTime.Unix()
	}
	s.setTokenExpiry(tok)
	s.key = hashID(s.ID)
	if s.SID != "" {
		// Before the session exists: a front-channel logout for this sid
		// must find it issued, or it would be ignored.
		if err := h.ends.issueSID(r.Context(), s.SID, now.Add(h.lifetime)); err != nil {
			h.logStoreFailure(r, "login", err)
			h.storeUnavailable(w, r, err)
			return
		}
	}
	value, err := h.store.save(r.Context(), s, true, s.end(h.idle, h.lifetime))
	if err != nil {
		h.logStoreFailure(r, "login", err)
		h.storeUnavailable(w, r, err)
		return
	}
	writeSessionCookie(w, r, value, h.lifetime)
	metrics.SessionCreated()
	h.limitSessions(r, s)
	audit.Write(h.audit, audit.Login, r, audit.Entry{Sub: s.Subject, Outcome: audit.Success})
	http.Redirect(w, r, ls.ReturnTo, http.StatusFound)
}

// stepUpDelivered reports whether the ID token's acr and auth_time meet
// what the login asked for: an acr among (or ranked at least as strong as
// one of) its acr_values, and an authentication no older than max_age
// before the login started (OpenID Connect Core §3.1.2.1: auth_time is
// then required).
func (h *Handler) stepUpDelivered(ls *loginState, acr string, authTime time.Time) bool {
	if len(ls.ACR) > 0 && !h.acrSatisfies(acr, ls.ACR) {
		return false
	}
	if ls.MaxAge != nil {
		if authTime.IsZero() {
			return false
		}
		oldest := ls.started().Add(-time.Duration(*ls.MaxAge)*time.Second - authTimeLeeway)
		if authTime.Before(oldest) {
			return false
		}
	}
	return true
}

// numericDate reads a JWT NumericDate claim (RFC 7519 §2: seconds since
// the epoch, possibly fractional); anything else, or a value before 2000
// or past 9999, is the zero time.
func numericDate(v any) time.Time {
	f, ok := v.(float64)
	if !ok || f < 946684800 || f > 253402300799 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}

// userClaims merges the ID token's claims with UserInfo (the ID token wins,
// the subjects must match) and records the granted scopes when no claim
// carries them. A UserInfo failure is logged and does not fail the login.
func (h *Handler) userClaims(ctx context.Context, r *http.Request, info *providerInfo, idClaims map[string]any, tok *oauth2.Token) map[string]any {
	claims := make(map[string]any, len(idClaims)+4)
	for k, v := range idClaims {
		claims[k] = v
	}
	for _, k := range tokenOnlyClaims {
		delete(claims, k)
	}
	mode := cmp.Or(h.UserInfo, "auto")
	if info.userinfo != "" && mode != "off" && (mode == "on" || !h.disc.userinfoRefused.Load()) {
		start := time.Now()
		sctx, span := providerSpan(ctx, metrics.CallUserInfo)
		ui, err := info.oidc.UserInfo(sctx, oauth2.StaticTokenSource(tok))
		metrics.ProviderCall(metrics.CallUserInfo, start, err)
		switch {
		case err == nil:
			endProviderSpan(span, "ok", 0)
		case userInfoRefused(err):
			endProviderSpan(span, "refused", 0)
		default:
			endProviderSpan(span, "unavailable", 0)
		}
		switch {
		case err != nil && mode == "auto" && userInfoRefused(err):
			if h.disc.userinfoRefused.CompareAndSwap(false, true) {
				h.logger.Warn("the userinfo endpoint refuses the access token; not calling it again for this provider "+
					"(userinfo auto; the ID token's claims are used)",
					zap.String("request_id", requestid.From(r)), zap.Error(userInfoError(err)))
			}
		case err != nil:
			h.logger.Warn("userinfo unavailable; using the ID token's claims",
				zap.String("request_id", requestid.From(r)), zap.Error(userInfoError(err)))
		case ui.Subject != idClaims["sub"]:
			h.logger.Warn("userinfo subject differs from the ID token's; ignored", zap.String("request_id", requestid.From(r)))
		default:
			var extra map[string]any
			if err := ui.Claims(&extra); err == nil {
				for k, v := range extra {
					if _, ok := claims[k]; !ok && !slices.Contains(tokenOnlyClaims, k) {
						// acr, auth_time and the like describe the
						// verified login (the ID token's), never UserInfo's.
						claims[k] = v
					}
				}
			}
		}
	}
	if _, ok := claims["scope"]; !ok {
		if granted, ok := tok.Extra("scope").(string); ok && granted != "" {
			claims["scope"] = granted
		} else {
			// RFC 6749 §5.1: an omitted scope means the requested one.
			claims["scope"] = strings.Join(h.Scopes, " ")
		}
	}
	return claims
}

func (h *Handler) providerUnavailable(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.logger.Error("identity provider unavailable", zap.String("request_id", requestid.From(r)),
		zap.String("during", what), zap.Error(scrub(err)))
	problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
		Detail: "identity provider unavailable; try again shortly", RetryAfter: 5})
}

// scrub keeps an oauth2 error's code but drops its body, which may echo
// tokens or codes.
func scrub(err error) error {
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return &scrubbedError{code: safeCode(re.ErrorCode), status: status}
	}
	return err
}

type scrubbedError struct {
	code   string
	status int
}

func (e *scrubbedError) Error() string {
	return "token endpoint answered " + http.StatusText(e.status) + " (" + e.code + ")"
}

// userInfoError keeps what went wrong with a UserInfo call but not the
// provider's answer: go-oidc puts the whole body of a non-200 answer (and
// the server's own reason phrase) in its error, and a page that echoes the
// request would put the access token into our log.
func userInfoError(err error) error {
	if status := userInfoStatus(err); status != "" {
		return errors.New("userinfo endpoint answered " + status)
	}
	return err
}

// userInfoRefused reports whether a UserInfo error is the endpoint
// refusing the token (401 or 403), not an outage.
func userInfoRefused(err error) bool {
	status := userInfoStatus(err)
	return status == "401" || status == "403"
}

// userInfoStatus is the HTTP status go-oidc puts first in the error of a
// non-200 UserInfo answer ("401 Unauthorized: <body>"), or "" for other
// errors (network, decoding).
func userInfoStatus(err error) string {
	msg := err.Error()
	if len(msg) >= 4 && msg[3] == ' ' && '1' <= msg[0] && msg[0] <= '5' &&
		'0' <= msg[1] && msg[1] <= '9' && '0' <= msg[2] && msg[2] <= '9' {
		return msg[:3]
	}
	return ""
}

func safeCode(c string) string {
	if errorCode.MatchString(c) {
		return c
	}
	return "unknown"
}

var _ = oidc.Nonce

// limitSessions ends the user's oldest sessions beyond
// max_sessions_per_user once a login added one. A failure is logged: the
// new session stands, the limit waits for the next login.
func (h *Handler) limitSessions(r *http.Request, s *session) {
	max := h.Session.MaxPerUser
	if max <= 0 {
		return
	}
	var n int
	var err error
	switch st := h.store.(type) {
	case memoryView:
		n = st.ms.trimSessions(s.Subject, max)
	case *redisStore:
		n, err = st.trimSessions(context.WithoutCancel(r.Context()), s.Subject, max)
	}
	if err != nil {
		h.logStoreFailure(r, "max_sessions_per_user", err)
		return
	}
	metrics.SessionsEnded(metrics.EndLimit, n)
}
