package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// startDemo runs the whole demo on free ports with the real demo Caddyfile.
func startDemo(t *testing.T, gateway bool) *demo {
	t.Helper()
	for _, k := range []string{"BFF_DEMO_ADDR", "BFF_DEMO_ISSUER", "BFF_DEMO_API", "BFF_DEMO_CLIENT_SECRET",
		"BFF_DEMO_SIGNING_KEY_FILE", "BFF_DEMO_WWW", "BFF_DEMO_DATA", "BFF_DEMO_APPS"} {
		t.Setenv(k, "") // restored after the test; start sets them
	}
	d, err := start(options{
		gatewayAddr: harness.FreeAddr(t),
		opAddr:      harness.FreeAddr(t),
		apiAddr:     harness.FreeAddr(t),
		caddyfile:   "../../demo/Caddyfile",
		gateway:     gateway,
	})
	if err != nil {
		t.Fatalf("starting the demo: %v", err)
	}
	t.Cleanup(func() {
		if err := d.close(); err != nil {
			t.Errorf("stopping the demo: %v", err)
		}
	})
	return d
}

func getJSON(t *testing.T, c *http.Client, u string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Logf("GET %s: %d, not JSON: %.200s", u, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// send makes a same-origin script call, as the shell's fetch does.
func send(t *testing.T, c *http.Client, method, u, origin, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Accept", "application/json")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Logf("%s %s: %d, not JSON: %.200s", method, u, resp.StatusCode, b)
	}
	return resp, m
}

// appNames lists the names in a bff_apps answer.
func appNames(t *testing.T, m map[string]any) []string {
	t.Helper()
	list, ok := m["applications"].([]any)
	if !ok {
		t.Fatalf("no applications array in %v", m)
	}
	names := []string{}
	for _, a := range list {
		app, _ := a.(map[string]any)
		names = append(names, fmt.Sprint(app["name"]))
		for _, k := range []string{"title", "entry", "route"} {
			if s, _ := app[k].(string); s == "" {
				t.Errorf("application %v has no %s", app["name"], k)
			}
		}
		if _, ok := app["require"]; ok {
			t.Errorf("application %v reveals require", app["name"])
		}
	}
	return names
}

// isProblem reports whether resp is the gateway's problem body with status.
func isProblem(resp *http.Response, body map[string]any, status int) bool {
	return resp.StatusCode == status && resp.Header.Get("Content-Type") == "application/problem+json" &&
		body["status"] == float64(status) && body["request_id"] != nil && body["request_id"] != ""
}

func scopesOf(m map[string]any) []string {
	var out []string
	if s, ok := m["scopes"].([]any); ok {
		for _, v := range s {
			out = append(out, v.(string))
		}
	}
	return out
}

func TestDemoProviderAndAPI(t *testing.T) {
	d := startDemo(t, false)
	c := harness.NewClient(t)
	if code, _ := getJSON(t, c, d.op.Issuer()+"/.well-known/openid-configuration"); code != http.StatusOK {
		t.Errorf("provider discovery: %d", code)
	}
	if code, body := getJSON(t, c, "http://"+d.o.apiAddr+"/api/me"); code != http.StatusUnauthorized {
		t.Errorf("API without a token: %d %v, want 401", code, body)
	}
}

func TestDemo(t *testing.T) {
	d := startDemo(t, true)
	gw := "http://" + d.o.gatewayAddr

	// The API is only reachable with a token the gateway minted.
	if code, _ := getJSON(t, harness.NewClient(t), "http://"+d.o.apiAddr+"/api/me"); code != http.StatusUnauthorized {
		t.Errorf("API without a token: %d, want 401", code)
	}
	if code, _ := getJSON(t, harness.NewClient(t), gw+"/api/me"); code != http.StatusUnauthorized {
		t.Errorf("gateway /api/me without a session: %d, want 401", code)
	}

	wantApps := map[string][]string{
		testop.ReaderUsername: {"recipes", "payments"},
		testop.AdminUsername:  {"recipes", "editor", "admin", "payments"},
	}
	for _, u := range []testop.User{testop.Reader(), testop.Admin()} {
		t.Run(u.Username, func(t *testing.T) {
			c := harness.NewClient(t)
			resp := harness.Login(t, c, gw+"/auth/login?return_to=/", u.Username, u.Password)
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "caddy-bff demo") {
				t.Fatalf("after login: %d %.300s, want the shell", resp.StatusCode, page)
			}

			code, user := getJSON(t, c, gw+"/auth/user?touch=false")
			if code != http.StatusOK || user["sub"] != u.Subject {
				t.Fatalf("/auth/user: %d %v, want sub %s", code, user, u.Subject)
			}
			for _, k := range []string{"access_token", "refresh_token", "id_token"} {
				if _, ok := user[k]; ok {
					t.Errorf("/auth/user leaks %s", k)
				}
			}

			code, me := getJSON(t, c, gw+"/api/me")
			if code != http.StatusOK || me["sub"] != u.Subject || me["email"] != u.Email {
				t.Fatalf("/api/me: %d %v, want sub %s and email %s", code, me, u.Subject, u.Email)
			}
			for _, s := range u.Scopes {
				if !slices.Contains(scopesOf(me), s) {
					t.Errorf("/api/me scopes %v lack %s", scopesOf(me), s)
				}
			}
			if code, body := getJSON(t, c, gw+"/api/recipes"); code != http.StatusOK {
				t.Errorf("/api/recipes: %d %v", code, body)
			}

			// The shell's list of micro-frontends, by the user's scopes.
			code, apps := getJSON(t, c, gw+"/applications")
			if got, want := appNames(t, apps), wantApps[u.Username]; code != http.StatusOK || !slices.Equal(got, want) {
				t.Errorf("/applications: %d %v, want %v", code, got, want)
			}

			// Writes and admin calls: scope_authz decides before the API is
			// called; the API's own check never gets to say no.
			title := "Demo soup for " + u.Subject
			calls := d.api.Requests()
			resp, body := send(t, c, http.MethodPost, gw+"/api/recipes", gw, `{"title": "`+title+`"}`)
			if canWrite := slices.Contains(u.Scopes, testop.ScopeRecipesWrite); canWrite {
				if resp.StatusCode != http.StatusCreated || d.api.Requests() != calls+1 {
					t.Errorf("POST /api/recipes: %d %v, want 201 from the API", resp.StatusCode, body)
				}
				if _, list := getJSON(t, c, gw+"/api/recipes"); !strings.Contains(fmt.Sprint(list["recipes"]), title) {
					t.Errorf("the new recipe is not listed: %v", list["recipes"])
				}
			} else {
				if !isProblem(resp, body, http.StatusForbidden) || body["missing"] != testop.ScopeRecipesWrite {
					t.Errorf("POST /api/recipes: %d %v, want scope_authz's 403 naming recipes:write", resp.StatusCode, body)
				}
				if n := d.api.Requests(); n != calls {
					t.Errorf("the API was called %d times for a refused POST", n-calls)
				}
			}

			calls = d.api.Requests()
			resp, body = send(t, c, http.MethodGet, gw+"/api/admin/stats", gw, "")
			if slices.Contains(u.Scopes, testop.ScopeAdmin) {
				if resp.StatusCode != http.StatusOK || body["sub"] != u.Subject {
					t.Errorf("/api/admin/stats: %d %v, want 200 for %s", resp.StatusCode, body, u.Subject)
				}
			} else {
				if !isProblem(resp, body, http.StatusForbidden) || body["missing"] != testop.ScopeAdmin {
					t.Errorf("/api/admin/stats: %d %v, want scope_authz's 403 naming admin", resp.StatusCode, body)
				}
				if n := d.api.Requests(); n != calls {
					t.Errorf("the API was called %d times for a refused admin call", n-calls)
				}
			}
			// No rule, no call.
			calls = d.api.Requests()
			if resp, body := send(t, c, http.MethodGet, gw+"/api/unlisted", gw, ""); !isProblem(resp, body, http.StatusForbidden) || d.api.Requests() != calls {
				t.Errorf("/api/unlisted: %d %v, want the policy's default deny", resp.StatusCode, body)
			}

			// Logout: a same-origin form POST, then the provider's end_session.
			before := d.op.Stats()
			req, _ := http.NewRequest(http.MethodPost, gw+"/auth/logout", strings.NewReader(""))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", gw)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			req.Header.Set("Sec-Fetch-Mode", "navigate")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			logoutPage, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			// RP-Initiated Logout with an auto-submitted POST: the ID
			// token is in the form, never in a URL.
			action, method, fields, perr := harness.PageForm(string(logoutPage), resp.Request.URL)
			if perr != nil || resp.StatusCode != http.StatusOK || method != http.MethodPost ||
				action.String() != d.op.Issuer()+"/end_session" || fields.Get("id_token_hint") == "" {
				t.Fatalf("logout: %d %s %v (%v), want a form posting to the provider's end_session", resp.StatusCode, method, action, perr)
			}
			if got := fields.Get("post_logout_redirect_uri"); got != gw+"/" {
				t.Errorf("post_logout_redirect_uri = %q, want %s/", got, gw)
			}
			resp, err = c.PostForm(action.String(), fields)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if back, _ := resp.Location(); back == nil || back.Host != d.o.gatewayAddr {
				t.Errorf("end_session sent the browser to %v, want the gateway", back)
			}
			after := d.op.Stats()
			if after.Revocations <= before.Revocations {
				t.Error("logout did not revoke the refresh token")
			}
			if code, _ := getJSON(t, c, gw+"/api/me"); code != http.StatusUnauthorized {
				t.Errorf("/api/me after logout: %d, want 401", code)
			}
		})
	}
}

