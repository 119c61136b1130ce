package gateway

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/caddy-bff/caddy-bff/integration/internal/browser"
	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

const frontchannelPath = "/auth/frontchannel-logout"

// frontchannel sends, without a cookie, what the provider's logout page
// frames: the gateway's front-channel logout URI with iss and sid.
func frontchannel(t *testing.T, g *gw, sid string) resp {
	t.Helper()
	return get(t, bare(), g.op.FrontchannelLogoutURL(g.base+frontchannelPath, sid))
}

// lastSID is the provider session of the user's latest login: the sid
// of its ID token, which the gateway's session holds.
func lastSID(t *testing.T, g *gw, user string) string {
	t.Helper()
	sids := g.op.SessionIDs(user)
	if len(sids) == 0 {
		t.Fatalf("the provider has no session of %s", user)
	}
	return sids[len(sids)-1]
}

// assertSignedOut checks the answer a provider's frame gets: 200, the
// page, not cached, framable by the provider's origin and no other.
func assertSignedOut(t *testing.T, g *gw, r resp) {
	t.Helper()
	if r.StatusCode != 200 {
		t.Fatalf("front-channel logout: %d %s", r.StatusCode, r.body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-cache, no-store" || r.Header.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if xfo := r.Header.Values("X-Frame-Options"); len(xfo) != 0 {
		t.Errorf("X-Frame-Options %q would stop the provider framing us", xfo)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	var ancestors []string
	var defaultNone bool
	for _, d := range strings.Split(r.Header.Get("Content-Security-Policy"), ";") {
		f := strings.Fields(d)
		switch {
		case len(f) > 0 && f[0] == "frame-ancestors":
			ancestors = f[1:]
		case slices.Equal(f, []string{"default-src", "'none'"}):
			defaultNone = true
		}
	}
	if !slices.Equal(ancestors, []string{g.op.Issuer()}) || !defaultNone {
		t.Errorf("CSP %q: want default-src 'none' and frame-ancestors %s only", r.Header.Get("Content-Security-Policy"), g.op.Issuer())
	}
	if !strings.Contains(r.body, "Signed out") || strings.Contains(strings.ToLower(r.body), "<script") {
		t.Errorf("page %q", r.body)
	}
}

func TestFrontchannelLogout(t *testing.T) {
	for _, store := range []string{"cookie", "memory"} {
		t.Run(store, func(t *testing.T) {
			g := startGW(t, gwOpts{store: store})
			admin1 := g.admin()
			sid := lastSID(t, g, testop.AdminUsername)
			admin2 := g.admin() // another provider session of the same user
			reader := g.login(testop.ReaderUsername, testop.ReaderPassword)
			copied := g.cookieHeader(admin1)
			if sid == lastSID(t, g, testop.AdminUsername) {
				t.Fatal("two logins share a provider session")
			}

			u := g.base + frontchannelPath
			iss := url.QueryEscape(g.op.Issuer())
			for name, target := range map[string]string{
				"no query":       u,
				"no sid":         u + "?iss=" + iss,
				"no iss":         u + "?sid=" + sid,
				"wrong iss":      u + "?iss=" + iss + "x&sid=" + sid,
				"iss with slash": u + "?iss=" + iss + "%2F&sid=" + sid,
				"other issuer":   u + "?iss=http%3A%2F%2F127.0.0.1%3A1&sid=" + sid,
				"two sids":       g.op.FrontchannelLogoutURL(u, sid) + "&sid=other",
				"two iss":        g.op.FrontchannelLogoutURL(u, sid) + "&iss=" + iss,
				"empty sid":      u + "?iss=" + iss + "&sid=",
				"huge sid":       g.op.FrontchannelLogoutURL(u, strings.Repeat("s", 5000)),
			} {
				r := get(t, bare(), target)
				if r.StatusCode != 400 || r.Header.Get("Cache-Control") != "no-store" {
					t.Fatalf("%s: %d (Cache-Control %q), want 400 no-store", name, r.StatusCode, r.Header.Get("Cache-Control"))
				}
				r.problem(t)
			}
			if r := do(t, bare(), "POST", g.op.FrontchannelLogoutURL(u, sid), nil); r.StatusCode != 405 {
				t.Fatalf("POST: %d, want 405", r.StatusCode)
			}
			if r := get(t, admin1, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("a rejected front-channel logout ended the session: %d", r.StatusCode)
			}

			assertSignedOut(t, g, frontchannel(t, g, sid))
			if r := get(t, admin1, g.base+"/api/x"); r.StatusCode != 401 {
				t.Fatalf("the session after front-channel logout of its sid: %d, want 401", r.StatusCode)
			}
			if r := do(t, bare(), "GET", g.base+"/api/x", map[string]string{"Cookie": copied}); r.StatusCode != 401 {
				t.Fatalf("a copied cookie survived front-channel logout: %d", r.StatusCode)
			}
			if r := get(t, admin2, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("the user's session of another provider session ended: %d", r.StatusCode)
			}
			if r := get(t, reader, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("another user's session ended: %d", r.StatusCode)
			}
			// The provider may frame us again (a reload): still fine.
			assertSignedOut(t, g, frontchannel(t, g, sid))
			if r := get(t, g.admin(), g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("login after front-channel logout: %d", r.StatusCode)
			}
			assertNoSecrets(t, g.caddy.Logs(), sid)
		})
	}
}

// A front-channel logout received by one instance ends the session on
// every instance sharing Redis.
func TestFrontchannelLogoutAcrossInstances(t *testing.T) {
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			rd := harness.StartRedis(t)
			a := startGW(t, gwOpts{store: store, sessionMore: redisBlock(rd.Addr())})
			b := a.sibling()
			c := a.admin()
			sid := lastSID(t, a, testop.AdminUsername)
			other := a.admin()
			if r := get(t, c, b.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("login on A, use on B: %d", r.StatusCode)
			}
			assertSignedOut(t, a, frontchannel(t, a, sid))
			for name, g := range map[string]*gw{"A": a, "B": b} {
				if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
					t.Fatalf("after front-channel logout on A, the session on %s: %d, want 401", name, r.StatusCode)
				}
				if r := get(t, other, g.base+"/api/x"); r.StatusCode != 200 {
					t.Fatalf("another provider session's session on %s: %d", name, r.StatusCode)
				}
			}
			assertNoSecrets(t, a.caddy.Logs()+b.caddy.Logs(), sid)
		})
	}
}

