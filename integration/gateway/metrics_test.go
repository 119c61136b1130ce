package gateway

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// bffSeries matches a caddy_bff sample line of the text exposition format.
var bffSeries = regexp.MustCompile(`^(caddy_bff_[a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+|NaN|\+Inf)$`)

var labelPair = regexp.MustCompile(`([a-z_]+)="((?:[^"\\]|\\.)*)"`)

// fixedLabels are the values each caddy_bff label may take ("zone" comes
// from the config, "le" from the histogram buckets).
var fixedLabels = map[string][]string{
	"outcome": {"success", "unknown_state", "bad_state", "expired", "provider_error", "code_rejected",
		"no_id_token", "bad_id_token", "bad_nonce", "bad_at_hash", "bad_iss", "step_up_not_met", "allow", "deny", "other"},
	"reason": {"logout", "backchannel", "frontchannel", "expired", "invalid_grant", "replaced", "admin", "limit", "rule", "default", "path", "other"},
	"result": {"success", "invalid_grant", "session_too_large", "provider_error", "bad_id_token",
		"refused", "unavailable", "hit", "miss", "ok", "error", "other"},
	"mode": {"mint", "exchange"},
	"call": {"discovery", "code_exchange", "refresh", "userinfo", "revocation", "token_exchange", "jwks", "par", "introspection", "other"},
}

func TestMetrics(t *testing.T) {
	g := startGW(t, gwOpts{
		extraOIDC: "public /metrics",
		siteMore:  "handle /metrics {\n\t\tmetrics\n\t}",
	})
	c := g.admin()
	var bearer string
	for range 2 {
		if r := get(t, c, g.base+"/api/recipes"); r.StatusCode != 200 {
			t.Fatalf("GET /api/recipes: %d %s", r.StatusCode, r.body)
		}
		last, _ := g.up.Last()
		bearer = last.BearerToken()
	}
	if bearer == "" {
		t.Fatal("upstream got no bearer token")
	}

	// Scraped anonymously, as Prometheus would.
	r := get(t, bare(), g.base+"/metrics")
	if r.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", r.StatusCode, r.body)
	}
	samples := make(map[string]float64)
	for line := range strings.SplitSeq(r.body, "\n") {
		m := bffSeries.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		samples[m[1]+"{"+m[2]+"}"] = v
		for _, lp := range labelPair.FindAllStringSubmatch(m[2], -1) {
			name, value := lp[1], lp[2]
			if name == "le" || name == "zone" || name == "issuer" || name == "address" {
				continue // from the config
			}
			if !slices.Contains(fixedLabels[name], value) {
				t.Errorf("%s: label %s=%q outside its fixed set", m[1], name, value)
			}
		}
		for _, secret := range []string{bearer, testop.AdminSubject, testop.AdminEmail, testop.AdminUsername} {
			if strings.Contains(m[2], secret) {
				t.Errorf("%s: labels carry %q", m[1], secret)
			}
		}
	}
	if len(samples) == 0 {
		t.Fatalf("no caddy_bff metrics served:\n%s", r.body)
	}
	for _, want := range []struct {
		series string
		min    float64
	}{
		{`caddy_bff_logins_total{outcome="success"}`, 1},
		{`caddy_bff_sessions_created_total{}`, 1},
		{`caddy_bff_token_cache_total{mode="mint",result="miss"}`, 1},
		{`caddy_bff_token_cache_total{mode="mint",result="hit"}`, 1},
		{`caddy_bff_provider_request_duration_seconds_count{call="discovery",result="ok"}`, 1},
		{`caddy_bff_provider_request_duration_seconds_count{call="code_exchange",result="ok"}`, 1},
	} {
		if v, ok := samples[want.series]; !ok || v < want.min {
			t.Errorf("%s = %v (present %v), want >= %v", want.series, v, ok, want.min)
		}
	}
}
