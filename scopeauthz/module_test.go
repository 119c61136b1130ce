package scopeauthz

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bff/caddy-bff/internal/problem"
)

// configs are scope_authz JSON configs the request tables use.
var configs = map[string]string{
	"portal": `{
		"claim": "scope",
		"allow": [
			{"methods": ["GET"], "paths": ["/api/recipes", "/api/recipes/*"], "require": ["recipes:read"]},
			{"methods": ["POST", "PUT", "DELETE"], "paths": ["/api/recipes/*"], "require": ["recipes:write"]},
			{"paths": ["/api/admin/*"], "require": ["admin"]},
			{"methods": ["GET"], "paths": ["/api/me"], "require": ["authenticated"]},
			{"methods": ["GET"], "paths": ["/api/teams/*/members"], "require": ["teams:read|admin"]},
			{"methods": ["PUT"], "paths": ["/api/teams/*/members/*"], "require": ["authenticated", "teams:write", "teams:admin|admin"]},
			{"methods": ["GET", "HEAD"], "paths": ["/api/public/*"], "require": ["anonymous"]}
		]
	}`,
	"default allow": `{
		"allow": [{"methods": ["*"], "paths": ["/api/admin/*"], "require": ["admin"]}],
		"default": "allow"
	}`,
	"nested claim": `{
		"claim": "realm_access.roles",
		"allow": [{"paths": ["/api/*"], "require": ["reader"]}]
	}`,
	"array claim": `{
		"claim": "roles",
		"allow": [{"paths": ["/api/*"], "require": ["reader|editor"]}]
	}`,
	"no rules":           `{}`,
	"everything allowed": `{"allow": [{"paths": ["/*"], "require": ["anonymous"]}], "default": "allow"}`,
}

