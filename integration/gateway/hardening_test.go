package gateway

// End-to-end tests of the hardening of issue 9: each one reproduces what a
// user or an attacker saw, against our caddy binary and the real provider.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// endSession is where a logout response sends the browser: the provider's
// end_session_endpoint with the RP-Initiated Logout parameters.
type endSession struct {
	method string     // GET (a redirect) or POST (an auto-submitted form)
	action *url.URL   // the endpoint, without the parameters
	params url.Values // id_token_hint, client_id, post_logout_redirect_uri, ...
}

// logout POSTs the logout form as the shell does and returns where it
// sends the browser. A redirect must carry no token in its URL; the
// provider's end-session request is an auto-submitted POST form.
func logout(t *testing.T, g *gw, c *http.Client) (resp, endSession) {
	t.Helper()
	r := do(t, c, "POST", g.base+"/auth/logout", map[string]string{
		"Origin": g.base, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"})
	switch r.StatusCode {
	case http.StatusSeeOther:
		loc, err := url.Parse(r.Header.Get("Location"))
		if err != nil {
			t.Fatalf("logout Location: %v", err)
		}
		params := loc.Query()
		loc.RawQuery = ""
		return r, endSession{method: "GET", action: loc, params: params}
	case http.StatusOK:
		return r, parseEndSessionForm(t, r)
	}
	t.Fatalf("logout: %d %s", r.StatusCode, r.body)
	return r, endSession{}
}

// parseEndSessionForm reads the auto-submitting form of a logout page.
func parseEndSessionForm(t *testing.T, r resp) endSession {
	t.Helper()
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("logout page Content-Type %q", r.Header.Get("Content-Type"))
	}
	action, method, fields, err := harness.PageForm(r.body, r.Request.URL)
	if err != nil || method != "POST" {
		t.Fatalf("logout page has no POST form (%v): %s", err, r.body)
	}
	return endSession{method: method, action: action, params: fields}
}

// submit sends the end-session request as the browser would.
func (es endSession) submit(t *testing.T, c *http.Client) resp {
	t.Helper()
	if es.method == "GET" {
		u := *es.action
		u.RawQuery = es.params.Encode()
		return get(t, c, u.String())
	}
	req, err := http.NewRequest("POST", es.action.String(), strings.NewReader(es.params.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return resp{r, string(b)}
}

// sessionCookieSet reports whether a response sets (not expires) a session cookie.
func sessionCookieSet(r resp) bool {
	for _, ck := range r.Cookies() {
		if strings.Contains(ck.Name, "bff_session") && ck.MaxAge >= 0 && ck.Value != "" {
			return true
		}
	}
	return false
}

// sessionCookieCleared reports whether a response expires a session cookie.
func sessionCookieCleared(r resp) bool {
	for _, ck := range r.Cookies() {
		if strings.Contains(ck.Name, "bff_session") && ck.MaxAge < 0 {
			return true
		}
	}
	return false
}

// Item 1: a copy of the cookie that a thief kept using after the victim's
// last request outlives the victim's idle end; a logout (or a new login in
// the same browser) must still be remembered until the session's
// absolute end, so that copy stays dead.
func TestEndedSessionStaysDeadUntilLifetime(t *testing.T) {
	for _, tc := range []struct{ name, store string }{
		{"cookie", "cookie"}, {"cookie with redis", "cookie"}, {"memory", "memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := gwOpts{store: tc.store, idle: "10s", life: "1h"}
			if strings.HasSuffix(tc.name, "redis") {
				o.sessionMore = redisBlock(harness.StartRedis(t).Addr())
			}
			g := startGW(t, o)
			victim := g.admin()  // logs out
			victim2 := g.admin() // logs in again over the old session
			loggedIn := time.Now()

			// The thief's copies are used (and so touched: the touch
			// interval is 1s at idle_timeout 10s) after the victims' last use.
			steal := func(c *http.Client) string {
				thief := harness.NewClient(t)
				u, _ := url.Parse(g.base)
				thief.Jar.SetCookies(u, c.Jar.Cookies(u))
				for _, wait := range []time.Duration{1500 * time.Millisecond, 4 * time.Second} {
					time.Sleep(time.Until(loggedIn.Add(wait)))
					if r := get(t, thief, g.base+"/api/x"); r.StatusCode != 200 {
						t.Fatalf("the stolen copy before logout: %d", r.StatusCode)
					}
				}
				return g.cookieHeader(thief)
			}
			stolen, stolen2 := steal(victim), steal(victim2)

			logout(t, g, victim)
			r := harness.Login(t, victim2, g.base+"/auth/login?return_to=/welcome", testop.AdminUsername, testop.AdminPassword)
			r.Body.Close()
			for _, ck := range []string{stolen, stolen2} {
				if r := do(t, bare(), "GET", g.base+"/api/x", map[string]string{"Cookie": ck}); r.StatusCode != 401 {
					t.Fatalf("the stolen copy right after the ending: %d, want 401", r.StatusCode)
				}
			}
			// Past the victims' idle end (their last use was the login),
			// before the copies' idle end.
			time.Sleep(time.Until(loggedIn.Add(11 * time.Second)))
			for i, ck := range []string{stolen, stolen2} {
				r := do(t, bare(), "GET", g.base+"/api/x", map[string]string{"Cookie": ck})
				if r.StatusCode != 401 {
					t.Fatalf("copy %d after the victim's idle end: %d, want 401 (ending %s)", i+1, r.StatusCode, []string{"logout", "new login"}[i])
				}
			}
		})
	}
}

// Item 2: a refresh answered with invalid_grant ends the session at once,
// on every store, even while the access token is still valid; in mint mode
// no JWT is minted for it any more.
func TestInvalidGrantEndsSession(t *testing.T) {
	for _, tc := range []struct{ name, store, mode string }{
		{"cookie mint", "cookie", "mint"},
		{"cookie access_token", "cookie", "access_token"},
		{"memory mint", "memory", "mint"},
		{"redis mint", "redis", "mint"},
		{"cookie with redis mint", "cookie+redis", "mint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := gwOpts{store: strings.TrimSuffix(tc.store, "+redis"), tokenMode: tc.mode, accessTTL: 8 * time.Second, skew: "6s"}
			if tc.store != "memory" && tc.store != "cookie" {
				o.sessionMore = redisBlock(harness.StartRedis(t).Addr())
			}
			g := startGW(t, o)
			c := g.admin()
			if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
				t.Fatalf("%d", r.StatusCode)
			}
			// The provider revokes the grant; the access token stays valid
			// for ~8s, and the gateway refreshes from half its life on
			// (min(refresh_skew 6s, 4s)).
			g.op.RevokeRefreshTokens(testop.AdminUsername)
			time.Sleep(4500 * time.Millisecond)
			g.up.Reset()
			r := do(t, c, "GET", g.base+"/api/b", map[string]string{"Accept": "application/json"})
			if r.StatusCode != 401 {
				t.Fatalf("after invalid_grant, token still valid: %d, want 401", r.StatusCode)
			}
			if p := r.problem(t); !strings.HasPrefix(fmt.Sprint(p["login_url"]), "/auth/login") {
				t.Fatalf("401 without login_url: %s", r.body)
			}
			if n := len(g.up.Requests()); n != 0 {
				t.Fatalf("the upstream got %d requests of a session whose grant was revoked", n)
			}
			if r := get(t, c, g.base+"/api/c"); r.StatusCode != 401 {
				t.Fatalf("the session revived: %d", r.StatusCode)
			}
		})
	}
}

