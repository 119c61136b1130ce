package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/audit"
)

func TestRegisterTwice(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for i := range 2 {
		if err := Register(ctx); err != nil {
			t.Fatalf("Register #%d: %v", i+1, err)
		}
	}
	// A second config gets its own registry and the same collectors.
	ctx2, cancel2 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel2()
	if err := Register(ctx2); err != nil {
		t.Fatalf("Register into a second registry: %v", err)
	}
	families, err := ctx.GetMetricsRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		if name, ok := strings.CutPrefix(f.GetName(), namespace+"_"); ok {
			names = append(names, name)
		}
	}
	// Vectors without a child yet are not gathered.
	for _, want := range []string{"logins_total", "sessions_created_total", "sessions_ended_total",
		"refreshes_total", "token_exchanges_total", "token_cache_total", "authz_decisions_total",
		"provider_request_duration_seconds"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s_%s not gathered; got %v", namespace, want, names)
		}
	}
	// A zero context (no registry) is not an error.
	if err := Register(caddy.Context{}); err != nil {
		t.Errorf("Register without a registry: %v", err)
	}
}

func TestRegisterConflict(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	// Another collector by one of our names, with other labels.
	clash := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "logins_total", Help: "x"}, []string{"user"})
	ctx.GetMetricsRegistry().MustRegister(clash)
	if err := Register(ctx); err == nil {
		t.Fatal("Register accepted a conflicting collector")
	}
}

// delta runs f and returns how much c moved.
func delta(c prometheus.Collector, f func()) float64 {
	before := testutil.ToFloat64(c)
	f()
	return testutil.ToFloat64(c) - before
}

func TestHelpers(t *testing.T) {
	tests := []struct {
		name string
		c    prometheus.Collector
		f    func()
		want float64
	}{
		{"session created", sessionsCreated, SessionCreated, 1},
		{"sessions ended by backchannel", sessionsEnded.WithLabelValues(EndBackchannel), func() { SessionsEnded(EndBackchannel, 3) }, 3},
		{"no session ended", sessionsEnded.WithLabelValues(EndBackchannel), func() { SessionsEnded(EndBackchannel, 0) }, 0},
		{"session expired", sessionsEnded.WithLabelValues(EndExpired), func() { SessionsEnded(EndExpired, 1) }, 1},
		{"exchange refused", tokenExchanges.WithLabelValues(ExchangeRefused), func() { TokenExchange(ExchangeRefused) }, 1},
		{"cache hit mint", tokenCache.WithLabelValues(ModeMint, "hit"), func() { TokenCache(ModeMint, true) }, 1},
		{"cache miss exchange", tokenCache.WithLabelValues(ModeExchange, "miss"), func() { TokenCache(ModeExchange, false) }, 1},
		{"authz allow rule", authzDecisions.WithLabelValues("allow", ReasonRule), func() { Authz(true, ReasonRule) }, 1},
		{"authz deny path", authzDecisions.WithLabelValues("deny", ReasonPath), func() { Authz(false, ReasonPath) }, 1},
		{"authz deny default", authzDecisions.WithLabelValues("deny", ReasonDefault), func() { Authz(false, ReasonDefault) }, 1},
		{"rate limited", rateLimitRejections.WithLabelValues("api"), func() { RateLimitRejection("api")() }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := delta(tt.c, tt.f); got != tt.want {
				t.Errorf("moved by %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProviderCall(t *testing.T) {
	count := func(call, result string) uint64 {
		t.Helper()
		var m dto.Metric
		if err := providerDuration.WithLabelValues(call, result).(prometheus.Metric).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	ok, bad := count(CallRefresh, "ok"), count(CallRefresh, "error")
	ProviderCall(CallRefresh, time.Now(), nil)
	ProviderCall(CallRefresh, time.Now(), errors.New("down"))
	ProviderCall(CallRefresh, time.Now(), errors.New("down"))
	if got := count(CallRefresh, "ok") - ok; got != 1 {
		t.Errorf("ok moved by %d, want 1", got)
	}
	if got := count(CallRefresh, "error") - bad; got != 2 {
		t.Errorf("error moved by %d, want 2", got)
	}
	o := count(other, "ok")
	ProviderCall("https://idp.example/token?code=secret", time.Now(), nil)
	if got := count(other, "ok") - o; got != 1 {
		t.Errorf("unknown call: other moved by %d, want 1", got)
	}
}

// TestLabelsBounded checks every series carries only fixed label values,
// after helpers were called with hostile input.
func TestLabelsBounded(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	audit.Write(zap.NewNop(), audit.Login, r, audit.Entry{Outcome: audit.ProviderError, Detail: "access_denied"})
	audit.Write(zap.NewNop(), audit.Login, r, audit.Entry{Outcome: audit.CodeRejected, Detail: strings.Repeat("a", 100)})
	audit.Write(zap.NewNop(), audit.Login, r, audit.Entry{Outcome: "sub-1234"})
	SessionsEnded("alice", 1)
	audit.Write(zap.NewNop(), audit.Refresh, r, audit.Entry{Outcome: "Bearer eyJ"})
	TokenExchange("secret")
	ProviderCall("userinfo?access_token=x", time.Now(), nil)

	allowed := map[string][]string{
		"outcome": append(outcomeStrings(audit.LoginOutcomes), "allow", "deny", other),
		"reason":  append(append(slices.Clone(endReasons), authzReasons[:]...), other),
		"result":  append(append(outcomeStrings(audit.RefreshOutcomes), exchangeResults...), "hit", "miss", "ok", "error", other),
		"mode":    cacheModes[:],
		"call":    append(slices.Clone(providerCalls), other),
	}
	reg := prometheus.NewPedanticRegistry()
	for _, c := range collectors {
		reg.MustRegister(c)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "zone" || l.GetName() == "issuer" || l.GetName() == "address" {
					continue // from the config
				}
				if !slices.Contains(allowed[l.GetName()], l.GetValue()) {
					t.Errorf("%s: label %s=%q outside its fixed set", f.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func outcomeStrings(os []audit.Outcome) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = string(o)
	}
	return out
}
