package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// Issue 13, item 4: bff_health answers 200 while the provider's discovery
// succeeded and every Redis answers, 503 naming what is down otherwise;
// the gauges follow; liveness (respond) never depends on either.
func TestReadiness(t *testing.T) {
	rd := harness.StartRedis(t)
	g := startGW(t, gwOpts{
		store:       "redis",
		sessionMore: redisBlock(rd.Addr()),
		extraOIDC:   "public /metrics /ready /healthz",
		siteMore:    "handle /metrics {\n\t\tmetrics\n\t}\n\thandle /ready {\n\t\tbff_health\n\t}\n\thandle /healthz {\n\t\trespond 200\n\t}",
	})
	ready := func() resp {
		return do(t, bare(), "GET", g.base+"/ready", map[string]string{"Accept": "application/json"})
	}
	gauge := func(name string) string {
		t.Helper()
		body := get(t, bare(), g.base+"/metrics").body
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, name+"{") {
				return line[strings.LastIndexByte(line, ' ')+1:]
			}
		}
		return "absent"
	}

	r := ready()
	if r.StatusCode != 200 || !strings.Contains(r.body, `"status":"ready"`) || !strings.Contains(r.body, `"redis `+rd.Addr()+`":"up"`) ||
		!strings.Contains(r.body, `"provider `+g.op.Issuer()+`":"up"`) || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("ready: %d %s", r.StatusCode, r.body)
	}
	if gauge("caddy_bff_provider_up") != "1" || gauge("caddy_bff_redis_up") != "1" {
		t.Fatalf("gauges: provider %s, redis %s", gauge("caddy_bff_provider_up"), gauge("caddy_bff_redis_up"))
	}

	rd.Stop()
	r = ready()
	if r.StatusCode != 503 || !strings.Contains(r.problem(t)["detail"].(string), "redis "+rd.Addr()) || r.Header.Get("Retry-After") == "" {
		t.Fatalf("Redis down: %d %s", r.StatusCode, r.body)
	}
	if gauge("caddy_bff_redis_up") != "0" {
		t.Fatalf("redis_up %s with Redis down", gauge("caddy_bff_redis_up"))
	}
	if h := get(t, bare(), g.base+"/healthz"); h.StatusCode != 200 {
		t.Fatalf("liveness with Redis down: %d", h.StatusCode)
	}
	rd.Start()
	deadline := time.Now().Add(10 * time.Second)
	for ready().StatusCode != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("not ready after Redis came back: %s", ready().body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A provider that was never reached: not ready, and it says which.
	down := startGW(t, gwOpts{opStopped: true, extraOIDC: "public /ready", siteMore: "handle /ready {\n\t\tbff_health\n\t}"})
	r = do(t, bare(), "GET", down.base+"/ready", nil)
	if r.StatusCode != 503 || !strings.Contains(r.body, "provider "+down.op.Issuer()) {
		t.Fatalf("provider down: %d %s", r.StatusCode, r.body)
	}
}