// With Redis down the ending cannot be recorded: 503, nothing claimed,
// and the provider's retry (a reload of its page) completes it.
func TestFrontchannelLogoutRedisDown(t *testing.T) {
	rd := harness.StartRedis(t)
	g := startGW(t, gwOpts{store: "cookie", sessionMore: redisBlock(rd.Addr())})
	c := g.admin()
	sid := lastSID(t, g, testop.AdminUsername)
	rd.Pause() // hung: it keeps its data, including the sid the login recorded
	r := frontchannel(t, g, sid)
	if r.StatusCode != 503 || r.Header.Get("Cache-Control") != "no-store" || strings.Contains(r.body, "Signed out") {
		t.Fatalf("Redis down: %d (Cache-Control %q) %s, want a 503 problem, no-store", r.StatusCode, r.Header.Get("Cache-Control"), r.body)
	}
	r.problem(t)
	rd.Resume() // nothing ended the session meanwhile
	if r := get(t, c, g.base+"/api/x"); r.StatusCode != 200 {
		t.Fatalf("the session after the failed front-channel logout: %d", r.StatusCode)
	}
	assertSignedOut(t, g, frontchannel(t, g, sid))
	if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
		t.Fatalf("after the retried front-channel logout: %d, want 401", r.StatusCode)
	}
}