// What an anonymous visitor gets: the shell sends them to the login, the
// data and the application list are refused, the static bundles are public.
func TestDemoAnonymous(t *testing.T) {
	d := startDemo(t, true)
	gw := "http://" + d.o.gatewayAddr
	c := harness.NewClient(t)

	req, _ := http.NewRequest(http.MethodGet, gw+"/recipes", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); resp.StatusCode != http.StatusFound || loc == nil || loc.Path != "/auth/login" ||
		loc.Query().Get("return_to") != "/recipes" {
		t.Errorf("navigation to /recipes: %d %v, want 302 to the login returning to /recipes", resp.StatusCode, loc)
	}

	for _, tt := range []struct{ method, path, body string }{
		{http.MethodGet, "/applications", ""},
		{http.MethodGet, "/api/recipes", ""},
		{http.MethodPost, "/api/recipes", `{"title": "anonymous soup"}`},
		{http.MethodGet, "/api/admin/stats", ""},
	} {
		before := d.api.Requests()
		resp, body := send(t, c, tt.method, gw+tt.path, gw, tt.body)
		if !isProblem(resp, body, http.StatusUnauthorized) || body["login_url"] == nil {
			t.Errorf("%s %s: %d %v, want a 401 problem with login_url", tt.method, tt.path, resp.StatusCode, body)
		}
		if d.api.Requests() != before {
			t.Errorf("%s %s reached the API", tt.method, tt.path)
		}
	}

	for _, p := range []string{"/apps/recipes/index.js", "/apps/editor/index.js", "/apps/admin/index.js"} {
		resp, err := c.Get(gw + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") ||
			!strings.Contains(string(b), "export") || !strings.Contains(string(b), "function mount(") {
			t.Errorf("public bundle %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// The demo refuses to listen beyond loopback.
func TestDemoLoopbackOnly(t *testing.T) {
	for _, o := range []options{
		{gatewayAddr: "0.0.0.0:8080", opAddr: "127.0.0.1:0", apiAddr: "127.0.0.1:0"},
		{gatewayAddr: "127.0.0.1:0", opAddr: ":9998", apiAddr: "127.0.0.1:0"},
		{gatewayAddr: "127.0.0.1:0", opAddr: "127.0.0.1:0", apiAddr: "localhost:9001"},
	} {
		if d, err := start(o); err == nil {
			_ = d.close()
			t.Errorf("start(%+v) succeeded", o)
		}
	}
}