// redisACLBlock is a redis block that logs in as user gw.
func redisACLBlock(addr string) string {
	return fmt.Sprintf("redis {\n\t\t\t\taddress %s\n\t\t\t\tusername gw\n\t\t\t\tpassword gw-password-0123456789\n\t\t\t\tkey_prefix test:\n\t\t\t\tread_timeout 500ms\n\t\t\t\tdial_timeout 500ms\n\t\t\t}", addr)
}

// aclGW starts a gateway whose Redis user may touch keys matching keys only.
func setACL(t *testing.T, rd *harness.Redis, keys ...string) {
	t.Helper()
	args := []string{"ACL", "SETUSER", "gw", "reset", "on", ">gw-password-0123456789", "+@all", "&*"}
	for _, k := range keys {
		args = append(args, "~"+k)
	}
	if out, err := rd.Command(args...); err != nil || out != "OK" {
		t.Fatalf("ACL SETUSER: %q %v", out, err)
	}
}

// Item 3: with the store down, logout answers 503 and claims nothing: no
// cookie cleared, no redirect; once the store is back, the retried logout
// ends the session for good.
func TestLogoutWithStoreDown(t *testing.T) {
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			rd := harness.StartRedis(t)
			g := startGW(t, gwOpts{store: store, sessionMore: redisBlock(rd.Addr())})
			c := g.admin()
			copied := g.cookieHeader(c)
			before := g.op.Stats().Revocations

			rd.Pause()
			r := do(t, c, "POST", g.base+"/auth/logout", map[string]string{"Origin": g.base, "Sec-Fetch-Site": "same-origin"})
			rd.Resume()
			if r.StatusCode != 503 {
				t.Fatalf("logout with the store down: %d, want 503 (%s)", r.StatusCode, r.body)
			}
			r.problem(t)
			if r.Header.Get("Retry-After") == "" || r.Header.Get("Location") != "" || sessionCookieCleared(r) {
				t.Fatalf("a failed logout claimed success: Retry-After %q Location %q Set-Cookie %q",
					r.Header.Get("Retry-After"), r.Header.Get("Location"), r.Header.Values("Set-Cookie"))
			}
			if g.op.Stats().Revocations != before {
				t.Fatal("the refresh token was revoked though the session was not ended")
			}
			if r := get(t, c, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("the session after the failed logout: %d (it was not ended, and says so)", r.StatusCode)
			}

			// The retry completes the logout.
			_, es := logout(t, g, c)
			if es.action == nil || !strings.HasPrefix(es.action.String(), g.op.Issuer()) {
				t.Fatalf("the retried logout does not lead to the provider: %+v", es)
			}
			if g.op.Stats().Revocations != before+1 {
				t.Fatal("the retried logout did not revoke the refresh token")
			}
			if r := do(t, bare(), "GET", g.base+"/api/x", map[string]string{"Cookie": copied}); r.StatusCode != 401 {
				t.Fatalf("a copy of the cookie after the retried logout: %d, want 401", r.StatusCode)
			}
		})
	}
}

