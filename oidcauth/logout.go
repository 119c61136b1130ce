package oidcauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"

	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// serveLogout ends the session: POST only and same-origin only, so a link
// or a cross-site form cannot log a user out. It ends the session
// everywhere, clears the cookies, revokes the refresh token (RFC 7009) and
// sends the browser to the provider's end_session_endpoint (RP-Initiated
// Logout 1.0) with an auto-submitted POST form, or to
// post_logout_redirect. When the store cannot record the ending it answers
// 503 and claims nothing: no cookie cleared, nothing revoked, no redirect;
// the session still works, and a retry completes the logout.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		problem.Error(w, r, http.StatusMethodNotAllowed, "logout takes POST")
		return
	}
	if err := h.checkOrigin(r); err != nil {
		problem.Error(w, r, http.StatusForbidden, "cross-origin request refused")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	value, present := readSessionCookie(r)
	var s *session
	if present {
		var err error
		s, err = h.store.load(r.Context(), value)
		if err != nil && !errors.Is(err, errNoSession) {
			h.logStoreFailure(r, "logout", err)
			h.storeUnavailable(w, r, err)
			return
		}
	}
	if s != nil {
		if err := h.endSession(r.Context(), s, metrics.EndLogout); err != nil {
			h.logStoreFailure(r, "logout", err)
			h.storeUnavailable(w, r, err)
			return
		}
	}
	// From here on the session is over, as the response says.
	// Clear-Site-Data drops anything the page cached for this user.
	w.Header().Set("Clear-Site-Data", `"cache"`)
	if present {
		clearSessionCookie(w, r)
	}
	if s == nil {
		http.Redirect(w, r, h.PostLogoutRedirect, http.StatusSeeOther)
		return
	}
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	info, err := h.disc.get(ctx)
	if err != nil {
		h.logger.Warn("logout: identity provider unavailable; session ended here only",
			zap.String("request_id", requestid.From(r)), zap.Error(err))
	}
	if err == nil && s.RefreshToken != "" && info.revocation != "" {
		h.revoke(ctx, r, info, s.RefreshToken)
	}
	audit.Write(h.audit, audit.Logout, r, audit.Entry{Sub: s.Subject, Outcome: audit.Success})
	if err != nil || info.endSession == "" {
		http.Redirect(w, r, h.PostLogoutRedirect, http.StatusSeeOther)
		return
	}
	h.writeEndSession(w, r, info.endSession, s)
}

// endSessionScript submits the end-session form; the page's CSP admits
// this script only, by its hash.
const endSessionScript = `document.forms[0].submit()`

var (
	endSessionCSP = func() string {
		sum := sha256.Sum256([]byte(endSessionScript))
		return "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
			"'; base-uri 'none'; frame-ancestors 'none'"
	}()
	endSessionPage = template.Must(template.New("end-session").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Signing out</title></head>
<body><form method="post" action="{{.Action}}">
{{- range .Fields}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end -}}
<noscript><p>You are signed out of this site. <button type="submit">Finish signing out at the identity provider</button></p></noscript></form>
<script>` + endSessionScript + `</script></body></html>
`))
)

type formField struct{ Name, Value string }

// writeEndSession sends the browser to the provider's end_session_endpoint
// (RP-Initiated Logout 1.0 §2) with an auto-submitted POST form, which the
// specification lets the RP use and every OP must accept: the ID token
// travels as id_token_hint in the form's body, never in a URL, so neither
// Caddy's access log (it records our Location headers) nor any proxy or
// browser history on the way records it. client_id and
// post_logout_redirect_uri come along.
func (h *Handler) writeEndSession(w http.ResponseWriter, r *http.Request, endpoint string, s *session) {
	fields := []formField{{"client_id", h.ClientID}, {"post_logout_redirect_uri", h.absURL(r, h.PostLogoutRedirect)}}
	if s.IDToken != "" {
		fields = append([]formField{{"id_token_hint", s.IDToken}}, fields...)
	}
	var body bytes.Buffer
	if err := endSessionPage.Execute(&body, struct {
		Action string
		Fields []formField
	}{endpoint, fields}); err != nil {
		h.logger.Error("logout: rendering the end-session page failed", zap.String("request_id", requestid.From(r)), zap.Error(err))
		http.Redirect(w, r, h.PostLogoutRedirect, http.StatusSeeOther)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", endSessionCSP)
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body.Bytes())
}

// revoke asks the provider to revoke the refresh token (RFC 7009). Failure
// is logged, not fatal: the session is already gone here.
func (h *Handler) revoke(ctx context.Context, r *http.Request, info *providerInfo, token string) {
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	status, _, err := h.client.post(ctx, metrics.CallRevocation, info.revocation, info.auth, form)
	if err != nil {
		h.logger.Warn("logout: token revocation failed", zap.String("request_id", requestid.From(r)), zap.Error(err))
		return
	}
	if status != http.StatusOK {
		h.logger.Warn("logout: token revocation refused", zap.String("request_id", requestid.From(r)), zap.Int("status", status))
	}
}
