package gateway

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

func redisBlock(addr string) string {
	return fmt.Sprintf("redis {\n\t\t\t\taddress %s\n\t\t\t\tkey_prefix test:\n\t\t\t\tread_timeout 500ms\n\t\t\t\tdial_timeout 500ms\n\t\t\t}", addr)
}

// Two instances behind a load balancer without sticky sessions share
// sessions, logouts and back-channel logouts through Redis. The cookie
// jar, like a browser, sends 127.0.0.1's cookies to both ports.
func TestTwoInstancesShareSessions(t *testing.T) {
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			rd := harness.StartRedis(t)
			a := startGW(t, gwOpts{store: store, sessionMore: redisBlock(rd.Addr())})
			b := a.sibling()

			c := a.admin()
			if r := get(t, c, b.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("login on A, use on B: %d", r.StatusCode)
			}
			copied := a.cookieHeader(c)
			// Logout on B ends the session on A, copies included.
			logout(t, b, c)
			if r := do(t, bare(), "GET", a.base+"/api/x", map[string]string{"Cookie": copied}); r.StatusCode != 401 {
				t.Fatalf("after logout on B, the old cookie on A: %d, want 401", r.StatusCode)
			}

			// Back-channel logout received by A ends the user's sessions on B.
			c2 := a.admin()
			reader := a.login(testop.ReaderUsername, testop.ReaderPassword)
			tok, err := a.op.LogoutToken(testop.AdminSubject, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := postLogoutToken(t, a, tok); r.StatusCode != 200 {
				t.Fatalf("back-channel logout: %d", r.StatusCode)
			}
			if r := get(t, c2, b.base+"/api/x"); r.StatusCode != 401 {
				t.Fatalf("after back-channel logout on A, session on B: %d", r.StatusCode)
			}
			if r := get(t, reader, b.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("another user's session on B: %d", r.StatusCode)
			}
			// The token cannot be replayed at B either.
			if r := postLogoutToken(t, b, tok); r.StatusCode != 400 {
				t.Fatalf("logout token replayed at B: %d, want 400", r.StatusCode)
			}

			if store == "redis" {
				keys, _ := rd.Command("KEYS", "*")
				cookie := a.cookieHeader(reader)
				for _, part := range strings.Split(cookie, "; ") {
					_, v, _ := strings.Cut(part, "=")
					if len(v) > 16 && strings.Contains(keys, v) {
						t.Fatal("a Redis key holds a session id")
					}
				}
			}
		})
	}
}

// 2 instances x 50 concurrent requests arrive as the access token expires;
// the provider rotates refresh tokens. Zero 401s, one refresh call.
//
// Without Redis (cookie store, nothing shared) each instance refreshes
// once, and the provider answers the later one with invalid_grant, which
// ends the session (SPEC §4: the gateway cannot tell a lost race from a
// revoked grant). That is what the cookie store's redis block is for, as
// README's "Running several instances" says; the test pins it down.
func TestRefreshRaceAcrossInstances(t *testing.T) {
	for _, store := range []string{"redis", "cookie", "cookie without redis"} {
		t.Run(store, func(t *testing.T) {
			more := ""
			if store != "cookie without redis" {
				more = redisBlock(harness.StartRedis(t).Addr())
			}
			a := startGW(t, gwOpts{store: strings.Fields(store)[0], sessionMore: more,
				accessTTL: 6 * time.Second, skew: "4s", tokenMode: "access_token"})
			b := a.sibling()
			c := a.admin()
			if r := get(t, c, b.base+"/api/warm"); r.StatusCode != 200 {
				t.Fatalf("%d", r.StatusCode)
			}
			time.Sleep(3500 * time.Millisecond) // now within refresh_skew
			a.op.ResetStats()
			cookie := a.cookieHeader(c) // every racer carries the pre-refresh cookie
			codes := race(t, 100, cookie, a, b)
			want := 1
			if more == "" {
				want = 2 // one per instance; the later one is refused
				if codes[200]+codes[401] != 100 || codes[401] == 0 {
					t.Fatalf("status counts without Redis %v, want 200s and the losing instance's 401s only", codes)
				}
				if n := a.op.TokenCalls(testop.GrantRefreshToken); n != want {
					t.Fatalf("%d refresh calls at the provider, want %d", n, want)
				}
				return
			}
			if codes[200] != 100 {
				t.Fatalf("status counts %v, want 100 x 200", codes)
			}
			if n := a.op.TokenCalls(testop.GrantRefreshToken); n != want {
				t.Fatalf("%d refresh calls at the provider, want %d", n, want)
			}
			if more != "" {
				if e := a.op.Stats().TokenErrors[testop.GrantRefreshToken]; e != 0 {
					t.Fatalf("%d refresh errors at the provider", e)
				}
			}
			// The browser keeps the last cookie it got; it works on both.
			for _, g := range []*gw{a, b} {
				if r := get(t, c, g.base+"/api/after"); r.StatusCode != 200 {
					t.Fatalf("after the race on %s: %d", g.addr, r.StatusCode)
				}
			}
		})
	}
}

