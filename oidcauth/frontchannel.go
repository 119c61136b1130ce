package oidcauth

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// maxSIDLen bounds a front-channel sid: providers use a UUID or a few
// dozen characters, and every accepted sid is remembered until the
// sessions it could name expire.
const maxSIDLen = 256

// frontchannelPage is what the provider's (hidden) iframe shows: no
// script, nothing to load.
const frontchannelPage = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed out</title></head>" +
	"<body><p>Signed out</p></body></html>\n"

// serveFrontchannel ends sessions on the provider's request through the
// browser (OpenID Connect Front-Channel Logout 1.0 §2): the provider's
// logout page frames this URI with iss and sid. iss must be our issuer
// and sid is required (we register frontchannel_logout_session_required;
// without it, §3 leaves the RP nothing to end but the cookie of a frame
// that may not even carry one). Every session with that sid ends on
// every instance, as a back-channel logout by sid does.
//
// The request is not signed, as the specification has it: anyone who
// knows a provider sid can end its sessions; a sid is too long to guess,
// and the gateway never shows one.
func (h *Handler) serveFrontchannel(w http.ResponseWriter, r *http.Request) {
	// §2: no-cache, no-store, and Pragma for HTTP/1.0 caches.
	w.Header().Set("Cache-Control", "no-cache, no-store")
	w.Header().Set("Pragma", "no-cache")
	// GET only: HEAD is a safe method that link checkers and previews
	// send, and must not end anything.
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		problem.Error(w, r, http.StatusMethodNotAllowed, "front-channel logout takes GET")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		problem.Error(w, r, http.StatusBadRequest, "malformed front-channel logout query")
		return
	}
	iss, sid := q["iss"], q["sid"]
	var why, detail string
	switch {
	case len(iss) != 1 || len(sid) != 1:
		why, detail = "missing", "iss and sid are required, once each"
	case len(iss[0]) > maxParamLen || iss[0] != h.Issuer:
		why, detail = "bad_iss", "iss is not this site's provider"
	case sid[0] == "" || len(sid[0]) > maxSIDLen:
		why, detail = "bad_sid", "sid must be 1 to "+strconv.Itoa(maxSIDLen)+" bytes"
	}
	if why != "" {
		h.logger.Debug("front-channel logout refused", zap.String("request_id", requestid.From(r)), zap.String("reason", why))
		audit.Write(h.audit, audit.Frontchannel, r, audit.Entry{Outcome: audit.Rejected, Detail: why})
		problem.Error(w, r, http.StatusBadRequest, detail)
		return
	}

	// Only a sid a login here received: anyone can send this request, and
	// every sid it ends is remembered until its sessions would have
	// ended, so forged ones must not be stored (nor make the memory store
	// scan its sessions). An unknown sid gets the same page: nothing of
	// ours had it.
	ctx := context.WithoutCancel(r.Context()) // the endings must outlive the frame
	issued, err := h.ends.sidIssued(ctx, sid[0])
	n := 0
	if err == nil && issued {
		n, err = h.endSessionsOf(ctx, "", sid[0])
	}
	if err != nil {
		// Claim nothing: the provider's page shows a failed frame, and
		// reloading it retries.
		h.logger.Error("front-channel logout: session store unavailable", zap.String("request_id", requestid.From(r)), zap.Error(err))
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "session store unavailable; retry", RetryAfter: 5})
		return
	}
	h.logger.Debug("front-channel logout", zap.String("request_id", requestid.From(r)), zap.Bool("issued_here", issued), zap.Int("sessions_ended", n))
	if n < 0 {
		// The cookie store cannot count the sessions a sid ends.
		n = 1
	}
	if issued {
		metrics.SessionsEnded(metrics.EndFrontchannel, n)
		audit.Write(h.audit, audit.Frontchannel, r, audit.Entry{Outcome: audit.Success})
	} else {
		audit.Write(h.audit, audit.Frontchannel, r, audit.Entry{Outcome: audit.Rejected, Detail: "unknown_sid"})
	}

	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(len(frontchannelPage)))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	// The provider's logout page frames us; no one else may (§2: the RP
	// renders in an iframe, so no X-Frame-Options DENY here).
	hd.Set("Content-Security-Policy", "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors "+h.providerOrigin())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(frontchannelPage))
}

// providerOrigin is the issuer's origin, scheme://host[:port], as a CSP
// source expression; 'none' (nobody may frame us) for a host a source
// expression cannot hold, rather than let `;` or `,` add directives.
func (h *Handler) providerOrigin() string {
	u, err := url.Parse(h.Issuer)
	if err != nil || u.Host == "" {
		return "'none'"
	}
	host := strings.ToLower(u.Host)
	// CSP host-source has no IP literals in brackets: an IPv6 issuer
	// cannot be named, and so may not frame us (Provision warns).
	if strings.ContainsFunc(host, func(c rune) bool {
		return !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.ContainsRune(".-:", c))
	}) {
		return "'none'"
	}
	return strings.ToLower(u.Scheme) + "://" + host
}
