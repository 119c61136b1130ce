package main

import (
	"encoding/json"
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
		"BFF_DEMO_SIGNING_KEY_FILE", "BFF_DEMO_WWW", "BFF_DEMO_DATA"} {
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
			resp.Body.Close()
			loc, _ := resp.Location()
			if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || loc == nil ||
				!strings.HasPrefix(loc.String(), d.op.Issuer()+"/end_session") {
				t.Fatalf("logout: %d %v, want a redirect to the provider's end_session", resp.StatusCode, loc)
			}
			if got := loc.Query().Get("post_logout_redirect_uri"); got != gw+"/" {
				t.Errorf("post_logout_redirect_uri = %q, want %s/", got, gw)
			}
			resp, err = c.Get(loc.String())
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
