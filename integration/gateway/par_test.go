package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// parGW runs our caddy against panva's oidc-provider with the given par
// setting.
func parGW(t *testing.T, requirePAR bool, par string) (*gw, *harness.NodeOP) {
	t.Helper()
	addr := harness.FreeAddr(t)
	op := harness.StartNodeOP(t, "http://"+addr+"/auth/callback", requirePAR)
	bin := harness.MustBuildCaddy(t)
	up := harness.NewUpstream(t)
	g := &gw{t: t, up: up, addr: addr, base: "http://" + addr, bin: bin}
	g.cfg = harness.Caddyfile(fmt.Sprintf(`http://%[1]s {
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid email
		par %[4]s
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /welcome {
		respond "welcome" 200
	}
	handle {
		reverse_proxy %[3]s
	}
}
`, addr, op.Issuer(), up.Addr(), par))
	g.env = []string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKeyA}
	g.caddy = harness.StartCaddy(t, bin, g.cfg, g.env...)
	return g, op
}

// Issue 11, item 3: with a provider that offers PAR (RFC 9126) the login
// pushes its request, the browser carries only client_id and
// request_uri, and the login completes; a provider that requires PAR gets
// it even with par off.
func TestPushedAuthorizationRequests(t *testing.T) {
	for _, tc := range []struct {
		name       string
		requirePAR bool
		par        string
	}{
		{"offered, par auto", false, "auto"},
		{"required by the provider, par off", true, "off"},
		{"par required", true, "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, op := parGW(t, tc.requirePAR, tc.par)
			r := do(t, bare(), "GET", g.base+"/auth/login?return_to=/welcome", nil)
			if r.StatusCode != http.StatusFound {
				t.Fatalf("login: %d %s", r.StatusCode, r.body)
			}
			loc, err := url.Parse(r.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), op.Issuer()) {
				t.Fatalf("login redirects to %q", r.Header.Get("Location"))
			}
			q := loc.Query()
			if len(q) != 2 || q.Get("client_id") != "bff" || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("the browser carries %v, want client_id and request_uri only", q)
			}
			c := harness.NewClient(t)
			lr := harness.Login(t, c, g.base+"/auth/login?return_to=/welcome", "alice", "any-password")
			lr.Body.Close()
			if lr.StatusCode != 200 || lr.Request.URL.Path != "/welcome" {
				t.Fatalf("login landed on %s with %d", lr.Request.URL, lr.StatusCode)
			}
			u := get(t, c, g.base+"/auth/user")
			if u.StatusCode != 200 || !strings.Contains(u.body, `"sub":"alice"`) {
				t.Fatalf("/auth/user: %d %s", u.StatusCode, u.body)
			}
		})
	}
}

// par off against a provider that offers but does not require PAR: the
// classic front-channel request.
func TestPAROff(t *testing.T) {
	g, _ := parGW(t, false, "off")
	r := do(t, bare(), "GET", g.base+"/auth/login", nil)
	loc, _ := url.Parse(r.Header.Get("Location"))
	if q := loc.Query(); q.Get("request_uri") != "" || q.Get("code_challenge") == "" || q.Get("state") == "" {
		t.Fatalf("par off: the browser carries %v", q)
	}
}

// par required against a provider without PAR (zitadel's): no login, a
// 503 that says so in the log; never a front-channel request.
func TestPARRequiredWithoutPAR(t *testing.T) {
	g := startGW(t, gwOpts{extraOIDC: "par required"})
	r := do(t, bare(), "GET", g.base+"/auth/login", map[string]string{"Accept": "application/json"})
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Location") != "" {
		t.Fatalf("par required without PAR: %d, Location %q", r.StatusCode, r.Header.Get("Location"))
	}
	if !g.caddy.WaitLog("pushed_authorization_request_endpoint", 5*time.Second) {
		t.Fatalf("the log does not name what is missing:\n%s", g.caddy.Logs())
	}
}
