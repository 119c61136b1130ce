package oidcauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/metrics/metricstest"
)

func TestMetrics(t *testing.T) {
	// The provider is down: discovery fails, fast.
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer idp.Close()
	raw, _ := json.Marshal(map[string]any{
		"issuer": idp.URL, "client_id": "bff",
		"session": map[string]any{"keys": []string{goodKey}},
	})
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	m, err := ctx.LoadModuleByID("http.handlers.oidc_auth", raw)
	if err != nil {
		t.Fatal(err)
	}
	h := m.(*Handler)
	h.logger, h.audit = zap.NewNop(), zap.NewNop()
	reg := ctx.GetMetricsRegistry()

	// A session sealed into a cookie, idle for longer than idle_timeout.
	sessionCookie := func(lastSeen time.Time) *http.Cookie {
		t.Helper()
		s := &session{ID: newSessionID(), Subject: "alice", Created: lastSeen.UnixMilli(), LastSeen: lastSeen.UnixMilli()}
		value, err := h.store.save(context.Background(), s, true, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return &http.Cookie{Name: sessionCookieName(httptest.NewRequest(http.MethodGet, "/", nil)), Value: value}
	}

	tests := []struct {
		name   string
		method string
		target string
		cookie *http.Cookie
		status int
		metric string
		labels []string
	}{
		{"callback without its login cookie", http.MethodGet, "/auth/callback?state=abc&code=xyz", nil,
			http.StatusBadRequest, "caddy_bff_logins_total", []string{"outcome", "unknown_state"}},
		{"login with the provider down", http.MethodGet, "/auth/login", nil,
			http.StatusServiceUnavailable, "caddy_bff_provider_request_duration_seconds", []string{"call", "discovery", "result", "error"}},
		{"idle session", http.MethodGet, "/api", sessionCookie(time.Now().Add(-time.Hour)),
			http.StatusUnauthorized, "caddy_bff_sessions_ended_total", []string{"reason", "expired"}},
		{"logout", http.MethodPost, "/auth/logout", sessionCookie(time.Now()),
			http.StatusSeeOther, "caddy_bff_sessions_ended_total", []string{"reason", "logout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := metricstest.Value(t, reg, tt.metric, tt.labels...)
			r := httptest.NewRequest(tt.method, "http://portal.example"+tt.target, nil)
			if tt.cookie != nil {
				r.AddCookie(tt.cookie)
			}
			r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, &caddyhttp.Server{})
			w := httptest.NewRecorder()
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
				w.WriteHeader(http.StatusNoContent)
				return nil
			})
			if err := h.ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			if got := metricstest.Value(t, reg, tt.metric, tt.labels...) - before; got != 1 {
				t.Errorf("%s%v moved by %v, want 1", tt.metric, tt.labels, got)
			}
		})
	}
}
