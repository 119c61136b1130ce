package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// span is the part of a span the console exporter prints that we read.
type span struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s span) attr(k string) any {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.Value
		}
	}
	return nil
}

// spans decodes the spans among Caddy's output (JSON log lines and the
// console exporter's JSON objects).
func spans(out string) []span {
	var all []span
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			break
		}
		var s span
		if json.Unmarshal(raw, &s) == nil && s.Name != "" && s.SpanContext.SpanID != "" {
			all = append(all, s)
		}
	}
	return all
}

// Issue 11, item 7: with Caddy's tracing directive, every provider call is
// a span, a child of the request's span, with the call and its outcome
// as attributes and never a token.
func TestProviderCallsAreTraced(t *testing.T) {
	g := startGW(t, gwOpts{
		siteMore:  "tracing {\n\t\tspan bff\n\t}",
		env:       []string{"OTEL_TRACES_EXPORTER=console", "OTEL_BSP_SCHEDULE_DELAY=100"},
		tokenMode: "access_token",
		accessTTL: 4 * 1e9,
	})
	c := g.admin()
	if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	refreshTokens := g.op.RefreshTokens(testop.AdminUsername)
	g.caddy.Stop() // flushes the batch span processor
	out := g.caddy.Logs()
	all := spans(out)
	byID := map[string]span{}
	for _, s := range all {
		byID[s.SpanContext.SpanID] = s
	}
	found := map[string]bool{}
	for _, s := range all {
		call, _ := s.attr("caddy_bff.provider.call").(string)
		if call == "" {
			continue
		}
		found[call] = true
		if s.Name != "oidc_auth provider "+call || s.attr("caddy_bff.provider.outcome") == nil {
			t.Errorf("span %q: %+v", s.Name, s.Attributes)
		}
		if call == "code_exchange" || call == "userinfo" {
			parent, ok := byID[s.Parent.SpanID]
			if !ok || parent.Name != "bff" || parent.SpanContext.TraceID != s.SpanContext.TraceID {
				t.Errorf("%s: parent %q (%v), want the request's span bff", call, parent.Name, ok)
			}
			if s.attr("caddy_bff.provider.outcome") != "ok" {
				t.Errorf("%s: outcome %v", call, s.attr("caddy_bff.provider.outcome"))
			}
		}
	}
	for _, call := range []string{"discovery", "code_exchange", "userinfo", "jwks"} {
		if !found[call] {
			t.Errorf("no %s span among %d spans", call, len(all))
		}
	}
	// Nothing secret in any span.
	var spansOnly bytes.Buffer
	for _, s := range all {
		b, _ := json.Marshal(s)
		spansOnly.Write(b)
	}
	for _, secret := range append(refreshTokens, g.op.ClientSecret()) {
		if secret != "" && strings.Contains(spansOnly.String(), secret) {
			t.Fatal("a span holds a secret")
		}
	}
	if strings.Contains(spansOnly.String(), "eyJ") {
		t.Fatal("a span holds a JWT")
	}
}
