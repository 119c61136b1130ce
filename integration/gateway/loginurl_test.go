package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// TestLoginURLFollowsLoginPath: with another login_path, every 401 of
// ours (oidc_auth's, scope_authz's, bff_token's) hands the shell a
// login_url on that path, with the page that made the call as return_to,
// and following it logs the user in and lands them back there.
func TestLoginURLFollowsLoginPath(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	op := startOP(t, 0)
	up := harness.NewUpstream(t)
	addr := harness.FreeAddr(t)
	base := "http://" + addr
	cfg := harness.Caddyfile(fmt.Sprintf(`http://%[1]s {
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid profile email offline_access recipes:read
		login_path /signin
		public /api/* /
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /api/* {
		scope_authz {
			allow GET /api/open /api/token anonymous
			allow GET /api/private recipes:read
			default deny
		}
		@token path /api/token
		bff_token @token {
			mode mint
			audience test-api
			issuer http://%[1]s
			signing_key %[4]s
		}
		reverse_proxy %[3]s
	}
	handle /app/* {
		respond "app page" 200
	}
	handle /welcome {
		respond "welcome" 200
	}
	handle {
		respond "not found" 404
	}
}
`, addr, op.Issuer(), up.Addr(), writeSigningKey(t)))
	harness.StartCaddy(t, bin, cfg, "OIDC_CLIENT_SECRET="+op.ClientSecret(), "SESSION_KEY="+sessionKeyA)

	const page = "/app/recipes?tab=2"
	want := "/signin?return_to=" + url.QueryEscape(page)
	for _, tc := range []struct{ name, method, path string }{
		{"oidc_auth (/auth/user)", "GET", "/auth/user"},
		{"scope_authz rule", "GET", "/api/private"},
		{"scope_authz default", "POST", "/api/open"},
		{"bff_token", "GET", "/api/token"},
	} {
		r := do(t, bare(), tc.method, base+tc.path, map[string]string{"Accept": "application/json", "Referer": base + page})
		if r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401: %s", tc.name, r.StatusCode, r.body)
			continue
		}
		if got := r.problem(t)["login_url"]; got != want {
			t.Errorf("%s: login_url %v, want %q", tc.name, got, want)
		}
		// Without a same-origin page to come back to, the bare path.
		r = do(t, bare(), tc.method, base+tc.path, map[string]string{"Accept": "application/json", "Referer": "http://evil.example" + page})
		if got := r.problem(t)["login_url"]; got != "/signin" {
			t.Errorf("%s, cross-origin Referer: login_url %v, want /signin", tc.name, got)
		}
	}

	// The login_url logs the user in and lands them on the page.
	c := harness.NewClient(t)
	lr := harness.Login(t, c, base+want, testop.ReaderUsername, testop.ReaderPassword)
	lr.Body.Close()
	if lr.StatusCode != 200 || lr.Request.URL.RequestURI() != page {
		t.Fatalf("login via login_url landed on %s with %d, want %s", lr.Request.URL, lr.StatusCode, page)
	}
	if r := do(t, c, "GET", base+"/api/private", nil); r.StatusCode != 200 {
		t.Fatalf("after login: %d: %s", r.StatusCode, r.body)
	}
}
