package audit

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func delta(c prometheus.Collector, f func()) float64 {
	before := testutil.ToFloat64(c)
	f()
	return testutil.ToFloat64(c) - before
}

func TestWriteCounts(t *testing.T) {
	r := httptest.NewRequest("GET", "/auth/callback?code=secret", nil)
	nop := zap.NewNop()
	for _, tt := range []struct {
		name string
		c    prometheus.Collector
		ev   Event
		e    Entry
	}{
		{"login success", logins.WithLabelValues("success"), Login, Entry{Outcome: Success}},
		{"login provider error with code", logins.WithLabelValues("provider_error"), Login, Entry{Outcome: ProviderError, Detail: "access_denied"}},
		{"login provider error, attacker's code", logins.WithLabelValues("provider_error"), Login, Entry{Outcome: ProviderError, Detail: strings.Repeat("x", 64)}},
		{"login code rejected", logins.WithLabelValues("code_rejected"), Login, Entry{Outcome: CodeRejected, Detail: "invalid_grant"}},
		{"login unknown outcome", logins.WithLabelValues("other"), Login, Entry{Outcome: Outcome("eyJhbGciOiJIUzI1NiJ9.secret")}},
		{"refresh too large", refreshes.WithLabelValues("session_too_large"), Refresh, Entry{Outcome: SessionTooLarge}},
		{"refresh unknown", refreshes.WithLabelValues("other"), Refresh, Entry{Outcome: Outcome("alice@example.com")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := delta(tt.c, func() { Write(nop, tt.ev, r, tt.e) }); got != 1 {
				t.Errorf("moved by %v, want 1", got)
			}
		})
	}
}

func TestWriteEntry(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	r := httptest.NewRequest("POST", "/api/x?token=secret", nil)
	Write(zap.New(core), Login, r, Entry{Sub: "alice", Outcome: ProviderError, Detail: "access_denied"}, zap.Bool("extra", true))
	Write(zap.New(core), Authz, r, Entry{Outcome: Deny, Path: "/api/judged"})
	all := logs.All()
	if len(all) != 2 {
		t.Fatalf("%d entries, want 2", len(all))
	}
	got := all[0].ContextMap()
	if all[0].Message != "login" || got["sub"] != "alice" || got["method"] != "POST" || got["path"] != "/api/x" ||
		got["outcome"] != "provider_error:access_denied" || got["extra"] != true {
		t.Errorf("login entry %q %v", all[0].Message, got)
	}
	if _, ok := got["request_id"]; !ok {
		t.Error("no request_id field")
	}
	if got := all[1].ContextMap(); all[1].Message != "authz" || got["path"] != "/api/judged" || got["outcome"] != "deny" {
		t.Errorf("authz entry %q %v", all[1].Message, got)
	}
	// Below Info, nothing is written, but the count still moves.
	quiet, logs2 := observer.New(zap.WarnLevel)
	if d := delta(refreshes.WithLabelValues("success"), func() { Write(zap.New(quiet), Refresh, r, Entry{Outcome: Success}) }); d != 1 || logs2.Len() != 0 {
		t.Errorf("quiet logger: count moved %v, %d entries", d, logs2.Len())
	}
}

// TestEveryOutcomeCounted: every Outcome constant of a counted event is in
// its label set, so a new outcome never silently counts as "other".
func TestEveryOutcomeCounted(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "audit.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	notCounted := []Outcome{Rejected, Allow, Deny, StoreDown} // back-channel; scope_authz counts by reason; admin
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || vs.Type == nil || ast.Unparen(vs.Type).(*ast.Ident).Name != "Outcome" {
			return true
		}
		for _, v := range vs.Values {
			lit, ok := v.(*ast.BasicLit)
			if !ok {
				continue
			}
			o := Outcome(strings.Trim(lit.Value, `"`))
			n++
			if !slices.Contains(LoginOutcomes, o) && !slices.Contains(RefreshOutcomes, o) && !slices.Contains(notCounted, o) {
				t.Errorf("outcome %q is in no label set", o)
			}
		}
		return true
	})
	if n < 15 {
		t.Fatalf("found %d outcome constants; the parser missed them", n)
	}
}