func TestServeHTTP(t *testing.T) {
	var (
		anon   *user
		reader = &user{sub: "reader", scopes: []string{"recipes:read"}}
		writer = &user{sub: "writer", claims: map[string]any{"scope": "openid recipes:read recipes:write"}}
		admin  = &user{sub: "root", claims: map[string]any{"scope": []any{"admin"}}}
		nobody = &user{sub: "nobody", claims: map[string]any{"scope": "openid"}}
		teams  = &user{sub: "lead", claims: map[string]any{"scope": "teams:read teams:write teams:admin"}}
		member = &user{sub: "member", claims: map[string]any{"scope": "teams:write"}}
		realm  = &user{sub: "kc", claims: map[string]any{"realm_access": map[string]any{"roles": []any{"reader"}}, "scope": "admin"}}
		editor = &user{sub: "ed", claims: map[string]any{"roles": []any{"editor"}}}
	)
	for _, tt := range []struct {
		name, config, method, target string
		user                         *user
		status                       int
		missing, rule                string
	}{
		// Exact, prefix and parent patterns.
		{"exact parent listed", "portal", "GET", "/api/recipes", reader, 204, "", "#1 GET /api/recipes"},
		{"prefix", "portal", "GET", "/api/recipes/42", reader, 204, "", "#1 GET /api/recipes/*"},
		{"prefix trailing slash", "portal", "GET", "/api/recipes/", reader, 204, "", "#1 GET /api/recipes/*"},
		{"prefix deep", "portal", "GET", "/api/recipes/42/steps/1", reader, 204, "", "#1 GET /api/recipes/*"},
		{"scope missing", "portal", "GET", "/api/recipes/42", nobody, 403, "recipes:read", "#1 GET /api/recipes/*"},
		{"anonymous, scope rule", "portal", "GET", "/api/recipes/42", anon, 401, "recipes:read", "#1 GET /api/recipes/*"},
		{"prefix is not a string prefix", "portal", "GET", "/api/recipesx", reader, 403, "", "default"},
		{"paths ignore case", "portal", "GET", "/API/Recipes", reader, 204, "", "#1 GET /api/recipes"},
		{"case cannot step around a rule", "portal", "GET", "/api/RECIPES/1", nobody, 403, "recipes:read", "#1 GET /api/recipes/*"},
		// Method lists.
		{"method list POST", "portal", "POST", "/api/recipes/1", writer, 204, "", "#2 POST PUT DELETE /api/recipes/*"},
		{"method list DELETE", "portal", "DELETE", "/api/recipes/1", writer, 204, "", "#2 POST PUT DELETE /api/recipes/*"},
		{"method list, reader", "portal", "PUT", "/api/recipes/1", reader, 403, "recipes:write", "#2 POST PUT DELETE /api/recipes/*"},
		{"lower-case method matched", "portal", "put", "/api/recipes/1", reader, 403, "recipes:write", "#2 POST PUT DELETE /api/recipes/*"},
		{"method not listed", "portal", "PATCH", "/api/recipes/1", writer, 403, "", "default"},
		{"HEAD not implied by GET", "portal", "HEAD", "/api/recipes/1", reader, 403, "", "default"},
		{"POST on parent not listed", "portal", "POST", "/api/recipes", writer, 403, "", "default"},
		// Any method.
		{"any method GET", "portal", "GET", "/api/admin/users", admin, 204, "", "#3 * /api/admin/*"},
		{"any method custom", "portal", "PROPFIND", "/api/admin/x", admin, 204, "", "#3 * /api/admin/*"},
		{"any method, no scope", "portal", "DELETE", "/api/admin/x", writer, 403, "admin", "#3 * /api/admin/*"},
		{"any method, anonymous", "portal", "GET", "/api/admin/x", anon, 401, "admin", "#3 * /api/admin/*"},
		// authenticated.
		{"authenticated", "portal", "GET", "/api/me", nobody, 204, "", "#4 GET /api/me"},
		{"authenticated, anonymous", "portal", "GET", "/api/me", anon, 401, "authenticated", "#4 GET /api/me"},
		{"exact: no trailing slash", "portal", "GET", "/api/me/", nobody, 403, "", "default"},
		// Segment wildcard and alternatives.
		{"wildcard, first alternative", "portal", "GET", "/api/teams/7/members", teams, 204, "", "#5 GET /api/teams/*/members"},
		{"wildcard, second alternative", "portal", "GET", "/api/teams/7/members", admin, 204, "", "#5 GET /api/teams/*/members"},
		{"wildcard, neither", "portal", "GET", "/api/teams/7/members", reader, 403, "teams:read|admin", "#5 GET /api/teams/*/members"},
		{"wildcard needs a segment", "portal", "GET", "/api/teams/members", teams, 403, "", "default"},
		{"wildcard is one segment", "portal", "GET", "/api/teams/7/8/members", teams, 403, "", "default"},
		// Several requirements.
		{"all requirements", "portal", "PUT", "/api/teams/7/members/9", teams, 204, "", "#6 PUT /api/teams/*/members/*"},
		{"second requirement missing", "portal", "PUT", "/api/teams/7/members/9", nobody, 403, "teams:write", "#6 PUT /api/teams/*/members/*"},
		{"third requirement missing", "portal", "PUT", "/api/teams/7/members/9", member, 403, "teams:admin|admin", "#6 PUT /api/teams/*/members/*"},
		{"several, anonymous", "portal", "PUT", "/api/teams/7/members/9", anon, 401, "authenticated", "#6 PUT /api/teams/*/members/*"},
		// anonymous.
		{"anonymous rule, anonymous", "portal", "GET", "/api/public/menu", anon, 204, "", "#7 GET HEAD /api/public/*"},
		{"anonymous rule, user", "portal", "HEAD", "/api/public/menu", nobody, 204, "", "#7 GET HEAD /api/public/*"},
		// Default.
		{"default deny, anonymous", "portal", "GET", "/elsewhere", anon, 401, "authenticated", "default"},
		{"default deny, user", "portal", "GET", "/elsewhere", admin, 403, "", "default"},
		{"no rules deny", "no rules", "GET", "/", admin, 403, "", "default"},
		{"default allow", "default allow", "GET", "/api/recipes", anon, 204, "", "default"},
		{"default allow, rule still applies", "default allow", "POST", "/api/admin/x", nobody, 403, "admin", "#1 * /api/admin/*"},
		{"default allow, rule passes", "default allow", "POST", "/api/admin/x", admin, 204, "", "#1 * /api/admin/*"},
		// Claims.
		{"nested claim", "nested claim", "GET", "/api/x", realm, 204, "", "#1 * /api/*"},
		{"nested claim, not the scope claim", "nested claim", "GET", "/api/x", admin, 403, "reader", "#1 * /api/*"},
		{"array claim", "array claim", "GET", "/api/x", editor, 204, "", "#1 * /api/*"},
		{"array claim absent", "array claim", "GET", "/api/x", reader, 403, "reader|editor", "#1 * /api/*"},
		{"string claim", "portal", "GET", "/api/recipes", writer, 204, "", "#1 GET /api/recipes"},
		{"array scope claim", "portal", "GET", "/api/admin/x", admin, 204, "", "#3 * /api/admin/*"},
		{"Identity.Scopes without claim", "portal", "GET", "/api/recipes", reader, 204, "", "#1 GET /api/recipes"},
		// Encoded but unambiguous: judged decoded.
		{"encoded letter decoded", "portal", "GET", "/api/%72ecipes/1", nobody, 403, "recipes:read", "#1 GET /api/recipes/*"},
		{"query ignored", "portal", "GET", "/api/me?x=/api/admin/", nobody, 204, "", "#4 GET /api/me"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := mustLoad(t, json.RawMessage(configs[tt.config]))
			r := newRequest(t, tt.method, tt.target, tt.user)
			r.Header.Set("X-Request-ID", "req-1")
			w, called, p := serve(t, h, r)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if called != (tt.status == 204) {
				t.Fatalf("upstream called = %v with status %d", called, w.Code)
			}
			if tt.status != 204 {
				if p.Status != tt.status || p.Missing != tt.missing || p.RequestID != "req-1" {
					t.Fatalf("problem = %+v, want status %d, missing %q", p, tt.status, tt.missing)
				}
				if tt.missing != "" && tt.missing != Authenticated && !strings.Contains(p.Detail, tt.missing) {
					t.Errorf("detail %q does not name %q", p.Detail, tt.missing)
				}
				if want := map[bool]string{true: "/auth/login"}[tt.status == 401]; p.LoginURL != want {
					t.Errorf("login_url = %q, want %q", p.LoginURL, want)
				}
			}

			entries := logs.FilterLoggerName("audit").FilterMessage("authz").All()
			if len(entries) != 1 {
				t.Fatalf("%d audit entries, want 1", len(entries))
			}
			e := entries[0]
			if e.Level != zapcore.InfoLevel {
				t.Errorf("audit level %s", e.Level)
			}
			sub := ""
			if tt.user != nil {
				sub = tt.user.sub
			}
			outcome := map[bool]string{true: "allow", false: "deny"}[tt.status == 204]
			want := map[string]any{
				"request_id": "req-1", "sub": sub, "method": tt.method, "path": r.URL.Path,
				"rule": tt.rule, "outcome": outcome, "missing": tt.missing,
			}
			got := e.ContextMap()
			for k, v := range want {
				if got[k] != v {
					t.Errorf("audit %s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}

// confusionTargets are request targets as clients send them, each
// ambiguous: refused with 400 whatever the policy says.
var confusionTargets = []string{
	"/api/../admin/x",
	"/api/./admin",
	"/api/%2e%2e/admin",
	"/api/%2E%2e/admin",
	"/api/.%2e/admin",
	"/api/%2e/admin",
	"/api/a%2Fb",
	"/api/a%2fb",
	"/api/..%2fadmin",
	"/api/..%5cadmin",
	"/api/a%5Cb",
	"/api/a%00.json",
	"/api/a%0d%0aX-Injected:%201",
	"/api/admin;jsessionid=1",
	"/api/..;/admin",
	"/api/admin%3Bx",
	"/api//admin",
	"//api/admin",
	"/api/%252e%252e/admin",
	"/api/%C0%AE%C0%AE/admin",
	"/api/%C0%AF",
	"/api/%ff",
	"/api/%EF%BC%8E%EF%BC%8E/admin",
	"/api/%EF%BC%8Fadmin",
	"/api/%E2%80%A5/admin",
	"/api/%C2%85",
}

func TestServeHTTPPathConfusion(t *testing.T) {
	h, logs := mustLoad(t, json.RawMessage(configs["everything allowed"]))
	for _, target := range confusionTargets {
		t.Run(target, func(t *testing.T) {
			r := newRequest(t, "GET", target, &user{sub: "root", scopes: []string{"admin"}})
			w, called, p := serve(t, h, r)
			if w.Code != http.StatusBadRequest || called {
				t.Fatalf("status %d, upstream called %v; want 400 and not called", w.Code, called)
			}
			if p.Status != 400 || !strings.HasPrefix(p.Detail, "ambiguous request path: ") || p.RequestID == "" {
				t.Fatalf("problem = %+v", p)
			}
			if strings.Contains(p.Detail, "admin") {
				t.Errorf("detail echoes the path: %q", p.Detail)
			}
		})
	}
	for _, e := range logs.FilterLoggerName("audit").All() {
		if m := e.ContextMap(); m["rule"] != "path" || m["outcome"] != "deny" {
			t.Errorf("audit entry %v", m)
		}
	}
}

// TestServer sends raw request lines to a real Caddy server, so that
// nothing between the client and the handler (Go's parser, Caddy's server)
// normalises them first.
func TestServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true},
		"logging": {"logs": {"default": {"level": "ERROR"}}},
		"apps": {"http": {"servers": {"srv": {
			"listen": [%q],
			"routes": [{"handle": [
				{"handler": "scope_authz", "allow": [
					{"methods": ["GET"], "paths": ["/api/public/*"], "require": ["anonymous"]},
					{"paths": ["/api/admin/*"], "require": ["admin"]}
				]},
				{"handler": "static_response", "status_code": 200, "body": "upstream"}
			]}],
			"automatic_https": {"disable": true}
		}}}}
	}`, addr)
	if err := caddy.Load([]byte(cfg), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })

	for _, tt := range []struct {
		target string
		status int
	}{
		{"/api/public/menu", 200},
		{"/api/admin/users", 401},
		{"/api/public/../admin/users", 400},
		{"/api/public/%2e%2e/admin/users", 400},
		{"/api/public/%2E%2e/admin/users", 400},
		{"/api/public/..%2Fadmin/users", 400},
		{"/api/public/..%5Cadmin/users", 400},
		{"/api/public/..\\admin/users", 400},
		{"/api/public/..;/admin/users", 400},
		{"/api/public//admin", 400},
		{"/api/public/%00", 400},
		{"/api/public/%C0%AE%C0%AE/admin", 400},
		{"http://other.example/api/public/../admin/users", 400},
		{"/api/public/menu?next=/api/admin/", 200},
	} {
		t.Run(tt.target, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: portal.example\r\nConnection: close\r\n\r\n", tt.target)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 200 && resp.Header.Get("Content-Type") != problem.ContentType {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

// TestEscapedPath documents that url.URL keeps the client's encoding for
// CheckPath to judge.
func TestEscapedPath(t *testing.T) {
	u, err := url.ParseRequestURI("/api/%2e%2E/a%2Fb")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.EscapedPath(); got != "/api/%2e%2E/a%2Fb" {
		t.Fatalf("EscapedPath = %q", got)
	}
}

// The method judged is the method the upstream acts on: a method-override
// header naming another method is refused before any rule, one naming the
// request's own method is removed.
func TestMethodOverrideRefused(t *testing.T) {
	h, _ := mustLoad(t, json.RawMessage(`{"allow": [{"methods": ["POST"], "paths": ["/api/*"], "require": ["authenticated"]}]}`))
	u := &user{sub: "u", claims: map[string]any{}}
	for _, hdr := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		r := newRequest(t, "POST", "/api/x", u)
		r.Header.Set(hdr, "DELETE")
		w, called, p := serve(t, h, r)
		if w.Code != 400 || called || p.Status != 400 {
			t.Fatalf("%s: DELETE on a POST: %d, upstream called %v", hdr, w.Code, called)
		}
		r = newRequest(t, "POST", "/api/x", u)
		r.Header.Set(hdr, "post")
		if w, called, _ := serve(t, h, r); w.Code != 204 || !called || r.Header.Get(hdr) != "" {
			t.Fatalf("%s: POST on a POST: %d, called %v, header left %q", hdr, w.Code, called, r.Header.Get(hdr))
		}
	}
}
