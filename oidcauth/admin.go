package oidcauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
)

func init() {
	caddy.RegisterModule(SessionAdmin{})
}

// handlers are the oidc_auth handlers of the loaded configs, for the
// session admin API.
var (
	handlersMu sync.Mutex
	handlers   = map[*Handler]struct{}{}
)

func registerHandler(h *Handler) func() {
	handlersMu.Lock()
	handlers[h] = struct{}{}
	handlersMu.Unlock()
	return func() {
		handlersMu.Lock()
		delete(handlers, h)
		handlersMu.Unlock()
	}
}

// liveHandlers lists the loaded handlers of issuer ("" = every one), in a
// stable order. Several may share a store; acting on each is safe (an
// ending recorded twice is one ending, a session removed twice counts once).
func liveHandlers(issuer string) []*Handler {
	handlersMu.Lock()
	defer handlersMu.Unlock()
	out := make([]*Handler, 0, len(handlers))
	for h := range handlers {
		if issuer == "" || h.Issuer == issuer {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].stateKey+out[i].storeID() < out[j].stateKey+out[j].storeID() })
	return out
}

// issuers lists the distinct issuers of the loaded handlers.
func issuers() []string {
	handlersMu.Lock()
	defer handlersMu.Unlock()
	var out []string
	for h := range handlers {
		if !slices.Contains(out, h.Issuer) {
			out = append(out, h.Issuer)
		}
	}
	return out
}

// storeID names the storage behind a handler's sessions, so a listing
// shows each session once however many configs share its store.
func (h *Handler) storeID() string {
	switch st := h.store.(type) {
	case memoryView:
		return fmt.Sprintf("memory %p", st.ms)
	case *redisStore:
		return "redis " + st.cfg.Name() + " " + strconv.Itoa(st.cfg.DB()) + " " + st.cfg.KeyPrefix
	}
	return h.Session.Store
}

// SessionAdmin is the session admin API in Caddy's admin endpoint, so it
// inherits its access controls (the admin listen address, origins,
// remote admin with mTLS):
//
//   - GET /bff/sessions?sub=SUB lists the user's sessions on the memory
//     and Redis stores (created, last seen, token expiry, a hash of the
//     provider's sid; never a token or a session id);
//   - DELETE /bff/sessions?sub=SUB ends all of them, on every instance
//     sharing the store or the cookie store's Redis endings;
//   - DELETE /bff/sessions?sid=SID ends one provider session's.
//
// Each call is an audit entry of the oidc_auth it acts on.
type SessionAdmin struct{}

// CaddyModule returns the Caddy module information.
func (SessionAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.bff_sessions", New: func() caddy.Module { return new(SessionAdmin) }}
}

// Routes returns the admin routes.
func (a SessionAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/bff/sessions", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// adminSession is one session as the admin API shows it.
type adminSession struct {
	Issuer      string `json:"issuer"`
	Store       string `json:"store"`
	Created     string `json:"created"`
	LastSeen    string `json:"last_seen"`
	TokenExpiry string `json:"token_expiry,omitempty"`
	SIDHash     string `json:"sid_hash,omitempty"`
}

func (a SessionAdmin) serve(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	sub, sid, issuer := q.Get("sub"), q.Get("sid"), q.Get("issuer")
	if len(sub) > 1024 || len(sid) > 1024 || len(issuer) > 2048 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("sub, sid or issuer too long")}
	}
	// A subject is unique within its provider only: with several loaded,
	// say which, or one user's DELETE would end another's sessions.
	if iss := issuers(); issuer == "" && len(iss) > 1 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("several providers are configured (%s): give issuer=", strings.Join(iss, ", "))}
	}
	switch r.Method {
	case http.MethodGet:
		if sub == "" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("GET /bff/sessions needs ?sub=")}
		}
		return a.list(w, r, issuer, sub)
	case http.MethodDelete:
		if (sub == "") == (sid == "") {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("DELETE /bff/sessions needs ?sub= or ?sid=, one of them")}
		}
		return a.end(w, r, issuer, sub, sid)
	}
	return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
}

func (SessionAdmin) list(w http.ResponseWriter, r *http.Request, issuer, sub string) error {
	out := struct {
		Sessions []adminSession `json:"sessions"`
		// Unlisted names the configs whose store cannot list sessions
		// (the cookie store keeps none); DELETE still ends them.
		Unlisted []string `json:"unlisted,omitempty"`
	}{Sessions: []adminSession{}}
	ms := func(v int64) string { return time.UnixMilli(v).UTC().Format(time.RFC3339) }
	listed := map[string]bool{}
	for _, h := range liveHandlers(issuer) {
		if id := h.storeID(); listed[id] {
			continue
		} else {
			listed[id] = true
		}
		var metas []recordMeta
		switch st := h.store.(type) {
		case memoryView:
			metas = st.ms.sessionsOf(sub)
		case *redisStore:
			var err error
			if metas, err = st.sessionsOf(r.Context(), sub); err != nil {
				h.logger.Error("session admin: store unavailable", zap.Error(err))
				return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("session store unavailable")}
			}
		default:
			out.Unlisted = append(out.Unlisted, h.Issuer+" ("+h.Session.Store+" store)")
		}
		for _, m := range metas {
			s := adminSession{Issuer: h.Issuer, Store: h.Session.Store, Created: ms(m.Created), LastSeen: ms(m.LastSeen), SIDHash: m.SID}
			if m.TokenExpiry > 0 {
				s.TokenExpiry = time.Unix(m.TokenExpiry, 0).UTC().Format(time.RFC3339)
			}
			out.Sessions = append(out.Sessions, s)
		}
		audit.Write(h.audit, audit.AdminList, r, audit.Entry{Sub: sub, Outcome: audit.Success}, zap.Int("sessions", len(metas)))
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

func (SessionAdmin) end(w http.ResponseWriter, r *http.Request, issuer, sub, sid string) error {
	total, counted := 0, true
	for _, h := range liveHandlers(issuer) {
		n, err := h.endSessionsOf(r.Context(), sub, sid)
		if err != nil {
			h.logger.Error("session admin: ending sessions failed", zap.Error(err))
			audit.Write(h.audit, audit.AdminEnd, r, audit.Entry{Sub: sub, Outcome: audit.StoreDown}, zap.Bool("by_sid", sid != ""))
			return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("session store unavailable; nothing is claimed, retry")}
		}
		if n < 0 {
			counted = false
		} else {
			total += n
			metrics.SessionsEnded(metrics.EndAdmin, n)
		}
		audit.Write(h.audit, audit.AdminEnd, r, audit.Entry{Sub: sub, Outcome: audit.Success}, zap.Bool("by_sid", sid != ""), zap.Int("sessions", n))
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"ended": total, "all_counted": counted})
}

// Interface guards
var _ caddy.AdminRouter = SessionAdmin{}
