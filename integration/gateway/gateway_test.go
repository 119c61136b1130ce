package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

const (
	sessionKeyA = "integration-key-A-0123456789abcdef0123456789"
	sessionKeyB = "integration-key-B-0123456789abcdef0123456789"
)

// gwOpts shapes one gateway.
type gwOpts struct {
	store       string // cookie (default) | memory
	keys        string // Caddyfile keys line value; default {env.SESSION_KEY}
	idle, life  string
	scopes      string
	skew        string
	extraOIDC   string // more oidc_auth lines
	opStopped   bool   // stop the provider before caddy starts
	tokenMode   string // bff_token mode; default mint
	accessTTL   time.Duration
	env         []string
	noOfflineOK bool
	sessionMore string // more session lines (a redis block)
	siteMore    string // more site directives
	https       bool   // serve the site over HTTPS with Caddy's internal CA
}

// gw is one running gateway with its provider and upstream.
type gw struct {
	t       *testing.T
	op      *testop.Provider
	up      *harness.Upstream
	caddy   *harness.Caddy
	base    string
	addr    string
	cfg     string
	env     []string
	bin     string
	keyFile string
	opts    gwOpts
}

// sibling starts another instance of the same gateway (same provider,
// upstream, keys and config) on its own address, as a second node behind a
// load balancer.
func (g *gw) sibling() *gw {
	g.t.Helper()
	addr := harness.FreeAddr(g.t)
	s := &gw{t: g.t, op: g.op, up: g.up, addr: addr, base: "http://" + addr, bin: g.bin,
		keyFile: g.keyFile, opts: g.opts, env: g.env}
	s.cfg = g.opts.caddyfile(addr, g.op.Issuer(), g.up.Addr(), g.keyFile)
	s.caddy = harness.StartCaddy(g.t, g.bin, s.cfg, s.env...)
	return s
}

// as sends c's cookies for g to other instead: the load balancer sent the
// browser's next request to another node.
func (g *gw) moveCookies(c *http.Client, other *gw) {
	from, _ := url.Parse(g.base)
	to, _ := url.Parse(other.base)
	c.Jar.SetCookies(to, c.Jar.Cookies(from))
}

func writeSigningKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startOP(t *testing.T, accessTTL time.Duration) *testop.Provider {
	t.Helper()
	op, err := testop.Start(testop.Config{
		AccessTokenTTL:         accessTTL,
		RedirectURIs:           []string{"http://127.0.0.1:*/auth/callback", "https://127.0.0.1:*/auth/callback"},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:*/", "https://127.0.0.1:*/"},
	})
	if err != nil {
		t.Fatalf("provider: %v", err)
	}
	t.Cleanup(func() { _ = op.Close() })
	return op
}

func (o gwOpts) caddyfile(addr, issuer, upstream, keyFile string) string {
	or := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	mode := or(o.tokenMode, "mint")
	token := fmt.Sprintf(`bff_token {
			mode mint
			audience test-api
			issuer http://%s
			claims email name
			signing_key %s
		}`, addr, keyFile)
	switch mode {
	case "access_token":
		token = "bff_token"
	case "exchange":
		token = `bff_token {
			mode exchange
			audience test-api
			scopes recipes:read
		}`
	}
	scheme, tlsLine := "http", ""
	if o.https {
		scheme, tlsLine = "https", "tls internal"
	}
	site := fmt.Sprintf(`%[15]s://%[1]s {
	%[16]s
	log {
		output stderr
		format filter {
			request>uri query {
				delete code
				delete state
				delete sid
			}
			wrap json
		}
	}
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes %[4]s
		public /assets/* /public/* /.well-known/jwks.json
		refresh_skew %[9]s
		%[10]s
		session {
			store %[5]s
			keys %[6]s
			idle_timeout %[7]s
			lifetime %[8]s
			%[13]s
		}
	}
	%[14]s
	handle /.well-known/jwks.json {
		bff_jwks {
			signing_key %[11]s
		}
	}
	handle /api/* {
		%[12]s
		reverse_proxy %[3]s
	}
	handle {
		reverse_proxy %[3]s
	}
}
`, addr, issuer, upstream, or(o.scopes, "openid profile email offline_access recipes:read"),
		or(o.store, "cookie"), or(o.keys, "{env.SESSION_KEY}"), or(o.idle, "30m"), or(o.life, "12h"),
		or(o.skew, "30s"), o.extraOIDC, keyFile, token, o.sessionMore, o.siteMore, scheme, tlsLine)
	if o.https {
		// Automatic HTTPS stays on for the internal CA's certificate, but
		// never redirects, never touches the system trust store.
		return strings.Replace(harness.Caddyfile(site), "auto_https off", "auto_https disable_redirects\n\tskip_install_trust\n\tlocal_certs", 1)
	}
	return harness.Caddyfile(site)
}

