package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// revalidateEvery is the tests' revalidate interval; pastInterval waits
// past it (real time: the gateway is another process).
const revalidateEvery = "2s"

func pastInterval() { time.Sleep(2200 * time.Millisecond) }

// noOffline are the default test scopes without offline_access: the
// session gets no refresh token.
const noOffline = "openid profile email recipes:read"

// expectEnded asserts that r is the 401 problem of an ended session and
// that the upstream saw nothing.
func expectEnded(t *testing.T, g *gw, r resp) {
	t.Helper()
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked at the provider, past revalidate: %d, want 401: %s", r.StatusCode, r.body)
	}
	if p := r.problem(t); !strings.HasPrefix(fmt.Sprint(p["login_url"]), "/auth/login") {
		t.Fatalf("401 without login_url: %s", r.body)
	}
	if n := len(g.up.Requests()); n != 0 {
		t.Fatalf("the upstream got %d requests of a session the provider revoked", n)
	}
}

// With a refresh token, revalidation is the refresh grant: a grant revoked
// at the provider ends the session within the interval, though the access
// token (5 minutes) is still valid; a known one gets new tokens. Every
// store, and a copy of the old cookie stays dead.
func TestRevalidateRefreshToken(t *testing.T) {
	for _, store := range []string{"cookie", "memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			o := gwOpts{store: store, extraOIDC: "revalidate " + revalidateEvery, tokenMode: "access_token"}
			if store == "redis" {
				o.sessionMore = redisBlock(harness.StartRedis(t).Addr())
			}
			g := startGW(t, o)
			c := g.admin()
			g.op.ResetStats()
			r := get(t, c, g.base+"/api/a")
			first, _ := g.up.Last()
			if r.StatusCode != 200 || g.op.TokenCalls(testop.GrantRefreshToken) != 0 {
				t.Fatalf("fresh session: %d, %d refresh calls", r.StatusCode, g.op.TokenCalls(testop.GrantRefreshToken))
			}

			// Still known: past the interval, one refresh, new tokens.
			pastInterval()
			if r := get(t, c, g.base+"/api/b"); r.StatusCode != 200 {
				t.Fatalf("past revalidate, grant live: %d", r.StatusCode)
			}
			last, _ := g.up.Last()
			if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 1 || last.BearerToken() == first.BearerToken() {
				t.Fatalf("%d refresh calls, token changed %v; want 1 refresh and a new token", n, last.BearerToken() != first.BearerToken())
			}
			if r := get(t, c, g.base+"/api/c"); r.StatusCode != 200 || g.op.TokenCalls(testop.GrantRefreshToken) != 1 {
				t.Fatalf("right after the check: %d, %d refresh calls; want 200 and no new call", r.StatusCode, g.op.TokenCalls(testop.GrantRefreshToken))
			}

			// Revoked: served until the interval is over, then ended.
			copied := g.cookieHeader(c)
			g.op.RevokeRefreshTokens(testop.AdminUsername)
			if r := get(t, c, g.base+"/api/d"); r.StatusCode != 200 {
				t.Fatalf("revoked, within revalidate: %d, want 200 (not due yet)", r.StatusCode)
			}
			pastInterval()
			g.up.Reset()
			expectEnded(t, g, do(t, c, "GET", g.base+"/api/e", map[string]string{"Accept": "application/json"}))
			nav := do(t, bare(), "GET", g.base+"/recipes", map[string]string{"Cookie": copied, "Sec-Fetch-Mode": "navigate"})
			if nav.StatusCode != http.StatusFound || !strings.HasPrefix(nav.Header.Get("Location"), "/auth/login") {
				t.Fatalf("a copy of the revoked session's cookie, navigating: %d to %q, want 302 to the login", nav.StatusCode, nav.Header.Get("Location"))
			}
			if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 2 {
				t.Fatalf("%d refresh calls, want 2 (the ended session is not checked again)", n)
			}
		})
	}
}

// Without a refresh token, revalidation introspects the access token: the
// cookie store gets a new cookie once checked, and a user revoked at the
// provider is logged out within the interval.
func TestRevalidateIntrospection(t *testing.T) {
	g := startGW(t, gwOpts{scopes: noOffline, extraOIDC: "revalidate " + revalidateEvery})
	c := g.admin()
	if n := g.op.LiveRefreshTokens(testop.AdminUsername); n != 0 {
		t.Fatalf("the session has %d refresh tokens; the test needs none", n)
	}
	g.op.ResetStats()
	if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 || g.op.Stats().Introspect != 0 {
		t.Fatalf("fresh session: %d, %d introspections", r.StatusCode, g.op.Stats().Introspect)
	}
	pastInterval()
	r := get(t, c, g.base+"/api/b")
	if st := g.op.Stats(); r.StatusCode != 200 || st.Introspect != 1 || st.TokenCalls[testop.GrantRefreshToken] != 0 {
		t.Fatalf("past revalidate: %d, %d introspections, %d refreshes; want 200 and one introspection", r.StatusCode, st.Introspect, st.TokenCalls[testop.GrantRefreshToken])
	}
	if !sessionCookieSet(r) {
		t.Fatal("the checked session was not saved into a new cookie")
	}
	if r := get(t, c, g.base+"/api/c"); r.StatusCode != 200 || g.op.Stats().Introspect != 1 {
		t.Fatalf("right after the check: %d, %d introspections; want 200 and no new call", r.StatusCode, g.op.Stats().Introspect)
	}

	g.op.RevokeRefreshTokens(testop.AdminUsername) // drops the user's access tokens too
	if r := get(t, c, g.base+"/api/d"); r.StatusCode != 200 {
		t.Fatalf("revoked, within revalidate: %d, want 200 (not due yet)", r.StatusCode)
	}
	pastInterval()
	g.up.Reset()
	expectEnded(t, g, do(t, c, "GET", g.base+"/api/e", map[string]string{"Accept": "application/json"}))
	if n := g.op.Stats().Introspect; n != 2 {
		t.Fatalf("%d introspections, want 2", n)
	}
	assertNoSecrets(t, g.caddy.Logs(), g.cookieHeader(c), g.op.ClientSecret(), sessionKeyA)
}

