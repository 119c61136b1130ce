package gateway

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// stepUpPolicy needs acr mfa for payments, a login at most 5 minutes old
// for the payments settings, and lets everything else through.
const stepUpPolicy = `scope_authz {
		allow POST /api/payments/* authenticated acr:mfa
		allow GET /api/payments/settings authenticated max_age:5m
		allow GET /payments /payments/* authenticated acr:mfa
		default allow
	}`

// Issue 14, item 1: step-up per route (RFC 9470 semantics) against the
// zitadel provider wrapped to honour acr_values.
func TestStepUp(t *testing.T) {
	for _, store := range []string{"cookie", "memory"} {
		t.Run(store, func(t *testing.T) {
			g := startGW(t, gwOpts{store: store, extraOIDC: "acr_levels mfa > pwd", siteMore: stepUpPolicy})
			g.op.SetACRValues("pwd", "mfa", "pwd")
			c := g.admin()
			me := userInfo(t, g, c)
			if me["acr"] != "pwd" || me["auth_time"] == nil {
				t.Fatalf("/auth/user after a plain login: acr %v auth_time %v", me["acr"], me["auth_time"])
			}
			if seen := g.op.LastAuthRequest(); seen.ACRValues != "" || seen.MaxAge != "" {
				t.Fatalf("a plain login sent step-up parameters: %+v", seen)
			}
			xhr := map[string]string{"Accept": "application/json", "Origin": g.base, "Sec-Fetch-Site": "same-origin",
				"Sec-Fetch-Mode": "cors", "Referer": g.base + "/checkout"}

			// Unmet: a script gets the RFC 9470 challenge, nothing reaches the API.
			g.up.Reset()
			r := do(t, c, "POST", g.base+"/api/payments/1", xhr)
			if r.StatusCode != 401 {
				t.Fatalf("payment with acr pwd: %d %s", r.StatusCode, r.body)
			}
			p := r.problem(t)
			if p["error"] != "insufficient_user_authentication" || p["acr_values"] != "mfa" {
				t.Fatalf("problem %s", r.body)
			}
			if ch := r.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="insufficient_user_authentication"`) || !strings.Contains(ch, `acr_values="mfa"`) {
				t.Fatalf("WWW-Authenticate %q", ch)
			}
			if len(g.up.Requests()) != 0 {
				t.Fatal("the refused payment reached the upstream")
			}
			loginURL, _ := p["login_url"].(string)
			lu, err := url.Parse(loginURL)
			if err != nil || lu.Path != "/auth/login" || lu.Query().Get("acr_values") != "mfa" || lu.Query().Get("return_to") != "/checkout" {
				t.Fatalf("login_url %q", loginURL)
			}

			// A navigation is sent to the step-up login.
			nav := do(t, bareWithJar(c), "GET", g.base+"/payments/history", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
			if nav.StatusCode != 302 || !strings.Contains(nav.Header.Get("Location"), "acr_values=mfa") ||
				!strings.Contains(nav.Header.Get("Location"), "return_to=%2Fpayments%2Fhistory") {
				t.Fatalf("navigation: %d Location %q", nav.StatusCode, nav.Header.Get("Location"))
			}

			// A provider that ignores acr_values does not satisfy them: no
			// session from that login, the old one stands.
			before := sessionCookies(g, c)
			g.op.SetACRValues("pwd") // performs nothing but pwd
			res := harness.Login(t, c, g.base+loginURL, testop.AdminUsername, testop.AdminPassword)
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Fatalf("callback of a login the provider did not step up: %d, want 401", res.StatusCode)
			}
			if sessionCookies(g, c) != before {
				t.Fatal("a login that did not deliver the step-up changed the session cookie")
			}
			if r := do(t, c, "POST", g.base+"/api/payments/1", xhr); r.StatusCode != 401 {
				t.Fatalf("after the ignored step-up: %d", r.StatusCode)
			}
			if r := get(t, c, g.base+"/api/recipes"); r.StatusCode != 200 {
				t.Fatalf("the old session must stand: %d", r.StatusCode)
			}

			// The provider steps up: a fresh session with acr mfa.
			g.op.SetACRValues("pwd", "mfa", "pwd")
			res = harness.Login(t, c, g.base+loginURL, testop.AdminUsername, testop.AdminPassword)
			res.Body.Close()
			if res.StatusCode != 200 || res.Request.URL.Path != "/checkout" {
				t.Fatalf("step-up login landed on %s with %d", res.Request.URL, res.StatusCode)
			}
			if seen := g.op.LastAuthRequest(); seen.ACRValues != "mfa" {
				t.Fatalf("the step-up login sent acr_values %q", seen.ACRValues)
			}
			if me := userInfo(t, g, c); me["acr"] != "mfa" {
				t.Fatalf("/auth/user after step-up: acr %v", me["acr"])
			}
			g.up.Reset()
			if r := do(t, c, "POST", g.base+"/api/payments/1", xhr); r.StatusCode != 200 || len(g.up.Requests()) != 1 {
				t.Fatalf("payment after step-up: %d %s", r.StatusCode, r.body)
			}
			// No fixation across privilege levels: the pre-step-up cookie is dead.
			old := do(t, bare(), "GET", g.base+"/api/recipes", map[string]string{"Cookie": before, "Accept": "application/json"})
			if old.StatusCode != 401 {
				t.Fatalf("the session from before the step-up still works: %d", old.StatusCode)
			}

			// max_age: the provider reports an authentication an hour old
			// (it ignored max_age): refused at the callback.
			r = do(t, c, "GET", g.base+"/api/payments/settings", xhr)
			if r.StatusCode != 200 {
				t.Fatalf("settings right after a login: %d %s", r.StatusCode, r.body)
			}
			g.op.SetAuthTimeShift(time.Hour)
			c2 := g.admin()
			r = do(t, c2, "GET", g.base+"/api/payments/settings", xhr)
			p = r.problem(t)
			if r.StatusCode != 401 || p["error"] != "insufficient_user_authentication" || p["max_age"] != float64(300) {
				t.Fatalf("settings with an hour-old login: %d %s", r.StatusCode, r.body)
			}
			loginURL, _ = p["login_url"].(string)
			res = harness.Login(t, c2, g.base+loginURL, testop.AdminUsername, testop.AdminPassword)
			res.Body.Close()
			if res.StatusCode != 401 || g.op.LastAuthRequest().MaxAge != "300" {
				t.Fatalf("a login whose auth_time ignores max_age: %d (max_age sent %q)", res.StatusCode, g.op.LastAuthRequest().MaxAge)
			}
			// Nor does one from the future, which would meet every
			// max_age for as long as it is ahead.
			g.op.SetAuthTimeShift(-time.Hour)
			res = harness.Login(t, c2, g.base+loginURL, testop.AdminUsername, testop.AdminPassword)
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Fatalf("a login whose auth_time is an hour ahead: %d, want 401", res.StatusCode)
			}
			g.op.SetAuthTimeShift(0)
			res = harness.Login(t, c2, g.base+loginURL, testop.AdminUsername, testop.AdminPassword)
			res.Body.Close()
			if r := do(t, c2, "GET", g.base+"/api/payments/settings", xhr); res.StatusCode != 200 || r.StatusCode != 200 {
				t.Fatalf("settings after a fresh login: login %d, settings %d %s", res.StatusCode, r.StatusCode, r.body)
			}
		})
	}
}

// The login's step-up parameters: max_age 0 asks for a new login (keeping
// the consent offline_access needs), malformed values are refused.
func TestStepUpLoginParameters(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := harness.NewClient(t)
	res := harness.Login(t, c, g.base+"/auth/login?max_age=0&return_to=/welcome", testop.AdminUsername, testop.AdminPassword)
	res.Body.Close()
	seen := g.op.LastAuthRequest()
	if res.StatusCode != 200 || seen.MaxAge != "0" || !strings.Contains(seen.Prompt, "login") || !strings.Contains(seen.Prompt, "consent") {
		t.Fatalf("max_age=0 login: %d, provider saw %+v", res.StatusCode, seen)
	}
	for _, q := range []string{"acr_values=", "acr_values=%20", "acr_values=a%22b", "max_age=-1", "max_age=soon", "max_age=1e3",
		"max_age=99999999999", "max_age=1&max_age=2", "acr_values=" + strings.Repeat("a", 300)} {
		r := do(t, bare(), "GET", g.base+"/auth/login?"+q, nil)
		if r.StatusCode != 400 {
			t.Errorf("login?%s: %d, want 400", q, r.StatusCode)
		}
	}
}

func userInfo(t *testing.T, g *gw, c *http.Client) map[string]any {
	t.Helper()
	r := get(t, c, g.base+"/auth/user?touch=false")
	if r.StatusCode != 200 {
		t.Fatalf("/auth/user: %d %s", r.StatusCode, r.body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// bareWithJar is c without following redirects.
func bareWithJar(c *http.Client) *http.Client {
	n := *c
	n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &n
}

// sessionCookies is the gateway's session cookie(s) in c's jar (the jar
// also holds the provider's cookies: cookies ignore ports).
func sessionCookies(g *gw, c *http.Client) string {
	var parts []string
	for part := range strings.SplitSeq(g.cookieHeader(c), "; ") {
		if strings.HasPrefix(part, "bff_session") {
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, "; ")
}