// Item 4: a back-channel logout whose endings could not be stored answers
// 503, and the provider's retry of the same logout_token then works: the
// jti is recorded only once the endings are.
func TestBackchannelLogoutRetry(t *testing.T) {
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			rd := harness.StartRedis(t)
			setACL(t, rd, "*")
			g := startGW(t, gwOpts{store: store, sessionMore: redisACLBlock(rd.Addr())})
			c := g.admin()
			tok, err := g.op.LogoutToken(testop.AdminSubject, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			// Redis refuses the endings (a misconfigured ACL, a full
			// memory, a failover): everything else still works.
			setACL(t, rd, "test:s:*", "test:bysub:*", "test:bysid:*", "test:jti:*", "test:lock:*", "test:rr:*")
			if r := postLogoutToken(t, g, tok); r.StatusCode != 503 {
				t.Fatalf("back-channel logout with the endings refused: %d, want 503", r.StatusCode)
			}
			setACL(t, rd, "*")
			if r := postLogoutToken(t, g, tok); r.StatusCode != 200 {
				t.Fatalf("the provider's retry: %d, want 200", r.StatusCode)
			}
			if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
				t.Fatalf("the session after the retried back-channel logout: %d, want 401", r.StatusCode)
			}
			if r := postLogoutToken(t, g, tok); r.StatusCode != 400 {
				t.Fatalf("a replay after success: %d, want 400", r.StatusCode)
			}
		})
	}
}