func startGW(t *testing.T, o gwOpts) *gw {
	t.Helper()
	bin := harness.MustBuildCaddy(t)
	op := startOP(t, o.accessTTL)
	up := harness.NewUpstream(t)
	addr := harness.FreeAddr(t)
	g := &gw{t: t, op: op, up: up, addr: addr, base: "http://" + addr, bin: bin}
	if o.https {
		g.base = "https://" + addr
	}
	g.keyFile = writeSigningKey(t)
	g.opts = o
	g.cfg = o.caddyfile(addr, op.Issuer(), up.Addr(), g.keyFile)
	g.env = append([]string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKeyA}, o.env...)
	if o.opStopped {
		if err := op.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	g.caddy = harness.StartCaddy(t, bin, g.cfg, g.env...)
	return g
}

// restart replaces the gateway process with one running cfg (the same
// address), as an operator's redeploy would.
func (g *gw) restart(cfg string, env ...string) {
	g.t.Helper()
	g.caddy.Stop()
	if cfg != "" {
		g.cfg = cfg
	}
	if env != nil {
		g.env = env
	}
	g.caddy = harness.StartCaddy(g.t, g.bin, g.cfg, g.env...)
}

// resp is a finished response with its body read.
type resp struct {
	*http.Response
	body string
}

func (r resp) problem(t *testing.T) map[string]any {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d: Content-Type %q, want application/problem+json; body %s", r.StatusCode, ct, r.body)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, r.body)
	}
	if p["status"] != float64(r.StatusCode) || p["request_id"] == "" || p["request_id"] == nil || p["title"] == "" {
		t.Fatalf("problem body incomplete: %s", r.body)
	}
	return p
}

func do(t *testing.T, c *http.Client, method, u string, hdr map[string]string) resp {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	r, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	return resp{r, string(b)}
}

func get(t *testing.T, c *http.Client, u string) resp { return do(t, c, "GET", u, nil) }

// login logs in as user and returns the logged-in client.
func (g *gw) login(user, pass string) *http.Client {
	g.t.Helper()
	c := harness.NewClient(g.t)
	r := harness.Login(g.t, c, g.base+"/auth/login?return_to=/welcome", user, pass)
	r.Body.Close()
	if r.StatusCode != 200 || r.Request.URL.Path != "/welcome" {
		g.t.Fatalf("login landed on %s with %d, want /welcome 200", r.Request.URL, r.StatusCode)
	}
	return c
}

func (g *gw) admin() *http.Client { return g.login(testop.AdminUsername, testop.AdminPassword) }