// Redis down: 503 problem within a bounded time, never a pass or a 500;
// back without a restart.
func TestRedisOutage(t *testing.T) {
	rd := harness.StartRedis(t)
	a := startGW(t, gwOpts{store: "redis", sessionMore: redisBlock(rd.Addr())})
	c := a.admin()
	rd.Stop()
	start := time.Now()
	r := get(t, c, a.base+"/api/x")
	took := time.Since(start)
	if r.StatusCode != 503 {
		t.Fatalf("Redis down: %d, want 503", r.StatusCode)
	}
	r.problem(t)
	if took > 3*time.Second {
		t.Fatalf("Redis down: answered after %v", took)
	}
	if n := len(a.up.Requests()); n != 1 { // the login's landing page only
		t.Fatalf("upstream saw %d requests while Redis was down", n)
	}
	rd.Start() // empty: sessions are gone, the gateway recovers
	r = get(t, c, a.base+"/api/x")
	if r.StatusCode != 401 {
		t.Fatalf("Redis back (empty): %d, want 401", r.StatusCode)
	}
	c = a.admin()
	if r := get(t, c, a.base+"/api/x"); r.StatusCode != 200 {
		t.Fatalf("login after Redis recovered: %d", r.StatusCode)
	}
}

// The measured cost: Redis commands per authenticated request and bytes
// per session (reported, and bounded so a regression fails).
func TestRedisCost(t *testing.T) {
	rd := harness.StartRedis(t)
	a := startGW(t, gwOpts{store: "redis", sessionMore: redisBlock(rd.Addr())})
	c := a.admin()
	get(t, c, a.base+"/api/warm")
	if _, err := rd.Command("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for range n {
		if r := get(t, c, a.base+"/api/x"); r.StatusCode != 200 {
			t.Fatalf("%d", r.StatusCode)
		}
	}
	info, err := rd.Command("INFO", "stats")
	if err != nil {
		t.Fatal(err)
	}
	total := statValue(info, "total_commands_processed")
	// INFO itself counts as one command.
	perReq := float64(total-1) / n
	t.Logf("redis commands per authenticated request: %.2f", perReq)
	if perReq > 1.2 {
		t.Fatalf("%.2f Redis commands per authenticated request, want about 1", perReq)
	}
	keys, _ := rd.Command("KEYS", "test:s:*")
	key := strings.Split(keys, "\n")[0]
	size, _ := rd.Command("STRLEN", key)
	t.Logf("bytes per session value: %s", strings.TrimPrefix(size, ":"))
	_ = http.StatusOK
}