// redisDump returns every key and value in Redis, sets as their members.
func redisDump(t *testing.T, rd *harness.Redis) map[string]string {
	t.Helper()
	keys, err := rd.Command("KEYS", "*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range strings.Split(keys, "\n") {
		if k == "" {
			continue
		}
		typ, _ := rd.Command("TYPE", k)
		switch strings.TrimPrefix(typ, "+") {
		case "string":
			out[k], _ = rd.Command("GET", k)
		case "set":
			out[k], _ = rd.Command("SMEMBERS", k)
		default:
			out[k] = typ
		}
	}
	return out
}

// Item 5: a Redis dump yields no session id, no token and no claim: the
// values hold hashes, expiries and a sealed blob that only the cookie's
// session id opens.
func TestRedisDumpHoldsNoSecret(t *testing.T) {
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			rd := harness.StartRedis(t)
			a := startGW(t, gwOpts{store: store, sessionMore: redisBlock(rd.Addr()),
				accessTTL: 6 * time.Second, skew: "4s", tokenMode: "access_token"})
			b := a.sibling()
			c := a.admin()
			get(t, c, a.base+"/api/warm")
			first, _ := a.up.Last()
			// A refresh raced across instances leaves its result in Redis.
			time.Sleep(3500 * time.Millisecond)
			if codes := race(t, 20, a.cookieHeader(c), a, b); codes[200] != 20 {
				t.Fatalf("refresh race: %v", codes)
			}
			last, _ := a.up.Last()
			secrets := map[string]string{
				"access token":     first.BearerToken(),
				"new access token": last.BearerToken(),
				"email":            testop.AdminEmail,
				"name":             testop.AdminName,
				"JWT":              "eyJ",
			}
			for i, rt := range a.op.RefreshTokens(testop.AdminUsername) {
				secrets[fmt.Sprintf("refresh token %d", i)] = rt
			}
			u, _ := url.Parse(a.base)
			for _, ck := range c.Jar.Cookies(u) {
				if strings.Contains(ck.Name, "bff_session") {
					secrets["session cookie "+ck.Name] = ck.Value
				}
			}
			dump := redisDump(t, rd)
			if len(dump) == 0 {
				t.Fatal("Redis is empty")
			}
			sawRefresh := false
			for k, v := range dump {
				if strings.HasPrefix(k, "test:rr:") {
					sawRefresh = true
				}
				for what, s := range secrets {
					if s == "" {
						t.Fatalf("no %s to look for", what)
					}
					probe := s
					if len(probe) > 24 && what != "JWT" {
						probe = s[len(s)-24:] // a tail: no chunk boundary or prefix hides it
					}
					if strings.Contains(k, probe) || strings.Contains(v, probe) {
						t.Errorf("Redis key %q holds the %s", k, what)
					}
				}
			}
			if !sawRefresh {
				t.Errorf("no shared refresh result in Redis; keys: %v", keysOf(dump))
			}
		})
	}
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Item 6: with Caddy's access log on (the documented filter for the
// callback's code and state) and debug logs, a whole session — login, API
// calls, refresh, /auth/user, logout, back-channel logout — writes no
// token, code, cookie value or secret anywhere; and no response of ours
// puts a token in a URL.
func TestNoTokenInAnyLog(t *testing.T) {
	g := startGW(t, gwOpts{accessTTL: 6 * time.Second, skew: "4s", tokenMode: "access_token"})
	c := harness.NewClient(t)
	cb := harness.LoginToCallback(t, c, g.base+"/auth/login?return_to=/welcome", testop.AdminUsername, testop.AdminPassword)
	code := cb.Query().Get("code")
	if r := get(t, c, cb.String()); r.StatusCode != 302 {
		t.Fatalf("callback: %d", r.StatusCode)
	}
	secrets := []string{code, g.op.ClientSecret(), sessionKeyA}
	cookies := func() {
		u, _ := url.Parse(g.base)
		for _, ck := range c.Jar.Cookies(u) {
			secrets = append(secrets, ck.Value)
		}
	}
	cookies()
	get(t, c, g.base+"/api/a")
	first, _ := g.up.Last()
	get(t, c, g.base+"/auth/user")
	time.Sleep(3500 * time.Millisecond) // refresh due
	get(t, c, g.base+"/api/b")
	second, _ := g.up.Last()
	if second.BearerToken() == first.BearerToken() {
		t.Fatal("no refresh happened")
	}
	secrets = append(secrets, first.BearerToken(), second.BearerToken())
	secrets = append(secrets, g.op.RefreshTokens(testop.AdminUsername)...)
	cookies()

	r, es := logout(t, g, c)
	if loc := r.Header.Get("Location"); strings.Contains(loc, "eyJ") || strings.Contains(loc, "id_token_hint") {
		t.Fatalf("the logout puts the ID token in a URL: %.120s", loc)
	}
	idToken := es.params.Get("id_token_hint")
	if idToken == "" || es.params.Get("post_logout_redirect_uri") != g.base+"/" || es.params.Get("client_id") != "bff" {
		t.Fatalf("end-session parameters: %v", es.params)
	}
	secrets = append(secrets, idToken)
	if e := es.submit(t, c); e.StatusCode >= 400 {
		t.Fatalf("the provider refused the end-session request: %d %s", e.StatusCode, e.body)
	}

	c2 := g.admin()
	tok, err := g.op.LogoutToken(testop.AdminSubject, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := postLogoutToken(t, g, tok); r.StatusCode != 200 {
		t.Fatalf("back-channel logout: %d", r.StatusCode)
	}
	if r := get(t, c2, g.base+"/api/x"); r.StatusCode != 401 {
		t.Fatalf("after back-channel logout: %d", r.StatusCode)
	}
	secrets = append(secrets, tok)

	logs := g.caddy.Logs()
	if !strings.Contains(logs, `"resp_headers"`) || !strings.Contains(logs, "/auth/logout") {
		t.Fatal("the access log did not record the requests")
	}
	assertNoSecrets(t, logs, secrets...)
	if strings.Contains(logs, "eyJ") {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "eyJ") {
				t.Errorf("a JWT in the logs: %.300s", line)
			}
		}
	}
}

