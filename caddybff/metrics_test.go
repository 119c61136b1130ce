package caddybff

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/metrics/metricstest"
)

// loadWithRegistry loads a module and returns the metrics registry of its
// config.
func loadWithRegistry(t *testing.T, id string, cfg any) (any, *prometheus.Registry) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	m, err := ctx.LoadModuleByID(id, raw)
	if err != nil {
		t.Fatalf("loading %s: %v", id, err)
	}
	return m, ctx.GetMetricsRegistry()
}

func TestTokenMetrics(t *testing.T) {
	m, reg := loadWithRegistry(t, "http.handlers.bff_token", mintConfig(pkcs8PEM(t, keysOnce().ed)))
	tok := m.(*Token)
	tok.logger = zap.NewNop()
	hit := []string{"mode", "mint", "result", "hit"}
	miss := []string{"mode", "mint", "result", "miss"}
	hits, misses := metricstest.Value(t, reg, "caddy_bff_token_cache_total", hit...), metricstest.Value(t, reg, "caddy_bff_token_cache_total", miss...)

	s := &session{key: "sess-metrics", subject: "alice"}
	for range 3 {
		serve(t, tok, newRequest(t, http.MethodGet, "https://portal.example/api", s))
	}
	if got := metricstest.Value(t, reg, "caddy_bff_token_cache_total", miss...) - misses; got != 1 {
		t.Errorf("misses moved by %v, want 1", got)
	}
	if got := metricstest.Value(t, reg, "caddy_bff_token_cache_total", hit...) - hits; got != 2 {
		t.Errorf("hits moved by %v, want 2", got)
	}

	// Exchange mode: a session without an access token misses the cache
	// and makes no exchange.
	m, reg = loadWithRegistry(t, "http.handlers.bff_token", map[string]any{"mode": "exchange", "audience": "orders-api"})
	xt := m.(*Token)
	xt.logger = zap.NewNop()
	xmiss := []string{"mode", "exchange", "result", "miss"}
	before := metricstest.Value(t, reg, "caddy_bff_token_cache_total", xmiss...)
	exchanges := 0.0
	for _, r := range []string{"success", "refused", "unavailable"} {
		exchanges += metricstest.Value(t, reg, "caddy_bff_token_exchanges_total", "result", r)
	}
	w, _ := serve(t, xt, newRequest(t, http.MethodGet, "https://portal.example/api", s))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", w.Code)
	}
	if got := metricstest.Value(t, reg, "caddy_bff_token_cache_total", xmiss...) - before; got != 1 {
		t.Errorf("exchange misses moved by %v, want 1", got)
	}
	after := 0.0
	for _, r := range []string{"success", "refused", "unavailable"} {
		after += metricstest.Value(t, reg, "caddy_bff_token_exchanges_total", "result", r)
	}
	if after != exchanges {
		t.Errorf("token_exchanges_total moved by %v without an exchange", after-exchanges)
	}
}

func TestRateLimitMetrics(t *testing.T) {
	m, reg := loadWithRegistry(t, "http.handlers.bff_rate_limit", map[string]any{"rate": "1r/h", "burst": 1, "zone": "metrics-test"})
	rl := m.(*RateLimit)
	labels := []string{"zone", "metrics-test"}
	before := metricstest.Value(t, reg, "caddy_bff_rate_limit_rejections_total", labels...)
	for i, want := range []int{http.StatusNoContent, http.StatusTooManyRequests, http.StatusTooManyRequests} {
		if w, _ := rlServe(t, rl, rlReq{user: "alice"}); w.Code != want {
			t.Fatalf("request %d: status %d, want %d", i+1, w.Code, want)
		}
	}
	if got := metricstest.Value(t, reg, "caddy_bff_rate_limit_rejections_total", labels...) - before; got != 2 {
		t.Errorf("rejections moved by %v, want 2", got)
	}
}
