package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-bff/caddy-bff/integration/internal/browser"
	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// The demo portal in a real browser: Debian's headless Chromium, driven
// through the provider's real login form.

func gatewayURL(d *demo) string { return "http://" + d.o.gatewayAddr }

// loginInBrowser fills the provider's form the page was sent to and waits
// for the shell to show the user.
func loginInBrowser(t *testing.T, b *browser.Browser, user, pass string) {
	t.Helper()
	b.MustDo(
		chromedp.WaitVisible(`input[name="username"]`),
		chromedp.SendKeys(`input[name="username"]`, user),
		chromedp.SendKeys(`input[type="password"]`, pass),
		chromedp.Submit(`input[type="password"]`),
		chromedp.WaitVisible(`#who .name`),
	)
}

// appCards waits for the shell to mount its applications and returns
// their names (the card ids), once every card has rendered its API answer.
func appCards(t *testing.T, b *browser.Browser) []string {
	t.Helper()
	browser.MustGet(b, chromedp.PollFunction[bool](`() => {
		const cards = [...document.querySelectorAll('#apps article.card')];
		return cards.length > 0 && cards.every(c => !/Loading/.test(c.innerText));
	}`, chromedp.WithPollingTimeout(15*time.Second)))
	ids := browser.Eval[[]string](b, `[...document.querySelectorAll('#apps article.card')].map(c => c.id.replace(/^app-/, ''))`)
	slices.Sort(ids)
	return ids
}

func timed(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		start := time.Now()
		f(t)
		t.Logf("scenario %q took %v", name, time.Since(start).Round(10*time.Millisecond))
	})
}