// Item 9: a WebSocket handshake is a GET, but one carrying the session
// cookie from another origin (a sibling subdomain is same-site, so the Lax
// cookie goes along) is refused like an unsafe method; a same-origin
// WebSocket proxied with the session works.
func TestWebSocketOrigin(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin()
	cookie := g.cookieHeader(c)
	handshake := func(t *testing.T, hdr map[string]string) resp {
		t.Helper()
		h := map[string]string{
			"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Cookie": cookie,
		}
		req, _ := http.NewRequest("GET", g.base+"/api/ws", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		r, err := bare().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		if r.StatusCode == http.StatusSwitchingProtocols {
			return resp{r, ""} // the connection is the WebSocket now
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		return resp{r, string(b)}
	}
	for name, hdr := range map[string]map[string]string{
		"cross-site":       {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "websocket"},
		"same-site":        {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "websocket"},
		"origin only":      {"Origin": "http://evil.example"},
		"null origin":      {"Origin": "null"},
		"other port, bare": {"Origin": "http://127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			g.up.Reset()
			r := handshake(t, hdr)
			if r.StatusCode != 403 {
				t.Fatalf("cross-origin WebSocket handshake with the session: %d, want 403", r.StatusCode)
			}
			r.problem(t)
			if n := len(g.up.Requests()); n != 0 {
				t.Fatalf("the upstream saw %d handshakes", n)
			}
		})
	}
	t.Run("same origin", func(t *testing.T) {
		g.up.Reset()
		cfg, err := websocket.NewConfig("ws://"+g.addr+"/api/ws", g.base)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Header = http.Header{"Cookie": {cookie}}
		ws, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatalf("same-origin WebSocket with the session: %v", err)
		}
		defer func() {
			// Let the proxied connection end before caddy stops: Caddy
			// 2.11.9's reverse_proxy races with itself (hijackedConn's byte
			// count) when it closes an upgraded connection at shutdown
			// while that connection's copier still runs.
			_ = ws.Close()
			if !g.up.WaitWebSocketsClosed(5 * time.Second) {
				t.Error("the proxied WebSocket did not close")
			}
			time.Sleep(200 * time.Millisecond)
		}()
		_ = ws.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := ws.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(ws, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
		last, ok := g.up.Last()
		if !ok || !strings.HasPrefix(last.Authorization(), "Bearer ") || strings.Contains(last.Header.Get("Cookie"), "bff_session") {
			t.Fatalf("the upstream's handshake: Authorization %q Cookie %q", last.Authorization(), last.Header.Get("Cookie"))
		}
	})
}

// Item 8: the method the policy (and the CSRF check) judged is the method
// the upstream acts on: a method-override header naming another method is
// refused, one naming the request's own method never reaches the upstream.
func TestMethodOverride(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin()
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		for _, path := range []string{"/api/recipes/1", "/public/x", "/page"} {
			t.Run(h+" "+path, func(t *testing.T) {
				g.up.Reset()
				r := do(t, c, "POST", g.base+path, map[string]string{h: "DELETE", "Origin": g.base})
				if r.StatusCode != 400 {
					t.Fatalf("POST with %s: DELETE: %d, want 400", h, r.StatusCode)
				}
				r.problem(t)
				if len(g.up.Requests()) != 0 {
					t.Fatal("the upstream saw it")
				}
				r = do(t, c, "GET", g.base+path, map[string]string{h: "get"})
				if r.StatusCode != 200 {
					t.Fatalf("GET with %s: get: %d", h, r.StatusCode)
				}
				if last, _ := g.up.Last(); last.Header.Get(h) != "" {
					t.Fatalf("%s reached the upstream", h)
				}
			})
		}
	}
	// The _method query parameter (Express, Laravel, Symfony) likewise.
	g.up.Reset()
	if r := do(t, c, "POST", g.base+"/api/recipes/1?_method=DELETE", map[string]string{"Origin": g.base}); r.StatusCode != 400 {
		t.Fatalf("POST ?_method=DELETE: %d, want 400", r.StatusCode)
	}
	if len(g.up.Requests()) != 0 {
		t.Fatal("the upstream saw POST ?_method=DELETE")
	}
	// Path-override headers (IIS URL Rewrite, older Symfony) never reach
	// the upstream.
	r := do(t, c, "GET", g.base+"/api/recipes/1", map[string]string{"X-Original-URL": "/api/admin/users", "X-Rewrite-URL": "/api/admin/users"})
	if r.StatusCode != 200 {
		t.Fatalf("GET with X-Original-URL: %d", r.StatusCode)
	}
	if last, _ := g.up.Last(); last.Header.Get("X-Original-URL") != "" || last.Header.Get("X-Rewrite-URL") != "" {
		t.Fatal("a path-override header reached the upstream")
	}
}