// childFrames lists the frames of the tab's page below the top one.
func childFrames(t *testing.T, b *browser.Browser) []*cdp.Frame {
	t.Helper()
	res, err := chromedp.Call(b.Ctx(), page.GetFrameTree, cdp.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*cdp.Frame
	for _, ft := range res.FrameTree.ChildFrames {
		out = append(out, ft.Frame)
	}
	return out
}

// The provider's logout page frames the gateway's front-channel logout
// URI (OpenID Connect Front-Channel Logout 1.0 §3) in a real browser: the
// frame loads (the CSP lets the provider's origin frame it) and the
// gateway's session is over. Any other origin's frame is refused.
func TestFrontchannelLogoutBrowser(t *testing.T) {
	g := startGW(t, gwOpts{})
	g.op.SetFrontchannelLogoutURIs(g.base + frontchannelPath)
	b := browser.Start(t, browser.Options{})
	b.MustDo(chromedp.Navigate(g.base + "/welcome"))
	b.MustDo(
		chromedp.WaitVisible(`input[name="username"]`),
		chromedp.SendKeys(`input[name="username"]`, testop.AdminUsername),
		chromedp.SendKeys(`input[type="password"]`, testop.AdminPassword),
		chromedp.Submit(`input[type="password"]`),
	)
	b.WaitLocation(func(s string) bool { return strings.HasPrefix(s, g.base+"/welcome") })
	userStatus := `fetch("/auth/user?touch=false").then(r => r.status)`
	if s := browser.Eval[int](b, userStatus); s != 200 {
		t.Fatalf("/auth/user after login: %d", s)
	}

	// The user logs out at the provider.
	b.MustDo(chromedp.Navigate(g.op.Issuer()+testop.FrontchannelLogoutPath), chromedp.WaitVisible(`#done`))
	frames := childFrames(t, b)
	if len(frames) != 1 {
		t.Fatalf("the provider's logout page has %d frames, want 1", len(frames))
	}
	f := frames[0]
	t.Logf("provider's frame: url %q unreachable %q", f.URL, f.UnreachableURL)
	if !strings.HasPrefix(f.URL, g.base+frontchannelPath+"?") || f.UnreachableURL != "" {
		t.Fatalf("the gateway's frame did not render: url %q unreachable %q", f.URL, f.UnreachableURL)
	}
	if q, _ := url.Parse(f.URL); q == nil || q.Query().Get("iss") != g.op.Issuer() || q.Query().Get("sid") == "" {
		t.Fatalf("framed %q", f.URL)
	}

	b.MustDo(chromedp.Navigate(g.base + "/public/x"))
	if s := browser.Eval[int](b, userStatus); s != 401 {
		t.Fatalf("/auth/user after the provider's logout page: %d, want 401", s)
	}
	if s := browser.Eval[int](b, `fetch("/api/x").then(r => r.status)`); s != 401 {
		t.Fatalf("the API after the provider's logout page: %d, want 401", s)
	}

	// The same URI framed by the gateway's own origin (not the provider):
	// the browser refuses to render it.
	src := f.URL
	b.MustDo(chromedp.Evaluate[chromedp.Void](`new Promise(ok => { const f = document.createElement("iframe");
		f.onload = () => ok(); f.src = `+"`"+src+"`"+`; document.body.appendChild(f); })`, chromedp.EvalAwaitPromise))
	frames = childFrames(t, b)
	for _, f := range frames {
		t.Logf("gateway's own frame: url %q unreachable %q", f.URL, f.UnreachableURL)
	}
	if len(frames) != 1 || frames[0].UnreachableURL == "" && strings.HasPrefix(frames[0].URL, g.base+frontchannelPath) {
		t.Fatalf("another origin framed the front-channel logout page: %+v", frames[0])
	}
	q, _ := url.Parse(src)
	assertNoSecrets(t, g.caddy.Logs(), q.Query().Get("sid"))
}
