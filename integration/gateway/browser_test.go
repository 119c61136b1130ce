package gateway

import (
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-bff/caddy-bff/integration/internal/browser"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// Over HTTPS (Caddy's `tls internal`), the browser stores the session as
// __Host-bff_session: Secure, HttpOnly, SameSite=Lax, Path=/, no Domain,
// and scripts cannot read it.
func TestBrowserHTTPSCookie(t *testing.T) {
	g := startGW(t, gwOpts{https: true})
	b := browser.Start(t, browser.Options{IgnoreCertErrors: true})
	b.MustDo(chromedp.Navigate(g.base + "/deep/link?x=1"))
	b.MustDo(
		chromedp.WaitVisible(`input[name="username"]`),
		chromedp.SendKeys(`input[name="username"]`, testop.AdminUsername),
		chromedp.SendKeys(`input[type="password"]`, testop.AdminPassword),
		chromedp.Submit(`input[type="password"]`),
	)
	raw := b.WaitLocation(func(s string) bool { return strings.Contains(s, "/deep/link") })
	if loc, _ := url.Parse(raw); loc.Scheme != "https" || loc.RawQuery != "x=1" {
		t.Fatalf("landed on %s", loc)
	}
	res, err := chromedp.Call(b.Ctx(), network.GetCookies, network.GetCookiesParams{URLs: []string{g.base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var found *network.Cookie
	for _, c := range res.Cookies {
		if strings.Contains(c.Name, "bff_login") {
			t.Errorf("a login cookie outlived the login: %s", c.Name)
		}
		if c.Name == "__Host-bff_session" {
			found = c
		}
		if c.Name == "bff_session" {
			t.Error("the plain-HTTP cookie name was used over HTTPS")
		}
	}
	if found == nil {
		t.Fatalf("no __Host-bff_session cookie; cookies: %+v", res.Cookies)
	}
	if !found.Secure || !found.HTTPOnly || found.SameSite != network.CookieSameSiteLax || found.Path != "/" || strings.HasPrefix(found.Domain, ".") {
		t.Fatalf("cookie attributes: Secure %v HttpOnly %v SameSite %q Path %q Domain %q",
			found.Secure, found.HTTPOnly, found.SameSite, found.Path, found.Domain)
	}
	if c := browser.Eval[string](b, `document.cookie`); strings.Contains(c, "bff_session") {
		t.Fatalf("document.cookie shows the session: %q", c)
	}
	if last, ok := g.up.Last(); !ok || strings.Contains(last.Header.Get("Cookie"), "bff_session") {
		t.Fatal("the upstream got no request, or saw our session cookie")
	}
}