// Item 11: a refresh that grows the claims past what the cookie store can
// hold is not cut silently: an error log names the size and the limit, the
// request gets 503, and no (truncated) cookie is set.
func TestSessionOutgrowsCookie(t *testing.T) {
	g := startGW(t, gwOpts{accessTTL: 6 * time.Second, skew: "4s", tokenMode: "access_token"})
	c := g.admin()
	if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	groups := make([]string, 2500)
	for i := range groups {
		var b [12]byte
		_, _ = rand.Read(b[:])
		groups[i] = base64.RawURLEncoding.EncodeToString(b[:])
	}
	g.op.SetGroups(testop.AdminUsername, groups)
	time.Sleep(3500 * time.Millisecond) // refresh due
	r := get(t, c, g.base+"/api/b")
	if r.StatusCode != 503 {
		t.Fatalf("a refresh that outgrows the cookie: %d, want 503", r.StatusCode)
	}
	r.problem(t)
	if sessionCookieSet(r) {
		t.Fatal("a truncated session cookie was set")
	}
	// Caddy's stderr reaches the harness through a pipe, maybe after the
	// answer does.
	g.caddy.WaitLog("session too large", 5*time.Second)
	found := false
	for _, e := range g.caddy.LogEntries() {
		if e["level"] == "error" && strings.Contains(fmt.Sprint(e["msg"]), "too large") && e["bytes"] != nil && e["limit"] != nil {
			found = true
		}
	}
	if !found {
		t.Fatalf("no error log naming the size and the limit:\n%s", g.caddy.Logs())
	}
}

