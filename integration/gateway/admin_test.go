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

// withAdmin turns Caddy's admin endpoint on at addr in a gateway's config.
func withAdmin(cfg, addr string) string {
	return strings.Replace(cfg, "admin off", "admin "+addr, 1)
}

func adminCall(t *testing.T, method, u string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	return r.StatusCode, body
}

// Issue 13, item 5: an operator lists a user's sessions and ends them all
// (a stolen laptop, an offboarding) through Caddy's admin endpoint: on the
// Redis store and on the cookie store alike, never seeing a token or an id.
func TestSessionAdminAPI(t *testing.T) {
	rd := harness.StartRedis(t)
	adminAddr := harness.FreeAddr(t)
	o := gwOpts{store: "redis", sessionMore: redisBlock(rd.Addr())}
	g := startGW(t, o)
	// Restart it with the admin endpoint on (the harness turns it off).
	g.caddy.Stop()
	g.caddy = harness.StartCaddy(t, g.bin, withAdmin(g.cfg, adminAddr), g.env...)
	a1, a2, reader := g.admin(), g.admin(), g.reader()
	base := "http://" + adminAddr + "/bff/sessions?sub=" + url.QueryEscape(testop.AdminSubject)

	status, body := adminCall(t, "GET", base)
	sessions, _ := body["sessions"].([]any)
	if status != 200 || len(sessions) != 2 {
		t.Fatalf("GET: %d %v, want the admin's 2 sessions", status, body)
	}
	raw, _ := json.Marshal(body)
	for _, c := range []*http.Client{a1, a2} {
		for _, ck := range c.Jar.Cookies(mustURL(g.base)) {
			if len(ck.Value) > 16 && strings.Contains(string(raw), ck.Value[:16]) {
				t.Fatal("the listing holds a cookie value")
			}
		}
	}
	if strings.Contains(string(raw), "eyJ") {
		t.Fatal("the listing holds a token")
	}

	status, body = adminCall(t, "DELETE", base)
	if status != 200 || body["ended"] != float64(2) {
		t.Fatalf("DELETE: %d %v", status, body)
	}
	for i, c := range []*http.Client{a1, a2} {
		if r := do(t, c, "GET", g.base+"/api/x", map[string]string{"Accept": "application/json"}); r.StatusCode != 401 {
			t.Fatalf("admin session %d after DELETE: %d", i+1, r.StatusCode)
		}
	}
	if r := get(t, reader, g.base+"/api/x"); r.StatusCode != 200 {
		t.Fatalf("another user's session after DELETE: %d", r.StatusCode)
	}
	if status, _ := adminCall(t, "DELETE", "http://"+adminAddr+"/bff/sessions"); status != 400 {
		t.Fatalf("DELETE without sub or sid: %d", status)
	}
	if status, _ := adminCall(t, "GET", "http://"+adminAddr+"/bff/sessions"); status != 400 {
		t.Fatalf("GET without sub: %d", status)
	}
	g.caddy.WaitLog("admin_end_sessions", 5*time.Second) // stderr comes through a pipe
	found := false
	for _, e := range g.caddy.LogEntries() {
		if e["msg"] == "admin_end_sessions" && e["sub"] == testop.AdminSubject && e["outcome"] == "success" {
			found = true
		}
	}
	if !found {
		t.Fatal("no audit entry for the DELETE")
	}
}

// The cookie store cannot list, but DELETE ends its sessions through the
// ended-subject list.
func TestSessionAdminCookieStore(t *testing.T) {
	adminAddr := harness.FreeAddr(t)
	g := startGW(t, gwOpts{})
	g.caddy.Stop()
	g.caddy = harness.StartCaddy(t, g.bin, withAdmin(g.cfg, adminAddr), g.env...)
	c := g.admin()
	base := "http://" + adminAddr + "/bff/sessions?sub=" + url.QueryEscape(testop.AdminSubject)
	if status, body := adminCall(t, "GET", base); status != 200 || body["unlisted"] == nil {
		t.Fatalf("GET on the cookie store: %d %v", status, body)
	}
	if status, body := adminCall(t, "DELETE", base); status != 200 || body["all_counted"] != false {
		t.Fatalf("DELETE on the cookie store: %d %v", status, body)
	}
	if r := do(t, c, "GET", g.base+"/api/x", map[string]string{"Accept": "application/json"}); r.StatusCode != 401 {
		t.Fatalf("cookie session after DELETE: %d", r.StatusCode)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// max_sessions_per_user: a login beyond the limit ends the user's oldest
// session, on the memory and the Redis store; other users are untouched.
func TestMaxSessionsPerUser(t *testing.T) {
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			o := gwOpts{store: store, sessionMore: "max_sessions_per_user 2"}
			if store == "redis" {
				o.sessionMore += "\n\t\t\t" + redisBlock(harness.StartRedis(t).Addr())
			}
			g := startGW(t, o)
			reader := g.reader()
			first, second, third := g.admin(), g.admin(), g.admin()
			want := map[*http.Client]int{first: 401, second: 200, third: 200, reader: 200}
			for c, code := range want {
				if r := do(t, c, "GET", g.base+"/api/x", map[string]string{"Accept": "application/json"}); r.StatusCode != code {
					t.Errorf("%d, want %d", r.StatusCode, code)
				}
			}
		})
	}
}
