package caddybff

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/internal/health"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

func init() {
	caddy.RegisterModule(new(Health))
	httpcaddyfile.RegisterHandlerDirective("bff_health", parseHealth)
	// bff_health answers requests, like respond; before it, so that a
	// `respond` catch-all does not shadow it.
	httpcaddyfile.RegisterDirectiveOrder("bff_health", httpcaddyfile.Before, "respond")
}

// healthTimeout bounds one readiness check, all probes together.
const healthTimeout = 3 * time.Second

// Health answers readiness checks of load balancers and Kubernetes: 200
// with `{"status":"ready","checks":{...}}` when every oidc_auth's provider
// answered discovery and every configured Redis (session store, shared
// endings, rate limiting) answers PING; otherwise 503 problem naming what
// is down, with Retry-After. It ends the request, answers GET and HEAD
// only, and never caches. Liveness must not use it (a provider outage
// would restart healthy gateways): use `respond /healthz 200`.
type Health struct{}

// CaddyModule returns the Caddy module information.
func (*Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.bff_health", New: func() caddy.Module { return new(Health) }}
}

// Provision registers the metrics it relies on.
func (*Health) Provision(ctx caddy.Context) error { return metrics.Register(ctx) }

// ServeHTTP runs the checks.
func (*Health) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	requestid.Ensure(w, r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Error(w, r, http.StatusMethodNotAllowed, "readiness takes GET")
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	results := health.Run(ctx)
	checks := make(map[string]string, len(results))
	var down []string
	for _, res := range results {
		if res.Err != nil {
			checks[res.Name] = "down"
			down = append(down, res.Name)
		} else {
			checks[res.Name] = "up"
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if len(down) > 0 {
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "not ready: " + strings.Join(down, ", ") + " down", RetryAfter: 5})
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ready", "checks": checks})
	}
	return nil
}

// UnmarshalCaddyfile reads `bff_health [<matcher>]`: no arguments, no
// block.
func (*Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Err("bff_health takes no block")
	}
	return nil
}

func parseHealth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Health)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Health)(nil)
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
	_ caddyfile.Unmarshaler       = (*Health)(nil)
)