// Item 12: one client's disconnect never fails the other requests waiting
// on the same refresh, here while another instance holds the refresh lock.
func TestRefreshWaitSurvivesDisconnect(t *testing.T) {
	rd := harness.StartRedis(t)
	a := startGW(t, gwOpts{store: "redis", sessionMore: redisBlock(rd.Addr()),
		accessTTL: 3 * time.Second, skew: "1s", tokenMode: "access_token"})
	b := a.sibling()
	c := a.admin()
	if r := get(t, c, a.base+"/api/x"); r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	// The access token has expired: no request can be served without the
	// refresh (a still-valid token would be served while it fails).
	time.Sleep(3500 * time.Millisecond)
	a.op.DelayTokenEndpoint(testop.GrantRefreshToken, 2*time.Second)
	cookie := a.cookieHeader(c)
	// Count the race's refreshes only: on a loaded machine the first call
	// may already have come after the token's refresh point.
	a.op.ResetStats()
	var wg sync.WaitGroup
	codes := make(chan string, 2)
	send := func(name string, g *gw, timeout time.Duration) {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", g.base+"/api/"+name, nil)
		req.Header.Set("Cookie", cookie)
		r, err := bare().Do(req)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) || name != "leaves" {
				codes <- name + ": " + err.Error()
			}
			return
		}
		r.Body.Close()
		if name != "leaves" {
			codes <- fmt.Sprintf("%s: %d", name, r.StatusCode)
		}
	}
	wg.Add(3)
	go send("locks", b, 20*time.Second) // b refreshes, slowly, holding the lock
	time.Sleep(300 * time.Millisecond)
	go send("leaves", a, 500*time.Millisecond) // a waits for b; this client goes away
	time.Sleep(100 * time.Millisecond)
	go send("waits", a, 20*time.Second) // waits with it on a
	wg.Wait()
	close(codes)
	for got := range codes {
		if !strings.HasSuffix(got, ": 200") {
			t.Errorf("%s, want 200", got)
		}
	}
	if n := a.op.TokenCalls(testop.GrantRefreshToken); n != 1 {
		t.Errorf("%d refresh calls, want 1", n)
	}

}

// Item 14 (RFC 9207): an authorization response whose iss is not our
// issuer is refused, and creates no session; the right iss is accepted.
func TestCallbackIssuer(t *testing.T) {
	g := startGW(t, gwOpts{})
	for _, tc := range []struct {
		iss  string
		want int
	}{{"http://evil.example", 400}, {g.op.Issuer() + "/", 400}, {g.op.Issuer(), 302}} {
		t.Run(tc.iss, func(t *testing.T) {
			c := harness.NewClient(t)
			cb := harness.LoginToCallback(t, c, g.base+"/auth/login?return_to=/x", testop.AdminUsername, testop.AdminPassword)
			q := cb.Query()
			q.Set("iss", tc.iss)
			cb.RawQuery = q.Encode()
			r := get(t, c, cb.String())
			if r.StatusCode != tc.want {
				t.Fatalf("callback with iss=%s: %d, want %d: %s", tc.iss, r.StatusCode, tc.want, r.body)
			}
			if tc.want != 302 {
				r.problem(t)
				if sessionCookieSet(r) {
					t.Fatal("a session was created")
				}
				if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
					t.Fatalf("after the refused callback: %d", r.StatusCode)
				}
			}
		})
	}
}

var _ = json.Marshal