func statValue(info, name string) int {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// Two caddy processes with the same bff_rate_limit (store redis) share one
// budget: a user's burst spent on A is spent on B.
func TestRateLimitSharedAcrossInstances(t *testing.T) {
	rd := harness.StartRedis(t)
	rl := fmt.Sprintf(`handle /limited/* {
		bff_rate_limit {
			rate 1r/m
			burst 5
			zone shared
			store redis
			redis {
				address %s
				key_prefix test:
			}
		}
		respond "ok" 200
	}`, rd.Addr())
	a := startGW(t, gwOpts{siteMore: rl})
	b := a.sibling()
	c := a.admin()
	codes := map[int]int{}
	var last resp
	for i := range 8 {
		g := a
		if i%2 == 1 {
			g = b
		}
		last = get(t, c, g.base+"/limited/x")
		codes[last.StatusCode]++
	}
	if codes[200] != 5 || codes[429] != 3 {
		t.Fatalf("8 requests alternating across A and B with burst 5: %v, want 5 x 200 and 3 x 429", codes)
	}
	p := last.problem(t)
	if last.Header.Get("Retry-After") == "" || !strings.Contains(last.Header.Get("RateLimit-Policy"), `"shared";q=5`) ||
		!strings.Contains(last.Header.Get("RateLimit"), "r=0") {
		t.Fatalf("429 headers: Retry-After %q RateLimit-Policy %q RateLimit %q (%v)", last.Header.Get("Retry-After"),
			last.Header.Get("RateLimit-Policy"), last.Header.Get("RateLimit"), p)
	}
	// Another user has a budget of their own.
	reader := a.login(testop.ReaderUsername, testop.ReaderPassword)
	if r := get(t, reader, b.base+"/limited/x"); r.StatusCode != 200 {
		t.Fatalf("another user: %d", r.StatusCode)
	}
	keys, _ := rd.Command("KEYS", "test:rl:*")
	if strings.Contains(keys, testop.AdminSubject) || strings.Contains(keys, "127.0.0.1") {
		t.Fatalf("rate-limit keys hold raw ids: %s", keys)
	}
}

// The same guarantees on a three-master Redis Cluster, where a session, its
// indexes, locks and ended-facts live in different hash slots.
func TestRedisCluster(t *testing.T) {
	rc := harness.StartRedisCluster(t)
	block := fmt.Sprintf("redis {\n\t\t\t\taddress %s\n\t\t\t\tkey_prefix test:\n\t\t\t}", strings.Join(rc.Addrs(), " "))
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			a := startGW(t, gwOpts{store: store, sessionMore: block, accessTTL: 6 * time.Second, skew: "4s", tokenMode: "access_token"})
			b := a.sibling()
			c := a.admin()
			if r := get(t, c, b.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("login on A, use on B: %d %s", r.StatusCode, r.body)
			}
			// Refresh race across instances on the cluster.
			time.Sleep(3500 * time.Millisecond)
			a.op.ResetStats()
			cookie := a.cookieHeader(c)
			codes := race(t, 40, cookie, a, b)
			if codes[200] != 40 || a.op.TokenCalls(testop.GrantRefreshToken) != 1 {
				t.Fatalf("refresh race on the cluster: %v, %d refresh calls", codes, a.op.TokenCalls(testop.GrantRefreshToken))
			}
			// Back-channel logout on B ends the sessions on A.
			c2 := a.admin()
			tok, err := a.op.LogoutToken(testop.AdminSubject, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := postLogoutToken(t, b, tok); r.StatusCode != 200 {
				t.Fatalf("back-channel logout on the cluster: %d", r.StatusCode)
			}
			for _, cl := range []*http.Client{c, c2} {
				if r := get(t, cl, a.base+"/api/x"); r.StatusCode != 401 {
					t.Fatalf("after back-channel logout: %d, want 401", r.StatusCode)
				}
			}
			// Logout on A ends a new session on B.
			c3 := a.admin()
			copied := a.cookieHeader(c3)
			logout(t, a, c3)
			if r := do(t, bare(), "GET", b.base+"/api/x", map[string]string{"Cookie": copied}); r.StatusCode != 401 {
				t.Fatalf("after logout on A, a copy of the cookie on B: %d", r.StatusCode)
			}
		})
	}
}

// race sends n concurrent GETs with the same Cookie header, alternating
// between the instances, and counts the statuses.
func race(t *testing.T, n int, cookie string, instances ...*gw) map[int]int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range n {
		base := instances[i%len(instances)].base
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(t, bare(), "GET", base+"/api/race", map[string]string{"Cookie": cookie})
			mu.Lock()
			codes[r.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return codes
}
