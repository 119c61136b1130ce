package scopeauthz

import (
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/oidcauth"
)

func TestPatternMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"/", []string{"/"}, []string{"/a", "/a/"}},
		{"/*", []string{"/", "/a", "/a/b/", "/api/recipes"}, nil},
		{"/api/me", []string{"/api/me", "/API/me", "/Api/ME"}, []string{"/api/me/", "/api/me/x", "/api/mee", "/api/m", "/api", "/x/api/me"}},
		{"/api/Admin/*", []string{"/api/admin/x", "/API/ADMIN/", "/api/aDmIn/x/y"}, []string{"/api/admins/x", "/api/admin"}},
		{"/api/é/*", []string{"/api/é/x", "/api/É/x"}, []string{"/api/e/x"}},
		{"/api/me/", []string{"/api/me/"}, []string{"/api/me", "/api/me/x"}},
		{"/api/recipes/*", []string{"/api/recipes/", "/api/recipes/1", "/api/recipes/1/steps/"}, []string{"/api/recipes", "/api/recipesx/1", "/api/recipes1", "/api", "/"}},
		{"/api/teams/*/members", []string{"/api/teams/7/members", "/api/teams/x y/members"}, []string{"/api/teams/members", "/api/teams/7/members/", "/api/teams/7/members/1", "/api/teams/7/8/members", "/api/teams/"}},
		{"/api/teams/*/members/*", []string{"/api/teams/7/members/", "/api/teams/7/members/1/x"}, []string{"/api/teams/7/members", "/api/teams/7/x/1"}},
		{"/*/health", []string{"/a/health"}, []string{"/health", "/a/b/health"}},
		{"/api/*/", []string{"/api/x/"}, []string{"/api/x", "/api/x/y"}},
	} {
		pt, err := compilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		for _, p := range tt.match {
			if !pt.match(p) {
				t.Errorf("%s does not match %s", tt.pattern, p)
			}
		}
		for _, p := range tt.nomatch {
			if pt.match(p) {
				t.Errorf("%s matches %s", tt.pattern, p)
			}
		}
	}
}

func TestCompilePattern(t *testing.T) {
	for _, tt := range []struct{ pattern, wantErr string }{
		{"/api/recipes", ""},
		{"/api/é/*", ""},
		{"/.well-known/*", ""},
		{"api/recipes", "must start with /"},
		{"*", "must start with /"},
		{"", "must start with /"},
		{"/api/../admin", "dot segments"},
		{"/api/./x", "dot segments"},
		{"/api/..", "dot segments"},
		{"//api", "empty segments"},
		{"/api//x", "empty segments"},
		{"/api//*", "empty segments"},
		{"//*", "empty segments"},
		{"/api/a%2Fb", "without percent-escapes"},
		{"/api/%2e%2e", "without percent-escapes"},
		{`/api\x`, "never appears"},
		{"/api;x", "never appears"},
		{"/api?x=1", "never appears"},
		{"/api#x", "never appears"},
		{"/api/\x00", "never appears"},
		{"/api/．", "never appears"},
		{"/api/\xff", "invalid UTF-8"},
		{"/api/rec*", "whole segment"},
		{"/api/**", "whole segment"},
		{"/api/*x/y", "whole segment"},
	} {
		_, err := compilePattern(tt.pattern)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tt.pattern, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: error = %v, want it to contain %q", tt.pattern, err, tt.wantErr)
		}
	}
}

// TestPatternsMatchOnlyCheckedPaths: no pattern that compiles is written
// in a form CheckPath would refuse, so each can match its own text.
func TestPatternsMatchOnlyCheckedPaths(t *testing.T) {
	for _, raw := range []string{"/", "/api/me", "/api/me/", "/a/é", "/.well-known/x"} {
		pt, err := compilePattern(raw)
		if err != nil {
			t.Fatal(err)
		}
		clean, err := CheckPath(raw)
		if err != nil || !pt.match(clean) {
			t.Errorf("%s: CheckPath = %q, %v; match = %v", raw, clean, err, pt.match(clean))
		}
	}
}