// cookieHeader is the Cookie header the client's jar would send to the
// gateway.
func (g *gw) cookieHeader(c *http.Client) string {
	u, _ := url.Parse(g.base)
	var parts []string
	for _, ck := range c.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

// bare is a client with no jar and no redirects, for hand-made cookies.
func bare() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

func TestLoginAndForward(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin()

	up, ok := g.up.Last()
	if !ok || up.Path != "/welcome" {
		t.Fatalf("upstream did not get the return_to page: %+v", up)
	}

	r := get(t, c, g.base+"/api/recipes")
	if r.StatusCode != 200 {
		t.Fatalf("GET /api/recipes with a session: %d %s", r.StatusCode, r.body)
	}
	last, _ := g.up.Last()
	if !strings.HasPrefix(last.Authorization(), "Bearer ") {
		t.Fatal("upstream got no bearer token")
	}
	if rid := r.Header.Get("X-Request-ID"); rid == "" || last.Header.Get("X-Request-ID") != rid {
		t.Fatalf("request id not sent upstream and back: client %q upstream %q", rid, last.Header.Get("X-Request-ID"))
	}
	if strings.Contains(r.body, last.BearerToken()) {
		t.Fatal("the token reached the browser")
	}

	// The user endpoint: claims, scopes, expiry, never a token.
	u := get(t, c, g.base+"/auth/user")
	if u.StatusCode != 200 {
		t.Fatalf("/auth/user: %d %s", u.StatusCode, u.body)
	}
	var user map[string]any
	if err := json.Unmarshal([]byte(u.body), &user); err != nil {
		t.Fatal(err)
	}
	if user["sub"] != testop.AdminSubject || user["email"] != testop.AdminEmail {
		t.Fatalf("/auth/user = %s", u.body)
	}
	for _, k := range []string{"expires_at", "idle_expires_at", "scopes"} {
		if user[k] == nil {
			t.Fatalf("/auth/user lacks %s: %s", k, u.body)
		}
	}
	for _, bad := range []string{"access_token", "refresh_token", "id_token", "eyJ"} {
		if strings.Contains(u.body, bad) {
			t.Fatalf("/auth/user leaks %q: %s", bad, u.body)
		}
	}

	// Access log: user_id set; no code, state or token in any log line.
	time.Sleep(0) // logs are written synchronously before the response
	logs := g.caddy.Logs()
	if !strings.Contains(logs, `"user_id":"`+testop.AdminSubject+`"`) {
		t.Error("access log has no user_id")
	}
	assertNoSecrets(t, logs, last.BearerToken(), g.cookieHeader(c), g.op.ClientSecret(), sessionKeyA)
}

// assertNoSecrets fails when any secret appears in the logs.
func assertNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		for _, part := range strings.Split(s, "; ") {
			_, v, _ := strings.Cut(part, "=")
			if v == "" {
				v = part
			}
			if len(v) >= 16 && strings.Contains(logs, v) {
				t.Errorf("a secret (%.8s…) appears in the logs", v)
			}
		}
	}
	if strings.Contains(logs, "code=") && strings.Contains(logs, "/auth/callback?") {
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "/auth/callback?") && strings.Contains(line, "code=") && !strings.Contains(line, "code=REDACTED") {
				t.Errorf("an authorization code appears in the logs: %.200s", line)
			}
		}
	}
}

