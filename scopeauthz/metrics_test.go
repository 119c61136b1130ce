package scopeauthz

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/metrics/metricstest"
)

func TestMetrics(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	m, err := ctx.LoadModuleByID("http.handlers.scope_authz", json.RawMessage(configs["portal"]))
	if err != nil {
		t.Fatal(err)
	}
	h := m.(*Handler)
	h.logger, h.audit = zap.NewNop(), zap.NewNop()
	reg := ctx.GetMetricsRegistry()

	reader := &user{sub: "alice@example.com", scopes: []string{"recipes:read"}}
	tests := []struct {
		name            string
		method, target  string
		u               *user
		outcome, reason string
	}{
		{"rule allows", http.MethodGet, "/api/recipes/1", reader, "allow", "rule"},
		{"rule denies", http.MethodDelete, "/api/recipes/1", reader, "deny", "rule"},
		{"no rule", http.MethodGet, "/api/other", reader, "deny", "default"},
		{"ambiguous path", http.MethodGet, "/api/recipes/..%2fadmin", reader, "deny", "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := []string{"outcome", tt.outcome, "reason", tt.reason}
			before := metricstest.Value(t, reg, "caddy_bff_authz_decisions_total", labels...)
			serve(t, h, newRequest(t, tt.method, tt.target, tt.u))
			if got := metricstest.Value(t, reg, "caddy_bff_authz_decisions_total", labels...) - before; got != 1 {
				t.Errorf("authz_decisions_total%v moved by %v, want 1", labels, got)
			}
		})
	}
}