func TestWarnings(t *testing.T) {
	r := func(methods, paths, reqs string) Rule {
		var m []string
		if methods != "*" {
			m = strings.Fields(methods)
		}
		return Rule{Methods: m, Paths: strings.Fields(paths), Require: strings.Fields(reqs)}
	}
	for _, tt := range []struct {
		name  string
		rules []Rule
		def   string
		want  []string
	}{
		{"spec example", []Rule{
			r("GET", "/api/recipes /api/recipes/*", "recipes:read"),
			r("POST PUT DELETE", "/api/recipes/*", "recipes:write"),
			r("*", "/api/admin/*", "admin"),
			r("GET", "/api/me", "authenticated"),
		}, "", nil},
		{"no rules", nil, "", []string{"no allow rules: every request is denied"}},
		{"no rules, default allow", nil, "allow", []string{"default allow"}},
		{"duplicate", []Rule{r("GET", "/a", "x"), r("GET", "/a", "y")}, "", []string{"allow #2 never applies: earlier rules (#1 GET /a)"}},
		{"any method first", []Rule{r("*", "/a", "x"), r("GET POST", "/a", "y")}, "", []string{"allow #2 never applies: earlier rules (#1 * /a)"}},
		{"broader prefix first", []Rule{r("*", "/api/*", "x"), r("GET", "/api/admin/*", "y")}, "", []string{"allow #2 never applies"}},
		{"wildcard first", []Rule{r("GET", "/t/*/m", "x"), r("GET", "/t/7/m", "y")}, "", []string{"allow #2 never applies"}},
		{"one pattern shadowed", []Rule{r("GET", "/a", "x"), r("GET", "/a /b", "y")}, "", []string{"allow #2: pattern /a is shadowed by rule #1 GET /a"}},
		{"fewer methods first", []Rule{r("GET", "/a", "x"), r("GET POST", "/a", "y")}, "", nil},
		{"narrower first", []Rule{r("GET", "/api/admin/*", "x"), r("GET", "/api/*", "y")}, "", nil},
		{"exact does not cover prefix", []Rule{r("GET", "/a", "x"), r("GET", "/a/*", "y")}, "", nil},
		{"prefix does not cover parent", []Rule{r("GET", "/a/*", "x"), r("GET", "/a", "y")}, "", nil},
		{"prefix covers trailing slash", []Rule{r("GET", "/a/*", "x"), r("GET", "/a/", "y")}, "", []string{"allow #2 never applies"}},
		{"wildcard does not cover empty", []Rule{r("GET", "/a/*/", "x"), r("GET", "/a//", "y")}, "", nil},
		{"literal does not cover wildcard", []Rule{r("GET", "/t/7/m", "x"), r("GET", "/t/*/m", "y")}, "", nil},
		{"unusual method", []Rule{r("GTE", "/a", "x")}, "", []string{`allow #1: unusual method "GTE"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "wildcard does not cover empty" {
				// "/a//" cannot compile; compare the patterns directly.
				a, _ := compilePattern("/a/*/")
				b := pattern{segs: []string{"a", "", ""}}
				if a.covers(&b) {
					t.Fatal("* covers an empty segment")
				}
				return
			}
			_, warnings, err := compilePolicy(tt.rules, tt.def)
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != len(tt.want) {
				t.Fatalf("warnings = %q, want %d like %q", warnings, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warnings[i], w)
				}
			}
		})
	}
}

// benchPolicy is a policy of 20 rules, like a portal's.
func benchPolicy(tb testing.TB) *policy {
	tb.Helper()
	var rules []Rule
	for i := range 16 {
		svc := fmt.Sprintf("svc%d", i)
		rules = append(rules, Rule{
			Methods: []string{"GET", "HEAD"},
			Paths:   []string{"/api/" + svc, "/api/" + svc + "/*"},
			Require: []string{svc + ":read|admin"},
		})
	}
	rules = append(rules,
		Rule{Methods: []string{"POST", "PUT", "DELETE"}, Paths: []string{"/api/recipes/*"}, Require: []string{"recipes:write"}},
		Rule{Paths: []string{"/api/admin/*"}, Require: []string{"admin"}},
		Rule{Methods: []string{"GET"}, Paths: []string{"/api/teams/*/members", "/api/teams/*/members/*"}, Require: []string{"authenticated", "teams:read"}},
		Rule{Methods: []string{"GET"}, Paths: []string{"/api/me"}, Require: []string{"authenticated"}},
	)
	p, _, err := compilePolicy(rules, "")
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

var benchRequests = []struct{ method, path string }{
	{"GET", "/api/svc0/1"},
	{"GET", "/api/svc15/items/42/"},
	{"POST", "/api/recipes/9"},
	{"GET", "/api/teams/7/members/3"},
	{"GET", "/api/me"},
	{"PATCH", "/api/unknown/x"},
}

// BenchmarkPolicy measures matching and the requirement check for a
// request: first rule to the last, string and array claims.
func BenchmarkPolicy(b *testing.B) {
	p := benchPolicy(b)
	id := &oidcauth.Identity{Subject: "alice", Claims: map[string]any{
		"scope": "openid profile svc15:read recipes:write teams:read",
		"roles": []any{"viewer", "admin"},
	}}
	for _, claim := range []string{"scope", "roles"} {
		b.Run(claim, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, rq := range benchRequests {
					if r, _ := p.match(rq.method, rq.path); r != nil {
						r.reqs.check(true, scopesOf(id.Claims, id.Scopes, claim))
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(benchRequests)), "ns/req")
		})
	}
}

// TestPolicyAllocs holds the hot path to zero allocations.
func TestPolicyAllocs(t *testing.T) {
	p := benchPolicy(t)
	id := &oidcauth.Identity{Subject: "alice", Claims: map[string]any{
		"scope": "svc15:read",
		"realm": map[string]any{"roles": []any{"teams:read"}},
	}}
	for _, claim := range []string{"scope", "realm.roles"} {
		n := testing.AllocsPerRun(100, func() {
			for _, rq := range benchRequests {
				path, _ := CheckPath(rq.path)
				if r, _ := p.match(rq.method, path); r != nil {
					r.reqs.check(true, scopesOf(id.Claims, id.Scopes, claim))
				}
			}
		})
		if n != 0 {
			t.Errorf("claim %s: %v allocations per run, want 0", claim, n)
		}
	}
}

// refMatch is the obvious, allocating matcher pattern.match must agree
// with.
func refMatch(pat, p string) bool {
	got := strings.Split(p[1:], "/")
	prefix := strings.HasSuffix(pat, "/*")
	var want []string
	if pat != "/*" {
		want = strings.Split(strings.TrimSuffix(pat[1:], "/*"), "/")
		if !prefix {
			want = strings.Split(pat[1:], "/")
		}
	}
	if prefix && len(got) <= len(want) || !prefix && len(got) != len(want) {
		return false
	}
	for i, s := range want {
		// Caddy's path matcher: both sides lower-cased.
		if s == "*" && got[i] == "" || s != "*" && strings.ToLower(s) != strings.ToLower(got[i]) {
			return false
		}
	}
	return true
}

// FuzzMatch: matching agrees with refMatch, and a pattern that covers
// another matches every path the other matches (so shadow warnings are
// never wrong).
func FuzzMatch(f *testing.F) {
	f.Add("/api/recipes/*", "/api/*", "/api/recipes/1")
	f.Add("/api/teams/*/members", "/api/teams/*/members", "/api/teams/7/members")
	f.Add("/", "/*", "/")
	f.Add("/a/", "/a/*", "/a/")
	f.Add("/api/admin/*", "/api/*", "/api/Admin/users")
	f.Add("/api/é/*", "/api/*", "/api/%C3%89/x")
	f.Add("/api/σ/*", "/api/*", "/api/%CF%82/x")
	f.Add("/a/*/", "/*/*/", "/a/b/")
	f.Fuzz(func(t *testing.T, a, b, in string) {
		p, err := CheckPath(in)
		if err != nil {
			return
		}
		pa, errA := compilePattern(a)
		pb, errB := compilePattern(b)
		if errA == nil && pa.match(p) != refMatch(a, p) {
			t.Fatalf("%s on %s: match = %v, reference says otherwise", a, p, pa.match(p))
		}
		// Another ASCII case of the path is the same path to the policy.
		if up, err := CheckPath(strings.ToUpper(in)); errA == nil && err == nil && pa.match(up) != pa.match(p) {
			t.Fatalf("%s matches %s and %s differently", a, p, up)
		}
		if errA == nil && errB == nil && pa.covers(&pb) && pb.match(p) && !pa.match(p) {
			t.Fatalf("%s covers %s, which matches %s, but %s does not", a, b, p, a)
		}
	})
}