func TestAnonymous(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := bare()
	nav := do(t, c, "GET", g.base+"/recipes/42?tab=1", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
	if nav.StatusCode != http.StatusFound {
		t.Fatalf("navigation: %d, want 302", nav.StatusCode)
	}
	loc, _ := url.Parse(nav.Header.Get("Location"))
	if loc.Path != "/auth/login" || loc.Query().Get("return_to") != "/recipes/42?tab=1" {
		t.Fatalf("navigation redirected to %s", loc)
	}
	api := do(t, c, "GET", g.base+"/api/recipes", map[string]string{"Accept": "application/json", "Sec-Fetch-Mode": "cors"})
	if api.StatusCode != 401 {
		t.Fatalf("fetch: %d, want 401", api.StatusCode)
	}
	if p := api.problem(t); !strings.HasPrefix(fmt.Sprint(p["login_url"]), "/auth/login") {
		t.Fatalf("401 without login_url: %s", api.body)
	}
	post := do(t, c, "POST", g.base+"/api/recipes", nil)
	if post.StatusCode != 401 {
		t.Fatalf("anonymous POST: %d, want 401", post.StatusCode)
	}
	pub := get(t, c, g.base+"/public/logo.svg")
	if pub.StatusCode != 200 {
		t.Fatalf("public path: %d", pub.StatusCode)
	}
	if n := len(g.up.Requests()); n != 1 {
		t.Fatalf("upstream saw %d requests, want only the public one", n)
	}
	// A forged Authorization header or identity never passes.
	forged := do(t, c, "GET", g.base+"/api/recipes", map[string]string{"Authorization": "Bearer forged", "X-Auth-User": "admin"})
	if forged.StatusCode != 401 {
		t.Fatalf("forged Authorization: %d", forged.StatusCode)
	}
	pub = do(t, c, "GET", g.base+"/public/x", map[string]string{"Authorization": "Bearer forged"})
	if last, _ := g.up.Last(); last.Authorization() != "" {
		t.Fatalf("a client's Authorization reached the upstream on a public path: %q", last.Authorization())
	}
}

func TestReturnToAttacks(t *testing.T) {
	g := startGW(t, gwOpts{})
	for _, rt := range []string{
		"//evil.example", "/\\evil.example", "https://evil.example", "/%2F%2Fevil.example", "/%2f%2fevil.example",
		"/%5Cevil.example", "\\\\evil.example", "http:evil.example", "/\t/evil.example", "javascript:alert(1)",
		"//evil.example/%2e%2e", "///evil.example", "/%09/evil.example", "%2F%2Fevil.example",
	} {
		t.Run(rt, func(t *testing.T) {
			c := harness.NewClient(t)
			r := harness.Login(t, c, g.base+"/auth/login?return_to="+url.QueryEscape(rt), testop.AdminUsername, testop.AdminPassword)
			r.Body.Close()
			if r.Request.URL.Host != g.addr || r.Request.URL.Path != "/" {
				t.Fatalf("return_to %q landed on %s", rt, r.Request.URL)
			}
		})
	}
}

func TestForgedAndReplayedCallbacks(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := harness.NewClient(t)
	cb := harness.LoginToCallback(t, c, g.base+"/auth/login?return_to=/x", testop.AdminUsername, testop.AdminPassword)
	q := cb.Query()
	cbURL := func(mod func(url.Values)) string {
		v := url.Values{}
		for k, vs := range q {
			v[k] = append([]string(nil), vs...)
		}
		mod(v)
		return g.base + "/auth/callback?" + v.Encode()
	}
	noSession := func(t *testing.T, r resp) {
		t.Helper()
		if r.StatusCode < 400 || r.StatusCode >= 500 {
			t.Fatalf("status %d, want 4xx: %s", r.StatusCode, r.body)
		}
		r.problem(t)
		for _, ck := range r.Cookies() {
			if strings.Contains(ck.Name, "bff_session") && ck.MaxAge >= 0 && ck.Value != "" {
				t.Fatal("a forged callback set a session cookie")
			}
		}
	}
	// Forgeries first, each from a client that never started a login, or
	// with the state altered: no session, no 500.
	for name, u := range map[string]string{
		"no state":       cbURL(func(v url.Values) { v.Del("state") }),
		"other state":    cbURL(func(v url.Values) { v.Set("state", "AAAA"+q.Get("state")[4:]) }),
		"huge state":     cbURL(func(v url.Values) { v.Set("state", strings.Repeat("s", 5000)) }),
		"two states":     cbURL(func(v url.Values) { v.Add("state", "x") }),
		"provider error": cbURL(func(v url.Values) { v.Del("code"); v.Set("error", "access_denied") }),
		"bad error":      cbURL(func(v url.Values) { v.Del("code"); v.Set("error", "<script>") }),
	} {
		t.Run(name, func(t *testing.T) {
			noSession(t, do(t, bare(), "GET", u, map[string]string{"Cookie": g.cookieHeader(c)}))
		})
	}
	t.Run("stranger", func(t *testing.T) { noSession(t, get(t, bare(), cbURL(func(url.Values) {}))) })
	t.Run("forged code", func(t *testing.T) {
		c2 := harness.NewClient(t)
		cb2 := harness.LoginToCallback(t, c2, g.base+"/auth/login", testop.ReaderUsername, testop.ReaderPassword)
		v := cb2.Query()
		v.Set("code", "forged-code")
		noSession(t, get(t, c2, g.base+"/auth/callback?"+v.Encode()))
	})
	t.Run("POST", func(t *testing.T) {
		r := do(t, bare(), "POST", cbURL(func(url.Values) {}), nil)
		if r.StatusCode != 405 {
			t.Fatalf("POST callback: %d", r.StatusCode)
		}
	})

	// The genuine callback works once; its replay does not.
	ok := get(t, c, cb.String())
	if ok.StatusCode != 302 || ok.Header.Get("Location") != "/x" {
		t.Fatalf("genuine callback: %d %s %s", ok.StatusCode, ok.Header.Get("Location"), ok.body)
	}
	stolen := g.cookieHeader(c)
	_ = stolen
	replay := do(t, bare(), "GET", cb.String(), nil)
	noSession(t, replay)
	c3 := harness.NewClient(t)
	// Even with a fresh login cookie of its own, an attacker cannot bind
	// the victim's code to their browser (state mismatch).
	r := harness.LoginToCallback(t, c3, g.base+"/auth/login", testop.ReaderUsername, testop.ReaderPassword)
	_ = r
	noSession(t, get(t, c3, cb.String()))
}

func TestParallelLogins(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := harness.NewClient(t)
	// Two tabs start logins; the second finishes first.
	cb1 := harness.LoginToCallback(t, c, g.base+"/auth/login?return_to=/tab1", testop.AdminUsername, testop.AdminPassword)
	cb2 := harness.LoginToCallback(t, c, g.base+"/auth/login?return_to=/tab2", testop.AdminUsername, testop.AdminPassword)
	for _, tc := range []struct {
		cb   *url.URL
		want string
	}{{cb2, "/tab2"}, {cb1, "/tab1"}} {
		r := get(t, c, tc.cb.String())
		if r.StatusCode != 302 || r.Header.Get("Location") != tc.want {
			t.Fatalf("callback: %d to %q, want %s: %s", r.StatusCode, r.Header.Get("Location"), tc.want, r.body)
		}
	}
}

func TestHostileCookies(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin()
	var sess string
	u, _ := url.Parse(g.base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "bff_session" {
			sess = ck.Value
		}
	}
	if sess == "" {
		t.Fatal("no bff_session cookie after login")
	}
	flip := func(i int) string {
		b := []byte(sess)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	other, err := forgeWithKey(sess)
	_ = err
	for name, cookie := range map[string]string{
		"tampered":     "bff_session=" + flip(len(sess)/2),
		"tampered kid": "bff_session=" + flip(2),
		"truncated":    "bff_session=" + sess[:len(sess)-10],
		"kid only":     "bff_session=" + sess[:9],
		"empty":        "bff_session=",
		"garbage":      "bff_session=%%%%%%",
		"oversized":    "bff_session=" + strings.Repeat("A", 60000),
		"many chunks":  "bff_session=" + sess[:100] + strings.Repeat("; bff_session.1=AAAA", 50),
		"stale key":    "bff_session=" + other,
		"json":         `bff_session={"i":"x","s":"admin"}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := do(t, bare(), "GET", g.base+"/api/recipes", map[string]string{"Cookie": cookie})
			if r.StatusCode != 401 && r.StatusCode != 400 && r.StatusCode != 431 {
				t.Fatalf("status %d, want 401 (or 400/431 for oversized): %s", r.StatusCode, r.body)
			}
		})
	}
	// The genuine cookie still works, sent by hand.
	r := do(t, bare(), "GET", g.base+"/api/recipes", map[string]string{"Cookie": "bff_session=" + sess})
	if r.StatusCode != 200 {
		t.Fatalf("genuine cookie by hand: %d", r.StatusCode)
	}
	if strings.Contains(g.caddy.Logs(), "panic") {
		t.Fatal("caddy panicked")
	}
}

// forgeWithKey returns a syntactically valid sealed value under an unknown
// key id: what a cookie sealed with a retired key looks like.
func forgeWithKey(sess string) (string, error) {
	return "ZZZZZZZZ" + sess[8:], nil
}

func TestKeyRotation(t *testing.T) {
	g := startGW(t, gwOpts{keys: "{env.SESSION_KEY} {env.SESSION_KEY_PREVIOUS}", env: []string{"SESSION_KEY_PREVIOUS=" + sessionKeyB + "-older-0123"}})
	c := g.admin()
	// Rotate: a new key seals, the old one still opens.
	g.restart("", "OIDC_CLIENT_SECRET="+g.op.ClientSecret(), "SESSION_KEY="+sessionKeyB, "SESSION_KEY_PREVIOUS="+sessionKeyA)
	if r := get(t, c, g.base+"/api/recipes"); r.StatusCode != 200 {
		t.Fatalf("after rotation: %d %s", r.StatusCode, r.body)
	}
	// Retire the old key: sessions sealed only under it end.
	g.restart("", "OIDC_CLIENT_SECRET="+g.op.ClientSecret(), "SESSION_KEY="+sessionKeyB, "SESSION_KEY_PREVIOUS="+sessionKeyB+"-other-0123")
	if r := get(t, c, g.base+"/api/recipes"); r.StatusCode != 401 {
		t.Fatalf("a session sealed under a retired key still works: %d", r.StatusCode)
	}
	c2 := g.admin()
	if r := get(t, c2, g.base+"/api/recipes"); r.StatusCode != 200 {
		t.Fatalf("fresh login under the new key: %d", r.StatusCode)
	}
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		g := startGW(t, gwOpts{idle: "2s", life: "1h"})
		c := g.admin()
		if r := get(t, c, g.base+"/api/x"); r.StatusCode != 200 {
			t.Fatalf("fresh session: %d", r.StatusCode)
		}
		time.Sleep(3 * time.Second) // real time: the gateway is another process
		if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
			t.Fatalf("after idle timeout: %d, want 401", r.StatusCode)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		g := startGW(t, gwOpts{idle: "2s", life: "4s"})
		start := time.Now() // the session starts after this, during the login
		c := g.admin()
		for time.Since(start) < 3*time.Second { // use keeps it from idling out
			if r := get(t, c, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("active session ended %v after login started: %d", time.Since(start), r.StatusCode)
			}
			time.Sleep(500 * time.Millisecond)
		}
		time.Sleep(time.Until(start.Add(4500 * time.Millisecond)))
		if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
			t.Fatalf("after lifetime: %d, want 401", r.StatusCode)
		}
	})
}

func TestLogout(t *testing.T) {
	for _, store := range []string{"cookie", "memory"} {
		t.Run(store, func(t *testing.T) {
			g := startGW(t, gwOpts{store: store})
			c := g.admin()
			copied := g.cookieHeader(c)
			if r := get(t, c, g.base+"/auth/logout"); r.StatusCode != 405 {
				t.Fatalf("GET logout: %d, want 405", r.StatusCode)
			}
			if r := get(t, c, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("GET logout ended the session: %d", r.StatusCode)
			}
			evil := do(t, c, "POST", g.base+"/auth/logout", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
			if evil.StatusCode != 403 {
				t.Fatalf("cross-site logout: %d, want 403", evil.StatusCode)
			}
			before := g.op.Stats().Revocations
			r, es := logout(t, g, c)
			// RP-Initiated Logout as an auto-submitted POST: the ID token
			// is in the page's form, not in a URL.
			if r.StatusCode != 200 || es.method != "POST" || !strings.HasPrefix(es.action.String(), g.op.Issuer()) ||
				es.params.Get("id_token_hint") == "" || es.params.Get("post_logout_redirect_uri") != g.base+"/" {
				t.Fatalf("logout: %d, end session %s %v %v", r.StatusCode, es.method, es.action, es.params)
			}
			if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'sha256-") {
				t.Fatalf("logout page CSP %q", csp)
			}
			if !sessionCookieCleared(r) {
				t.Fatal("logout did not clear the session cookie")
			}
			if g.op.Stats().Revocations != before+1 {
				t.Fatal("refresh token not revoked at the provider")
			}
			if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
				t.Fatalf("after logout: %d", r.StatusCode)
			}
			if r := do(t, bare(), "GET", g.base+"/api/x", map[string]string{"Cookie": copied}); r.StatusCode != 401 {
				t.Fatalf("a copy of the old cookie still works after logout: %d", r.StatusCode)
			}
			// The provider's end-session page is expected, not an error.
			if e := es.submit(t, c); e.StatusCode >= 400 {
				t.Fatalf("end_session: %d %s", e.StatusCode, e.body)
			}
			if g.op.Stats().EndSessions == 0 {
				t.Fatal("the provider saw no end-session request")
			}
		})
	}
}

func TestCSRF(t *testing.T) {
	g := startGW(t, gwOpts{extraOIDC: "trusted_origins http://trusted.example"})
	c := g.admin()
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, 403},
		{"same-site other origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.2:1"}, 403},
		{"origin only", map[string]string{"Origin": "http://evil.example"}, 403},
		{"null origin", map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403},
		{"same origin", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": g.base}, 200},
		{"trusted origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://trusted.example"}, 200},
		{"non-browser client", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.up.Reset()
			for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
				r := do(t, c, m, g.base+"/api/recipes/1", tc.hdr)
				if r.StatusCode != tc.want {
					t.Fatalf("%s: %d, want %d", m, r.StatusCode, tc.want)
				}
			}
			if tc.want == 403 && len(g.up.Requests()) != 0 {
				t.Fatal("a refused request reached the upstream")
			}
		})
	}
	// Safe methods cross-site are fine (navigation, images).
	if r := do(t, c, "GET", g.base+"/api/recipes", map[string]string{"Sec-Fetch-Site": "cross-site"}); r.StatusCode != 200 {
		t.Fatalf("cross-site GET: %d", r.StatusCode)
	}
}

func TestHeaderStripping(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin()
	g.up.Reset()
	u, _ := url.Parse(g.base)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark"}})
	r := do(t, c, "GET", g.base+"/api/recipes", map[string]string{"Authorization": "Bearer forged-by-client"})
	if r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	last, _ := g.up.Last()
	if last.BearerToken() == "forged-by-client" || last.BearerToken() == "" {
		t.Fatalf("upstream Authorization = %q", last.Authorization())
	}
	cookie := last.Header.Get("Cookie")
	if strings.Contains(cookie, "bff_session") || strings.Contains(cookie, "bff_login") || !strings.Contains(cookie, "theme=dark") {
		t.Fatalf("upstream Cookie = %q", cookie)
	}
	// Same on a public path and a non-API path.
	for _, p := range []string{"/public/a", "/page"} {
		get(t, c, g.base+p)
		last, _ = g.up.Last()
		if strings.Contains(last.Header.Get("Cookie"), "bff_session") || last.Authorization() != "" {
			t.Fatalf("%s: upstream got our cookie or an Authorization header", p)
		}
	}
}

// A token shorter-lived than the skew (20s, default refresh_skew 30s) is
// refreshed at half its life, not on every request from the moment it is
// issued (issue 11: 6 refresh-and-rotate calls in 6s were measured).
func TestShortTokensDoNotStormTheProvider(t *testing.T) {
	g := startGW(t, gwOpts{accessTTL: 20 * time.Second, tokenMode: "access_token"})
	c := g.admin()
	g.op.ResetStats()
	for range 12 {
		if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
			t.Fatalf("%d", r.StatusCode)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 0 {
		t.Fatalf("%d refresh calls in 6s of a 20s token's life, want 0", n)
	}
	// Past half its life it is refreshed, once.
	time.Sleep(5 * time.Second)
	for range 3 {
		if r := get(t, c, g.base+"/api/b"); r.StatusCode != 200 {
			t.Fatalf("%d", r.StatusCode)
		}
	}
	if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 1 {
		t.Fatalf("%d refresh calls after half the token's life, want 1", n)
	}
}

func TestRefresh(t *testing.T) {
	// Tokens live 6s (expires_in may round down to 5s); the effective skew
	// is min(refresh_skew 4s, half the lifetime): due for refresh 2.5-3s
	// after they are issued.
	g := startGW(t, gwOpts{accessTTL: 6 * time.Second, skew: "4s", tokenMode: "access_token"})
	c := g.admin()
	r := get(t, c, g.base+"/api/a")
	first, _ := g.up.Last()
	if r.StatusCode != 200 || first.BearerToken() == "" {
		t.Fatalf("%d", r.StatusCode)
	}
	time.Sleep(3500 * time.Millisecond) // within the skew of expiry
	g.op.ResetStats()
	// Many requests race the refresh; exactly one refresh happens.
	errs := make(chan int, 20)
	for range 20 {
		go func() { errs <- do(t, c, "GET", g.base+"/api/b", nil).StatusCode }()
	}
	for range 20 {
		if code := <-errs; code != 200 {
			t.Fatalf("racing request: %d", code)
		}
	}
	if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 1 {
		t.Fatalf("%d refresh calls at the provider, want 1", n)
	}
	last, _ := g.up.Last()
	if last.BearerToken() == first.BearerToken() {
		t.Fatal("upstream still gets the old access token")
	}
	// invalid_grant ends the session at once, though the access token is
	// still valid (TestInvalidGrantEndsSession covers every store).
	time.Sleep(3500 * time.Millisecond)
	g.op.RevokeRefreshTokens(testop.AdminUsername)
	if r := get(t, c, g.base+"/api/c"); r.StatusCode != 401 {
		t.Fatalf("invalid_grant with a still-valid access token: %d, want 401", r.StatusCode)
	}
	if r := get(t, c, g.base+"/api/c"); r.StatusCode != 401 {
		t.Fatalf("session revived: %d", r.StatusCode)
	}
}

func TestProviderDown(t *testing.T) {
	t.Run("at boot", func(t *testing.T) {
		g := startGW(t, gwOpts{opStopped: true})
		r := do(t, bare(), "GET", g.base+"/auth/login", nil)
		if r.StatusCode != 503 {
			t.Fatalf("login with the provider down: %d, want 503", r.StatusCode)
		}
		r.problem(t)
		if err := g.op.Restart(); err != nil {
			t.Fatal(err)
		}
		// Discovery retries with backoff (at most 10s).
		deadline := time.Now().Add(15 * time.Second)
		for {
			r = do(t, bare(), "GET", g.base+"/auth/login", nil)
			if r.StatusCode == 302 || time.Now().After(deadline) {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		if r.StatusCode != 302 {
			t.Fatalf("login after the provider came back: %d", r.StatusCode)
		}
		g.admin()
	})
	t.Run("mid-session", func(t *testing.T) {
		g := startGW(t, gwOpts{accessTTL: 3 * time.Second, skew: "1s", tokenMode: "access_token"})
		c := g.admin()
		if err := g.op.Stop(); err != nil {
			t.Fatal(err)
		}
		// The token is still valid: the session keeps working.
		if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
			t.Fatalf("valid token, provider down: %d", r.StatusCode)
		}
		time.Sleep(3 * time.Second)
		r := get(t, c, g.base+"/api/a")
		if r.StatusCode != 503 {
			t.Fatalf("expired token, provider down: %d, want 503", r.StatusCode)
		}
		r.problem(t)
		if err := g.op.Restart(); err != nil {
			t.Fatal(err)
		}
		if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
			t.Fatalf("provider back: %d", r.StatusCode)
		}
	})
}