func TestBrowserPortal(t *testing.T) {
	d := startDemo(t, true)
	gw := gatewayURL(d)

	timed(t, "deep link login as admin, all apps, no token visible", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/recipes?tab=all"))
		loginInBrowser(t, b, testop.AdminUsername, testop.AdminPassword)
		loc := browser.MustGet(b, chromedp.Location())
		if u, _ := url.Parse(loc); u.Path != "/recipes" || u.Query().Get("tab") != "all" {
			t.Fatalf("after login the browser is at %s, want the deep link /recipes?tab=all", loc)
		}
		if apps := appCards(t, b); !slices.Equal(apps, []string{"admin", "editor", "payments", "recipes"}) {
			t.Fatalf("admin sees apps %v", apps)
		}
		// Each app's API call succeeded: no problem box in any card.
		if n := browser.Eval[int](b, `document.querySelectorAll('#apps .problem').length`); n != 0 {
			t.Fatalf("%d app cards show a problem: %s", n, browser.Eval[string](b, `document.querySelector('#apps').innerText`))
		}
		if txt := browser.Eval[string](b, `document.querySelector('#app-recipes').innerText`); !strings.Contains(txt, testop.AdminSubject) {
			t.Fatalf("recipes card does not show the API's answer for the admin: %q", txt)
		}
		// No token is visible to JavaScript.
		if c := browser.Eval[string](b, `document.cookie`); strings.Contains(c, "bff_session") {
			t.Fatalf("document.cookie shows the session cookie: %q", c)
		}
		if s := browser.Eval[string](b, `JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})`); strings.Contains(s, "eyJ") || len(s) > 4 {
			t.Fatalf("web storage holds something: %s", s)
		}
		bodies := browser.Eval[string](b, `Promise.all(['/auth/user', '/applications', '/api/me', '/api/recipes', '/api/admin/stats']
			.map(p => fetch(p).then(r => r.text() + JSON.stringify([...r.headers])))).then(a => a.join('\n'))`)
		if strings.Contains(bodies, "eyJ") || strings.Contains(strings.ToLower(bodies), "bearer") {
			t.Fatalf("a response the page can read carries a token:\n%s", bodies)
		}
		// The cookie as the browser stores it.
		ck := sessionCookie(t, b, gw)
		if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteLax || ck.Path != "/" {
			t.Fatalf("session cookie attributes: HttpOnly %v SameSite %q Path %q", ck.HTTPOnly, ck.SameSite, ck.Path)
		}
	})

	timed(t, "the reader sees a different set of apps", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/"))
		loginInBrowser(t, b, testop.ReaderUsername, testop.ReaderPassword)
		if apps := appCards(t, b); !slices.Equal(apps, []string{"payments", "recipes"}) {
			t.Fatalf("reader sees apps %v, want payments and recipes", apps)
		}
		if txt := browser.Eval[string](b, `document.querySelector('#who').innerText`); !strings.Contains(txt, "recipes:read") || strings.Contains(txt, "admin") {
			t.Fatalf("header shows %q", txt)
		}
	})

	timed(t, "payments ask for a step-up login, then work", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/payments"))
		loginInBrowser(t, b, testop.ReaderUsername, testop.ReaderPassword)
		appCards(t, b)
		if acr := browser.Eval[string](b, `fetch('/auth/user?touch=false').then(r => r.json()).then(u => u.acr)`); acr != "pwd" {
			t.Fatalf("acr after a plain login: %q", acr)
		}
		// The payments card offers the step-up; its API refuses meanwhile.
		b.MustDo(chromedp.WaitVisible(`#app-payments [data-testid="step-up-login"]`))
		status := browser.Eval[float64](b, `fetch('/api/payments', {headers: {Accept: 'application/json'}}).then(async r => { window.__p = await r.json(); return r.status })`)
		if status != 401 || browser.Eval[string](b, `window.__p.error`) != "insufficient_user_authentication" {
			t.Fatalf("payments API before the step-up: %v %s", status, browser.Eval[string](b, `JSON.stringify(window.__p)`))
		}
		sessionBefore := sessionCookie(t, b, gw).Value
		b.MustDo(chromedp.Click(`#app-payments [data-testid="step-up-login"]`))
		loginInBrowser(t, b, testop.ReaderUsername, testop.ReaderPassword)
		if loc := browser.MustGet(b, chromedp.Location()); !strings.HasSuffix(loc, "/payments") {
			t.Fatalf("after the step-up the browser is at %s, want /payments", loc)
		}
		if seen := d.op.LastAuthRequest(); seen.ACRValues != "mfa" {
			t.Fatalf("the step-up login sent acr_values %q", seen.ACRValues)
		}
		if sessionCookie(t, b, gw).Value == sessionBefore {
			t.Fatal("the step-up kept the session cookie: a new session must replace the old")
		}
		b.MustDo(chromedp.WaitVisible(`#app-payments [data-testid="payments"]`))
		b.MustDo(
			chromedp.SendKeys(`#app-payments input[name="to"]`, "Bob"),
			chromedp.SendKeys(`#app-payments input[name="amount"]`, "12.5"),
			chromedp.Click(`#app-payments button[type="submit"]`),
			chromedp.WaitVisible(`#app-payments [data-testid="paid"]`),
		)
		if txt := browser.Eval[string](b, `document.querySelector('#app-payments').innerText`); !strings.Contains(txt, "12.5 to Bob") {
			t.Fatalf("payments card after sending: %q", txt)
		}
		if acr := browser.Eval[string](b, `fetch('/auth/user?touch=false').then(r => r.json()).then(u => u.acr)`); acr != "mfa" {
			t.Fatalf("acr after the step-up: %q", acr)
		}
	})

	timed(t, "expired session: 401 with login_url, back to where the user was", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/recipes"))
		loginInBrowser(t, b, testop.ReaderUsername, testop.ReaderPassword)
		appCards(t, b)
		// The provider ends the user's sessions (back-channel logout).
		tok, err := d.op.LogoutToken(testop.ReaderSubject, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.PostForm(gw+"/auth/backchannel-logout", url.Values{"logout_token": {tok}})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("back-channel logout: %v %v", err, resp)
		}
		resp.Body.Close()
		status := browser.Eval[float64](b, `fetch('/api/recipes').then(async r => { window.__p = await r.json(); return r.status })`)
		if status != 401 || !strings.HasPrefix(browser.Eval[string](b, `window.__p.login_url`), "/auth/login") {
			t.Fatalf("fetch after the session ended: %v %v", status, browser.Eval[string](b, `JSON.stringify(window.__p)`))
		}
		// The shell learns it by itself (its session events), takes the
		// user's data off the page, offers the login and brings the user
		// back here. (An app's own call would get the same 401, but the
		// shell's notice removes the apps within seconds, so a click on
		// one would race it.)
		b.MustDo(
			chromedp.WaitVisible(`[data-testid="signed-out"]`),
			chromedp.Click(`[data-testid="signed-out"] a`),
		)
		loginInBrowser(t, b, testop.ReaderUsername, testop.ReaderPassword)
		if loc, _ := url.Parse(browser.MustGet(b, chromedp.Location())); loc.Path != "/recipes" {
			t.Fatalf("after logging in again the browser is at %s, want /recipes", loc)
		}
		if apps := appCards(t, b); !slices.Equal(apps, []string{"payments", "recipes"}) {
			t.Fatalf("apps after re-login: %v", apps)
		}
	})

	timed(t, "logout from the page; back shows no data", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/"))
		loginInBrowser(t, b, testop.AdminUsername, testop.AdminPassword)
		appCards(t, b)
		b.MustDo(chromedp.Click(`#logout button`))
		if err := b.Do(
			// The provider's end_session sends us back to /, which sends an
			// anonymous visitor to the login form.
			chromedp.WaitVisible(`input[name="username"]`),
		); err != nil {
			h := browser.MustGet(b, chromedp.NavigationEntries())
			for _, e := range h.Entries {
				t.Logf("history: %s", e.URL)
			}
			t.Fatalf("after logout: %v", err)
		}
		if r, err := http.Get(gw + "/api/me"); err == nil {
			r.Body.Close()
		}
		// The back button: whatever page it shows, it must not show the
		// user's data (the login form, or the shell without a session).
		browser.MustGet(b, chromedp.Evaluate[int]("history.back(), 0"))
		b.MustDo(chromedp.Sleep(1500 * time.Millisecond))
		body := browser.Eval[string](b, `document.body ? document.body.innerText : ''`)
		if strings.Contains(body, testop.AdminSubject) || strings.Contains(body, "recipes:write") || strings.Contains(body, "Logged in as") {
			t.Fatalf("after logout, back shows the user's data:\n%s", body)
		}
		ck, _ := findCookie(t, b, gw, "bff_session")
		if ck != nil {
			t.Fatalf("the session cookie survived logout: %+v", ck)
		}
	})

	timed(t, "two tabs: logout in one, the other shows signed out by itself", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/"))
		loginInBrowser(t, b, testop.AdminUsername, testop.AdminPassword)
		appCards(t, b)
		// A second tab of the same browser: the same cookie.
		tab2, closeTab2 := chromedp.NewContext(b.Ctx())
		defer closeTab2()
		// The first Run opens the tab and binds it to its context: that
		// must be the tab's own, not a timeout's.
		opened := time.AfterFunc(20*time.Second, closeTab2)
		if _, err := chromedp.Run(tab2, chromedp.Evaluate[int]("1")); err != nil {
			t.Fatalf("second tab: %v", err)
		}
		opened.Stop()
		run := func(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
			ctx, cancel := context.WithTimeout(tab2, d)
			defer cancel()
			return chromedp.Do(ctx, steps...)
		}
		if err := run(20*time.Second, chromedp.Navigate(gw+"/"), chromedp.WaitVisible(`#who .name`)); err != nil {
			t.Fatalf("second tab: %v", err)
		}
		b.MustDo(chromedp.Click(`#logout button`), chromedp.WaitVisible(`input[name="username"]`))
		start := time.Now()
		// Nothing touches the second tab from here on.
		if err := run(8*time.Second, chromedp.WaitVisible(`[data-testid="signed-out"]`)); err != nil {
			t.Fatalf("the second tab does not show signed out 8 s after the logout: %v\nconsole:\n%s", err, strings.Join(b.Console(), "\n"))
		}
		t.Logf("the second tab showed signed out %v after the logout", time.Since(start).Round(10*time.Millisecond))
		ctx, cancel := context.WithTimeout(tab2, 10*time.Second)
		defer cancel()
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, "Signed out") || strings.Contains(text, "Logged in as") || strings.Contains(text, "recipes:write") {
			t.Fatalf("second tab after the logout:\n%s", text)
		}
	})

	timed(t, "CSRF from other loopback origins is refused", func(t *testing.T) {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gw + "/"))
		loginInBrowser(t, b, testop.AdminUsername, testop.AdminPassword)
		appCards(t, b)
		before := d.api.Requests()
		// Same site (127.0.0.1, another port: the cookie is sent) and cross
		// site (127.0.0.2: SameSite=Lax keeps it home).
		for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
			evil := evilSite(t, host, gw)
			b.MustDo(chromedp.Navigate(evil + "/form"))
			b.MustDo(chromedp.WaitVisible(`#done`))
			out := browser.Eval[string](b, `document.querySelector('#done').innerText`)
			if !strings.Contains(out, "fetch-api:") || strings.Contains(out, "fetch-api:200") || strings.Contains(out, "fetch-logout:303") {
				t.Fatalf("from %s: %s", host, out)
			}
			// The auto-submitted form's answer, in its frame.
			frame := browser.Eval[string](b, `new Promise(r => setTimeout(() => {
				try { r(document.querySelector('iframe').contentDocument.body.innerText) } catch (e) { r('cross-origin:' + e.name) }
			}, 300))`)
			if strings.Contains(frame, `"method":"POST"`) {
				t.Fatalf("the form POST from %s reached the API: %s", host, frame)
			}
		}
		if n := d.api.Requests(); n != before {
			t.Fatalf("the API saw %d requests from the attacker pages", n-before)
		}
		// The session survived the attempts on /auth/logout.
		b.MustDo(chromedp.Navigate(gw + "/"))
		if apps := appCards(t, b); len(apps) != 4 {
			t.Fatalf("session after CSRF attempts: apps %v", apps)
		}
	})
}

