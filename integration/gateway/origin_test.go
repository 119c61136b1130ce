package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// originGW runs our caddy over plain HTTP with the given global lines and
// oidc_auth lines.
func originGW(t *testing.T, op *testop.Provider, globals, oidcLines string) *gw {
	t.Helper()
	bin := harness.MustBuildCaddy(t)
	up := harness.NewUpstream(t)
	addr := harness.FreeAddr(t)
	g := &gw{t: t, op: op, up: up, addr: addr, base: "http://" + addr, bin: bin}
	site := fmt.Sprintf(`http://%[1]s {
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		%[4]s
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /welcome {
		respond "welcome" 200
	}
	handle {
		bff_token
		reverse_proxy %[3]s
	}
}
`, addr, op.Issuer(), up.Addr(), oidcLines)
	if globals != "" {
		g.cfg = harness.Caddyfile(site, globals)
	} else {
		g.cfg = harness.Caddyfile(site)
	}
	g.env = []string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKeyA}
	g.caddy = harness.StartCaddy(t, bin, g.cfg, g.env...)
	return g
}

// redirectURI is the redirect_uri of the login a GET of /auth/login
// with hdr starts.
func redirectURI(t *testing.T, base string, hdr map[string]string) (string, *http.Response) {
	t.Helper()
	r := do(t, bare(), "GET", base+"/auth/login", hdr)
	loc, err := url.Parse(r.Header.Get("Location"))
	if r.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("login: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	return loc.Query().Get("redirect_uri"), r.Response
}

// Issue 13, item 1: behind a TLS-terminating proxy (a second Caddy with
// its internal CA) that is among our trusted_proxies, the browser's
// origin is https: login works, the cookie is __Host- and Secure, the
// redirect URI https. The same forwarded headers from a peer that is not
// trusted change nothing; external_url decides without any header.
func TestBehindTLSProxy(t *testing.T) {
	op := startOP(t, 0)
	back := originGW(t, op, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", "")
	frontAddr := harness.FreeAddr(t)
	front := harness.StartCaddy(t, back.bin, strings.Replace(harness.Caddyfile(fmt.Sprintf(`https://%s {
	tls internal
	reverse_proxy %s
}
`, frontAddr, back.addr)), "auto_https off", "auto_https disable_redirects\n\tskip_install_trust\n\tlocal_certs", 1))
	root, err := os.ReadFile(filepath.Join(front.Dir(), "data", "caddy", "pki", "authorities", "local", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	frontBase := "https://" + frontAddr

	// The redirect URI the provider gets is the browser's origin. (The
	// internal CA issues the front's certificate just after start.)
	var r *http.Response
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r, err = c.Get(frontBase + "/auth/login"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	loc, _ := url.Parse(r.Header.Get("Location"))
	if got := loc.Query().Get("redirect_uri"); got != frontBase+"/auth/callback" {
		t.Fatalf("redirect_uri %q, want %s/auth/callback", got, frontBase)
	}
	for _, ck := range r.Cookies() {
		if !strings.HasPrefix(ck.Name, "__Host-") || !ck.Secure {
			t.Fatalf("login cookie %s (Secure %v) behind TLS", ck.Name, ck.Secure)
		}
	}

	lr := harness.Login(t, c, frontBase+"/auth/login?return_to=/welcome", testop.ReaderUsername, testop.ReaderPassword)
	lr.Body.Close()
	if lr.StatusCode != 200 || lr.Request.URL.Path != "/welcome" {
		t.Fatalf("login behind the proxy landed on %s with %d", lr.Request.URL, lr.StatusCode)
	}
	u, _ := url.Parse(frontBase)
	var session *http.Cookie
	for _, ck := range jar.Cookies(u) {
		if strings.Contains(ck.Name, "bff_session") {
			session = ck
		}
	}
	if session == nil || session.Name != "__Host-bff_session" {
		t.Fatalf("session cookie %v, want __Host-bff_session", session)
	}
	if r, err := c.Get(frontBase + "/api/me"); err != nil || r.StatusCode != 200 {
		t.Fatalf("API call through the proxy: %v %v", r, err)
	}
	// A logout from the page (same origin: https://front) passes the CSRF
	// check that compares Origin with the external host.
	req, _ := http.NewRequest("POST", frontBase+"/auth/logout", nil)
	req.Header.Set("Origin", frontBase)
	if r, err := c.Do(req); err != nil || r.StatusCode >= 400 {
		t.Fatalf("logout through the proxy: %v %v", r, err)
	}

	// From a trusted proxy, X-Forwarded-Host is a client's to forge (ALB
	// and GCP pass it through): ignored unless listed in forwarded_hosts.
	// X-Forwarded-Proto counts by its last (nearest proxy's) value.
	if got, _ := redirectURI(t, back.base, map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http, https"}); got != "https://"+back.addr+"/auth/callback" {
		t.Fatalf("trusted proxy, forged X-Forwarded-Host: redirect_uri %q", got)
	}
	listed := originGW(t, op, "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", "forwarded_hosts portal.example.com")
	if got, _ := redirectURI(t, listed.base, map[string]string{"X-Forwarded-Host": "portal.example.com", "X-Forwarded-Proto": "https"}); got != "https://portal.example.com/auth/callback" {
		t.Fatalf("forwarded_hosts: redirect_uri %q", got)
	}
	if got, _ := redirectURI(t, listed.base, map[string]string{"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}); got != "https://"+listed.addr+"/auth/callback" {
		t.Fatalf("forwarded_hosts, unlisted host: redirect_uri %q", got)
	}

	// Not among trusted_proxies: the forwarded headers are ignored.
	untrusted := originGW(t, op, "servers {\n\t\ttrusted_proxies static 10.0.0.0/8\n\t}", "")
	got, resp := redirectURI(t, untrusted.base, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"})
	if got != untrusted.base+"/auth/callback" {
		t.Fatalf("untrusted peer's forwarded headers: redirect_uri %q, want %s/auth/callback", got, untrusted.base)
	}
	for _, ck := range resp.Cookies() {
		if strings.HasPrefix(ck.Name, "__Host-") || ck.Secure {
			t.Fatalf("untrusted peer made the cookie %s Secure %v", ck.Name, ck.Secure)
		}
	}
	noProxies := originGW(t, op, "", "")
	if got, _ := redirectURI(t, noProxies.base, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}); got != noProxies.base+"/auth/callback" {
		t.Fatalf("no trusted_proxies: redirect_uri %q", got)
	}

	// external_url decides, whatever the headers.
	ext := originGW(t, op, "", "external_url https://portal.example.com")
	got, resp = redirectURI(t, ext.base, map[string]string{"X-Forwarded-Host": "evil.example"})
	if got != "https://portal.example.com/auth/callback" {
		t.Fatalf("external_url: redirect_uri %q", got)
	}
	for _, ck := range resp.Cookies() {
		if !strings.HasPrefix(ck.Name, "__Host-") || !ck.Secure {
			t.Fatalf("external_url https: cookie %s Secure %v", ck.Name, ck.Secure)
		}
	}
}