// A provider outage keeps sessions working while their access tokens are
// valid, and is not called on every request meanwhile; once it is back,
// the session is checked again.
func TestRevalidateOutage(t *testing.T) {
	t.Run("refresh token", func(t *testing.T) {
		g := startGW(t, gwOpts{extraOIDC: "revalidate " + revalidateEvery, tokenMode: "access_token"})
		c := g.admin()
		pastInterval()
		g.op.ResetStats()
		g.op.FailTokenEndpoint(http.StatusServiceUnavailable)
		for i := range 10 {
			if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
				t.Fatalf("request %d, provider failing: %d, want 200", i, r.StatusCode)
			}
		}
		if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 1 {
			t.Fatalf("%d refresh calls for 10 requests during an outage, want 1 (backoff)", n)
		}
		if err := g.op.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5200 * time.Millisecond) // past the backoff: tried again, and down
		for i := range 3 {
			if r := get(t, c, g.base+"/api/b"); r.StatusCode != 200 {
				t.Fatalf("request %d, provider down: %d, want 200", i, r.StatusCode)
			}
		}
		if err := g.op.Restart(); err != nil {
			t.Fatal(err)
		}
		g.op.FailTokenEndpoint(0)
		g.op.ResetStats()
		time.Sleep(5200 * time.Millisecond)
		for range 3 {
			if r := get(t, c, g.base+"/api/c"); r.StatusCode != 200 {
				t.Fatalf("provider back: %d", r.StatusCode)
			}
		}
		if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 1 {
			t.Fatalf("%d refresh calls once the provider is back, want 1", n)
		}
	})
	t.Run("introspection", func(t *testing.T) {
		g := startGW(t, gwOpts{scopes: noOffline, extraOIDC: "revalidate " + revalidateEvery})
		c := g.admin()
		if err := g.op.Stop(); err != nil {
			t.Fatal(err)
		}
		pastInterval()
		for i := range 3 {
			if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
				t.Fatalf("request %d, provider down: %d, want 200", i, r.StatusCode)
			}
		}
		// Not marked checked: once the provider is back (and the backoff
		// over), the session is introspected, once.
		if err := g.op.Restart(); err != nil {
			t.Fatal(err)
		}
		g.op.ResetStats()
		time.Sleep(5200 * time.Millisecond)
		for range 3 {
			if r := get(t, c, g.base+"/api/b"); r.StatusCode != 200 {
				t.Fatalf("provider back: %d", r.StatusCode)
			}
		}
		if n := g.op.Stats().Introspect; n != 1 {
			t.Fatalf("%d introspections once the provider is back, want 1", n)
		}
	})
}

// Many concurrent requests on two instances sharing Redis, past the
// interval: one provider call in all.
func TestRevalidateConcurrency(t *testing.T) {
	for _, tc := range []struct {
		name, store, scopes string
		calls               func(testop.Stats) int
	}{
		{"refresh token, redis store", "redis", "", func(s testop.Stats) int { return s.TokenCalls[testop.GrantRefreshToken] }},
		{"introspection, cookie store", "cookie", noOffline, func(s testop.Stats) int { return s.Introspect }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startGW(t, gwOpts{store: tc.store, scopes: tc.scopes, sessionMore: redisBlock(harness.StartRedis(t).Addr()),
				extraOIDC: "revalidate " + revalidateEvery, tokenMode: "access_token"})
			b := a.sibling()
			c := a.admin()
			if r := get(t, c, b.base+"/api/warm"); r.StatusCode != 200 {
				t.Fatalf("%d", r.StatusCode)
			}
			pastInterval()
			a.op.ResetStats()
			codes := race(t, 60, a.cookieHeader(c), a, b)
			if codes[200] != 60 {
				t.Fatalf("status counts %v, want 60 x 200", codes)
			}
			st := a.op.Stats()
			if n := tc.calls(st); n != 1 {
				t.Fatalf("%d provider checks for 60 requests on 2 instances, want 1 (stats %+v)", n, st)
			}
			if e := st.TokenErrors[testop.GrantRefreshToken]; e != 0 {
				t.Fatalf("%d refresh errors at the provider", e)
			}
		})
	}
}