func findCookie(t *testing.T, b *browser.Browser, site, name string) (*network.Cookie, bool) {
	t.Helper()
	res, err := chromedp.Call(b.Ctx(), network.GetCookies, network.GetCookiesParams{URLs: []string{site}})
	if err != nil {
		t.Fatalf("reading cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

func sessionCookie(t *testing.T, b *browser.Browser, site string) *network.Cookie {
	t.Helper()
	c, ok := findCookie(t, b, site, "bff_session")
	if !ok {
		t.Fatal("no bff_session cookie in the browser")
	}
	return c
}

// evilSite serves an attacker's page on host (another loopback origin) that
// auto-submits a form POST to the gateway's /api and tries credentialed
// fetches to a state-changing /api route and to /auth/logout.
func evilSite(t *testing.T, host, gw string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", host, err)
	}
	page := fmt.Sprintf(`<!doctype html><title>evil</title>
<iframe name="sink"></iframe>
<form id="f" method="post" action="%[1]s/api/recipes" target="sink" enctype="text/plain">
<input name='{"title":"pwned","x":"' value='"}'></form>
<div id="out"></div>
<script>
document.getElementById('f').submit();
const log = [];
Promise.allSettled([
	fetch('%[1]s/api/recipes', {method: 'POST', credentials: 'include', mode: 'no-cors', body: '{"title":"pwned"}'})
		.then(r => log.push('fetch-api:' + r.status + r.type)),
	fetch('%[1]s/auth/logout', {method: 'POST', credentials: 'include', mode: 'no-cors', redirect: 'manual'})
		.then(r => log.push('fetch-logout:' + r.status + r.type)),
]).then(() => { const d = document.createElement('div'); d.id = 'done'; d.innerText = log.join(' '); document.body.append(d) });
</script>`, gw)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, page)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_ = harness.FreePort
	return "http://" + ln.Addr().String()
}

// TestDemoScreenshot renders the portal at 1280x800 for both users and
// checks the shell fits the viewport's width (no horizontal scrolling).
// With BFF_DEMO_SCREENSHOT=$PWD/../docs/demo-admin.png it refreshes the
// README's screenshots.
func TestDemoScreenshot(t *testing.T) {
	out := os.Getenv("BFF_DEMO_SCREENSHOT")
	if out == "" {
		out = t.TempDir() + "/demo-admin.png"
	}
	d := startDemo(t, true)
	for _, u := range []struct{ name, pass, file string }{
		{testop.AdminUsername, testop.AdminPassword, out},
		{testop.ReaderUsername, testop.ReaderPassword, strings.Replace(out, "admin", "reader", 1)},
	} {
		b := browser.Start(t, browser.Options{})
		b.MustDo(chromedp.Navigate(gatewayURL(d) + "/"))
		loginInBrowser(t, b, u.name, u.pass)
		appCards(t, b)
		if w := browser.Eval[int](b, `document.documentElement.scrollWidth`); w > 1280 {
			t.Fatalf("the shell is %dpx wide at a 1280px window", w)
		}
		png := browser.MustGet(b, chromedp.CaptureScreenshot())
		if len(png) < 1000 || string(png[1:4]) != "PNG" {
			t.Fatalf("not a PNG screenshot (%d bytes)", len(png))
		}
		if err := os.WriteFile(u.file, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
