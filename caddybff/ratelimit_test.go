package caddybff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/redistest"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// ---- helpers ----

func mustLoadRateLimit(t testing.TB, cfg any) *RateLimit {
	t.Helper()
	m, err := loadModule(t, "http.handlers.bff_rate_limit", cfg)
	if err != nil {
		t.Fatalf("loading bff_rate_limit: %v", err)
	}
	return m.(*RateLimit)
}

// loadRateLimitIn loads a handler in a context of its own, as a separate
// config (or a separate gateway) would; cancel runs Cleanup.
func loadRateLimitIn(t testing.TB, cfg any) (*RateLimit, context.CancelFunc) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	m, err := ctx.LoadModuleByID("http.handlers.bff_rate_limit", raw)
	if err != nil {
		t.Fatalf("loading bff_rate_limit: %v", err)
	}
	return m.(*RateLimit), cancel
}

// rlReq describes one request to a rate limit.
type rlReq struct {
	from     string            // RemoteAddr; default 192.0.2.1:1234
	user     string            // subject oidc_auth identified; "" is anonymous
	header   map[string]string // request headers
	clientIP string            // overrides the client IP Caddy determined
}

func (q rlReq) build(t testing.TB) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api/orders", nil)
	if q.from != "" {
		r.RemoteAddr = q.from
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	repl := caddy.NewReplacer()
	r = caddyhttp.PrepareRequest(r, repl, nil, &caddyhttp.Server{})
	if q.clientIP != "" {
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, q.clientIP)
	}
	if q.user != "" {
		oidcauth.InsecureSetIdentity(r, &oidcauth.Identity{Subject: q.user}, "sess-"+q.user, "", time.Time{})
		// What oidc_auth sets for the access log and key placeholders.
		repl.Set("http.auth.user.id", q.user)
	}
	return r
}

// rlServe runs one request and reports whether the upstream was called.
func rlServe(t testing.TB, rl *RateLimit, q rlReq) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	w := httptest.NewRecorder()
	var called atomic.Bool
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		called.Store(true)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	if err := rl.ServeHTTP(w, q.build(t), next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return w, called.Load()
}

// checkProblem asserts w is a problem response with status.
func checkProblem(t testing.TB, w *httptest.ResponseRecorder, status int) problem.Details {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status = %d, want %d (body %s)", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type = %q, want %q", ct, problem.ContentType)
	}
	var p problem.Details
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	if p.Status != status || p.RequestID == "" {
		t.Fatalf("problem = %+v, want status %d and a request id", p, status)
	}
	return p
}

// ---- rate parser ----

var rateCases = []struct {
	in      string
	n       int
	per     time.Duration
	wantErr string
}{
	{"20r/s", 20, time.Second, ""},
	{"1r/s", 1, time.Second, ""},
	{"600r/m", 600, time.Minute, ""},
	{"1r/h", 1, time.Hour, ""},
	{"1000000r/s", 1_000_000, time.Second, ""},
	{"007r/m", 7, time.Minute, ""},

	{"0r/s", 0, 0, `count "0" is not a number from 1`},
	{"20/s", 0, 0, "is not <n>r/<s|m|h>"},
	{"20r/d", 0, 0, `unit "d" is not s, m or h`},
	{"20r/", 0, 0, `unit "" is not`},
	{"r/s", 0, 0, `count "" is not a number`},
	{"-1r/s", 0, 0, `count "-1"`},
	{"+5r/s", 0, 0, `count "+5"`},
	{"1e3r/s", 0, 0, `count "1e3"`},
	{"0x10r/s", 0, 0, `count "0x10"`},
	{" 20r/s", 0, 0, `count " 20"`},
	{"20r/s ", 0, 0, `unit "s "`},
	{"20R/s", 0, 0, "is not <n>r/"},
	{"20r/S", 0, 0, `unit "S"`},
	{"20r/sec", 0, 0, `unit "sec"`},
	{"20r/1s", 0, 0, `unit "1s"`},
	{"1000001r/s", 0, 0, "from 1 to 1000000"},
	{"99999999999999999999r/s", 0, 0, "from 1 to 1000000"},
	{"20r/sr/s", 0, 0, `unit "sr/s"`},
	{"", 0, 0, "is not <n>r/"},
	{"２０r/s", 0, 0, "count"},
}

func TestParseRate(t *testing.T) {
	for _, tt := range rateCases {
		t.Run(tt.in, func(t *testing.T) {
			n, per, err := parseRate(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseRate(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || n != tt.n || per != tt.per {
				t.Fatalf("parseRate(%q) = %d, %v, %v; want %d, %v", tt.in, n, per, err, tt.n, tt.per)
			}
		})
	}
}

// FuzzParseRate: any string parses to a rate in range that formats back
// to itself, or to an error; never a panic.
func FuzzParseRate(f *testing.F) {
	for _, tt := range rateCases {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, per, err := parseRate(s)
		if err != nil {
			return
		}
		if n < 1 || n > maxRateCount {
			t.Fatalf("parseRate(%q) = %d, out of range", s, n)
		}
		unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[per]
		if unit == "" {
			t.Fatalf("parseRate(%q) per = %v", s, per)
		}
		n2, per2, err := parseRate(strconv.Itoa(n) + "r/" + unit)
		if err != nil || n2 != n || per2 != per {
			t.Fatalf("canonical form of %q does not round-trip", s)
		}
	})
}

// ---- configuration ----

var rateLimitCaddyfileCases = []struct {
	name, input, wantErr string
}{
	{"rate only", "bff_rate_limit {\n rate 20r/s\n}", ""},
	{"all memory options", "bff_rate_limit {\n rate 600r/m\n burst 40\n key {http.request.header.X-Api-Key}\n zone api.v1_x-y\n store memory\n}", ""},
	{"redis", "bff_rate_limit {\n rate 20r/s\n store redis\n fail open\n redis {\n address 127.0.0.1:1\n key_prefix portal:\n dial_timeout 500ms\n }\n}", ""},
	{"redis defaults", "bff_rate_limit {\n rate 20r/s\n store redis\n fail closed\n}", ""},
	{"largest rate", "bff_rate_limit {\n rate 1000000r/s\n burst 1000000\n}", ""},
	{"slowest rate", "bff_rate_limit {\n rate 1r/h\n}", ""},

	{"no rate", "bff_rate_limit", "bff_rate_limit: rate is required"},
	{"empty block", "bff_rate_limit {\n}", "bff_rate_limit: rate is required"},
	{"burst without rate", "bff_rate_limit {\n burst 5\n}", "bff_rate_limit: rate is required"},
	{"argument on directive", "bff_rate_limit 20r/s", "wrong argument count"},
	{"rate 0r/s", "bff_rate_limit {\n rate 0r/s\n}", `rate: "0r/s": count "0"`},
	{"rate 20/s", "bff_rate_limit {\n rate 20/s\n}", `rate: "20/s" is not <n>r/<s|m|h>`},
	{"rate 20r/d", "bff_rate_limit {\n rate 20r/d\n}", `rate: "20r/d": unit "d"`},
	{"rate without value", "bff_rate_limit {\n rate\n}", "wrong argument count"},
	{"rate with two values", "bff_rate_limit {\n rate 20r/s 40\n}", "wrong argument count"},
	{"rate with a block", "bff_rate_limit {\n rate 20r/s {\n burst 5\n }\n}", "only redis takes a block"},
	{"rate twice", "bff_rate_limit {\n rate 20r/s\n rate 1r/s\n}", `subdirective "rate" given more than once`},
	{"burst 0", "bff_rate_limit {\n rate 20r/s\n burst 0\n}", `burst "0" is not a number from 1`},
	{"burst negative", "bff_rate_limit {\n rate 20r/s\n burst -1\n}", `burst "-1"`},
	{"burst not a number", "bff_rate_limit {\n rate 20r/s\n burst lots\n}", `burst "lots"`},
	{"burst too large", "bff_rate_limit {\n rate 20r/s\n burst 1000001\n}", `burst "1000001"`},
	{"unknown store", "bff_rate_limit {\n rate 20r/s\n store disk\n}", `unknown store "disk"`},
	{"fail maybe", "bff_rate_limit {\n rate 20r/s\n store redis\n fail maybe\n}", `fail "maybe": want open or closed`},
	{"fail with memory", "bff_rate_limit {\n rate 20r/s\n fail open\n}", "bff_rate_limit: fail does not apply to store memory"},
	{"redis with store memory", "bff_rate_limit {\n rate 20r/s\n store memory\n redis {\n address 127.0.0.1:6379\n }\n}", "bff_rate_limit: redis does not apply to store memory"},
	{"redis without store", "bff_rate_limit {\n rate 20r/s\n redis {\n }\n}", "bff_rate_limit: redis does not apply to store memory"},
	{"redis unknown subdirective", "bff_rate_limit {\n rate 20r/s\n store redis\n redis {\n host x\n }\n}", `redis: unrecognized subdirective "host"`},
	{"redis bad address", "bff_rate_limit {\n rate 20r/s\n store redis\n redis {\n address redis.example\n }\n}", `redis: address 1 of 1 is not host:port`},
	{"redis unset env password", "bff_rate_limit {\n rate 20r/s\n store redis\n redis {\n password {env.BFF_TEST_UNSET_REDIS_PASSWORD}\n }\n}", "bff_rate_limit: redis: password"},
	{"redis twice", "bff_rate_limit {\n rate 20r/s\n store redis\n redis {\n }\n redis {\n }\n}", `subdirective "redis" given more than once`},
	{"unknown subdirective", "bff_rate_limit {\n rate 20r/s\n limit 5\n}", `unrecognized subdirective "limit"`},
	{"blank key", "bff_rate_limit {\n rate 20r/s\n key \" \"\n}", "key is blank"},
	{"empty key", "bff_rate_limit {\n rate 20r/s\n key \"\"\n}", "key is blank"},
	{"zone injecting a header list", "bff_rate_limit {\n rate 20r/s\n zone `a\",\"b`\n}", `zone "a\",\"b"`},
	{"zone with a space", "bff_rate_limit {\n rate 20r/s\n zone \"a b\"\n}", "zone"},
	{"zone too long", "bff_rate_limit {\n rate 20r/s\n zone " + strings.Repeat("z", 65) + "\n}", "want up to 64"},
}

// TestRateLimitCaddyfile parses each snippet as the Caddyfile adapter
// does, then loads the JSON it becomes as Caddy does.
func TestRateLimitCaddyfile(t *testing.T) {
	for _, tt := range rateLimitCaddyfileCases {
		t.Run(tt.name, func(t *testing.T) {
			tokens, err := caddyfile.Tokenize([]byte(tt.input), "Caddyfile")
			if err != nil {
				t.Fatal(err)
			}
			rl := new(RateLimit)
			err = rl.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
			if err == nil {
				var raw []byte
				if raw, err = json.Marshal(rl); err != nil {
					t.Fatal(err)
				}
				_, err = loadModule(t, "http.handlers.bff_rate_limit", json.RawMessage(raw))
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestRateLimitJSON covers configs that do not come from a Caddyfile.
func TestRateLimitJSON(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     string
		wantErr string
	}{
		{"minimal", `{"rate":"5r/m"}`, ""},
		{"negative burst", `{"rate":"5r/m","burst":-1}`, "bff_rate_limit: burst -1 is out of range"},
		{"huge burst", `{"rate":"5r/m","burst":2000000}`, "bff_rate_limit: burst 2000000 is out of range"},
		{"bad rate", `{"rate":"5 per minute"}`, "bff_rate_limit: rate:"},
		{"unknown store", `{"rate":"5r/m","store":"Redis"}`, `bff_rate_limit: unknown store "Redis"`},
		{"fail without redis", `{"rate":"5r/m","fail":"closed"}`, "fail does not apply to store memory"},
		{"bad fail", `{"rate":"5r/m","store":"redis","fail":"OPEN"}`, `bff_rate_limit: fail "OPEN"`},
		{"bad zone", `{"rate":"5r/m","zone":"a\\\"b"}`, "bff_rate_limit: zone"},
		{"unknown field", `{"rate":"5r/m","limit":3}`, "unknown field"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadModule(t, "http.handlers.bff_rate_limit", json.RawMessage(tt.cfg))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzRateLimitCaddyfile feeds arbitrary tokens to the parser: an error or
// a config that survives a JSON round trip, never a panic.
func FuzzRateLimitCaddyfile(f *testing.F) {
	for _, tt := range rateLimitCaddyfileCases {
		f.Add(tt.input)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		rl := new(RateLimit)
		if err := rl.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		raw, err := json.Marshal(rl)
		if err != nil {
			t.Fatalf("marshalling parsed config: %v", err)
		}
		var back RateLimit
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("config does not round-trip: %v", err)
		}
		if back.Validate() == nil && back.Zone != "" && !validZone(back.Zone) {
			t.Fatalf("invalid zone %q validated", back.Zone)
		}
	})
}

// TestRateLimitAdapt adapts a whole Caddyfile with the directives listed
// backwards: the registered order puts bff_rate_limit after forward_auth
// and before bff_token and reverse_proxy (Caddy merges the three /api/*
// routes into one, in that order).
func TestRateLimitAdapt(t *testing.T) {
	input := `portal.example {
	reverse_proxy /api/* orders:8080
	bff_token /api/*
	bff_rate_limit /api/* {
		rate 20r/s
		burst 40
		key {http.request.header.X-Api-Key}
		zone api
		store redis
		fail open
		redis {
			address 10.0.0.5:6379
			password {env.REDIS_PASSWORD}
			key_prefix portal:
		}
	}
	forward_auth /admin/* auth:9000 {
		uri /check
	}
}
`
	expected := `{
	"apps": {
		"http": {
			"servers": {
				"srv0": {
					"listen": [
						":443"
					],
					"routes": [
						{
							"match": [
								{
									"host": [
										"portal.example"
									]
								}
							],
							"handle": [
								{
									"handler": "subroute",
									"routes": [
										{
											"handle": [
												{
													"handle_response": [
														{
															"match": {
																"status_code": [
																	2
																]
															},
															"routes": [
																{
																	"handle": [
																		{
																			"handler": "vars"
																		}
																	]
																}
															]
														}
													],
													"handler": "reverse_proxy",
													"headers": {
														"request": {
															"set": {
																"X-Forwarded-Method": [
																	"{http.request.method}"
																],
																"X-Forwarded-Uri": [
																	"{http.request.uri}"
																]
															}
														}
													},
													"rewrite": {
														"method": "GET",
														"uri": "/check"
													},
													"upstreams": [
														{
															"dial": "auth:9000"
														}
													]
												}
											],
											"match": [
												{
													"path": [
														"/admin/*"
													]
												}
											]
										},
										{
											"handle": [
												{
													"burst": 40,
													"fail": "open",
													"handler": "bff_rate_limit",
													"key": "{http.request.header.X-Api-Key}",
													"rate": "20r/s",
													"redis": {
														"addresses": [
															"10.0.0.5:6379"
														],
														"key_prefix": "portal:",
														"password": "{env.REDIS_PASSWORD}"
													},
													"store": "redis",
													"zone": "api"
												},
												{
													"handler": "bff_token"
												},
												{
													"handler": "reverse_proxy",
													"upstreams": [
														{
															"dial": "orders:8080"
														}
													]
												}
											],
											"match": [
												{
													"path": [
														"/api/*"
													]
												}
											]
										}
									]
								}
							],
							"terminal": true
						}
					]
				}
			}
		}
	}
}`
	if !caddytest.CompareAdapt(t, "bff_rate_limit", input, "caddyfile", expected) {
		t.Error("adapted JSON differs")
	}
}

// ---- memory store ----

// rlStep is one request of a scenario, after advancing the clock.
type rlStep struct {
	advance time.Duration
	req     rlReq
	want    int    // status
	limit   string // RateLimit value; "" skips the check
	retry   string // Retry-After; checked on 429
}

var (
	alice = rlReq{user: "alice"}
	bob   = rlReq{user: "bob"}
)

func TestRateLimitMemory(t *testing.T) {
	const ok, limited = http.StatusNoContent, http.StatusTooManyRequests
	tests := []struct {
		name   string
		cfg    map[string]any
		policy string
		steps  []rlStep
	}{
		{
			name:   "burst, then 429 until a token refills",
			cfg:    map[string]any{"rate": "1r/s", "burst": 3},
			policy: `"default";q=3;w=3`,
			steps: []rlStep{
				{req: alice, want: ok, limit: `"default";r=2;t=1`},
				{req: alice, want: ok, limit: `"default";r=1;t=2`},
				{req: alice, want: ok, limit: `"default";r=0;t=3`},
				{req: alice, want: limited, limit: `"default";r=0;t=3`, retry: "1"},
				{advance: 999 * time.Millisecond, req: alice, want: limited, limit: `"default";r=0;t=3`, retry: "1"},
				{advance: time.Millisecond, req: alice, want: ok, limit: `"default";r=0;t=3`},
				{advance: 2500 * time.Millisecond, req: alice, want: ok, limit: `"default";r=1;t=2`},
				{advance: time.Hour, req: alice, want: ok, limit: `"default";r=2;t=1`},
			},
		},
		{
			name:   "Retry-After in whole seconds, rounded up",
			cfg:    map[string]any{"rate": "6r/m", "burst": 2},
			policy: `"default";q=2;w=20`,
			steps: []rlStep{
				{req: alice, want: ok, limit: `"default";r=1;t=10`},
				{req: alice, want: ok, limit: `"default";r=0;t=20`},
				{req: alice, want: limited, retry: "10"},
				{advance: 1500 * time.Millisecond, req: alice, want: limited, retry: "9", limit: `"default";r=0;t=19`},
				{advance: 8500 * time.Millisecond, req: alice, want: ok},
			},
		},
		{
			name:   "default burst is n of rate",
			cfg:    map[string]any{"rate": "2r/m"},
			policy: `"default";q=2;w=60`,
			steps: []rlStep{
				{req: alice, want: ok, limit: `"default";r=1;t=30`},
				{req: alice, want: ok, limit: `"default";r=0;t=60`},
				{req: alice, want: limited, retry: "30"},
			},
		},
		{
			name:   "users have separate budgets",
			cfg:    map[string]any{"rate": "1r/h", "burst": 1},
			policy: `"default";q=1;w=3600`,
			steps: []rlStep{
				{req: alice, want: ok},
				{req: alice, want: limited, retry: "3600"},
				{req: bob, want: ok},
				{req: bob, want: limited},
				// Anonymous requests from the same address as alice's are
				// limited by IP, not by her budget.
				{req: rlReq{}, want: ok},
			},
		},
		{
			name:   "anonymous requests fall back to the client IP",
			cfg:    map[string]any{"rate": "1r/h", "burst": 1, "zone": "anon"},
			policy: `"anon";q=1;w=3600`,
			steps: []rlStep{
				{req: rlReq{from: "198.51.100.7:1111"}, want: ok, limit: `"anon";r=0;t=3600`},
				// Attack: another source port, forged forwarding headers
				// (no trusted proxies), a user id in a header.
				{req: rlReq{from: "198.51.100.7:2222"}, want: limited},
				{req: rlReq{from: "198.51.100.7:3333", header: map[string]string{"X-Forwarded-For": "203.0.113.1", "X-Real-IP": "203.0.113.2", "Forwarded": "for=203.0.113.3"}}, want: limited},
				{req: rlReq{from: "198.51.100.7:4444", header: map[string]string{"X-User": "alice"}}, want: limited},
				{req: rlReq{from: "[::ffff:198.51.100.7]:5555"}, want: limited},
				// Another client.
				{req: rlReq{from: "198.51.100.8:1111"}, want: ok},
				// The client IP Caddy determined behind trusted proxies
				// is the key, not the proxy's address.
				{req: rlReq{from: "10.0.0.1:1", clientIP: "203.0.113.50"}, want: ok},
				{req: rlReq{from: "10.0.0.1:2", clientIP: "203.0.113.50"}, want: limited},
				{req: rlReq{from: "10.0.0.1:3", clientIP: "203.0.113.51"}, want: ok},
			},
		},
		{
			name:   "IPv6 clients are limited by their /64",
			cfg:    map[string]any{"rate": "1r/h", "burst": 1},
			policy: `"default";q=1;w=3600`,
			steps: []rlStep{
				{req: rlReq{from: "[2001:db8:1:2::1]:1"}, want: ok},
				{req: rlReq{from: "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1"}, want: limited},
				{req: rlReq{from: "[2001:db8:1:2::1%eth0]:1"}, want: limited},
				{req: rlReq{from: "[2001:db8:1:3::1]:1"}, want: ok},
			},
		},
		{
			name:   "a user id never shares an IP's budget",
			cfg:    map[string]any{"rate": "1r/h", "burst": 1},
			policy: `"default";q=1;w=3600`,
			steps: []rlStep{
				{req: rlReq{user: "198.51.100.9", from: "192.0.2.50:1"}, want: ok},
				{req: rlReq{user: "198.51.100.9", from: "192.0.2.51:1"}, want: limited},
				{req: rlReq{from: "198.51.100.9:1"}, want: ok},
				{req: rlReq{user: "ip:198.51.100.10", from: "192.0.2.50:1"}, want: ok},
				{req: rlReq{from: "198.51.100.10:1"}, want: ok},
			},
		},
		{
			name:   "custom key, IP when it is empty",
			cfg:    map[string]any{"rate": "1r/h", "burst": 1, "key": "{http.request.header.X-Api-Key}"},
			policy: `"default";q=1;w=3600`,
			steps: []rlStep{
				{req: rlReq{header: map[string]string{"X-Api-Key": "k1"}, from: "192.0.2.1:1"}, want: ok},
				{req: rlReq{header: map[string]string{"X-Api-Key": "k1"}, from: "192.0.2.2:1"}, want: limited},
				{req: rlReq{header: map[string]string{"X-Api-Key": "k2"}, from: "192.0.2.1:1"}, want: ok},
				{req: rlReq{from: "192.0.2.1:1"}, want: ok},
				{req: rlReq{from: "192.0.2.1:2"}, want: limited},
				// A key value that looks like an IP key is still a key.
				{req: rlReq{header: map[string]string{"X-Api-Key": "ip:192.0.2.3"}, from: "192.0.2.1:1"}, want: ok},
				{req: rlReq{from: "192.0.2.3:1"}, want: ok},
				// Long keys are hashed, and still apart.
				{req: rlReq{header: map[string]string{"X-Api-Key": strings.Repeat("a", 4096)}}, want: ok},
				{req: rlReq{header: map[string]string{"X-Api-Key": strings.Repeat("a", 4096)}}, want: limited},
				{req: rlReq{header: map[string]string{"X-Api-Key": strings.Repeat("a", 4095) + "b"}}, want: ok},
			},
		},
		{
			name:   "explicit user id key: anonymous falls back to the IP",
			cfg:    map[string]any{"rate": "1r/h", "burst": 1, "key": "{http.auth.user.id}"},
			policy: `"default";q=1;w=3600`,
			steps: []rlStep{
				{req: alice, want: ok},
				{req: alice, want: limited},
				{req: rlReq{}, want: ok},
				{req: rlReq{}, want: limited},
				{req: bob, want: ok},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rl := mustLoadRateLimit(t, tt.cfg)
			clk := newClock()
			rl.now = clk.now
			for i, st := range tt.steps {
				clk.advance(st.advance)
				w, called := rlServe(t, rl, st.req)
				if w.Code != st.want {
					t.Fatalf("step %d: status = %d, want %d (%s)", i, w.Code, st.want, w.Body)
				}
				if called != (st.want == ok) {
					t.Fatalf("step %d: upstream called = %v", i, called)
				}
				if got := w.Header().Get("RateLimit-Policy"); got != tt.policy {
					t.Fatalf("step %d: RateLimit-Policy = %q, want %q", i, got, tt.policy)
				}
				if got := w.Header().Get("RateLimit"); got == "" || st.limit != "" && got != st.limit {
					t.Fatalf("step %d: RateLimit = %q, want %q", i, got, st.limit)
				}
				if st.want != limited {
					if ra := w.Header().Get("Retry-After"); ra != "" {
						t.Fatalf("step %d: Retry-After %q on an allowed request", i, ra)
					}
					continue
				}
				p := checkProblem(t, w, limited)
				ra := w.Header().Get("Retry-After")
				if n, err := strconv.Atoi(ra); err != nil || n < 1 || st.retry != "" && ra != st.retry {
					t.Fatalf("step %d: Retry-After = %q, want %q", i, ra, st.retry)
				}
				if strconv.Itoa(p.RetryAfter) != ra {
					t.Fatalf("step %d: body retry_after %d, header %q", i, p.RetryAfter, ra)
				}
			}
		})
	}
}

// TestRateLimitConcurrent: concurrent requests of one key spend exactly
// the burst.
// countingLimiter is a limiter of another kind than the two we ship.
type countingLimiter struct{ keys []string }

func (c *countingLimiter) take(_ context.Context, key []byte, _ time.Time) (decision, error) {
	c.keys = append(c.keys, string(key))
	return decision{allowed: len(c.keys) == 1, retryAfter: time.Second, reset: time.Second}, nil
}

// Any limiter works, not only the concrete stores the hot path knows.
func TestRateLimitAnyLimiter(t *testing.T) {
	rl := mustLoadRateLimit(t, map[string]any{"rate": "1r/s"})
	lim := &countingLimiter{}
	rl.store = lim
	if w, called := rlServe(t, rl, rlReq{user: "alice"}); !called || w.Code >= 400 {
		t.Fatalf("first request: %d, upstream called %v", w.Code, called)
	}
	if w, called := rlServe(t, rl, rlReq{user: "alice"}); w.Code != http.StatusTooManyRequests || called {
		t.Fatalf("second request: %d, upstream called %v", w.Code, called)
	}
	if len(lim.keys) != 2 || lim.keys[0] != "u:alice" {
		t.Fatalf("the limiter saw %q", lim.keys)
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	rl := mustLoadRateLimit(t, map[string]any{"rate": "1r/h", "burst": 25})
	clk := newClock()
	rl.now = clk.now
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, called := rlServe(t, rl, alice); called {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 25 {
		t.Fatalf("%d requests allowed, want 25", n)
	}
}

// TestRateLimitReload: a reload with the same settings keeps the budgets
// (the new config is provisioned before the old one is cleaned up); other
// settings start afresh; the buckets go with the last config.
func TestRateLimitReload(t *testing.T) {
	cfg := map[string]any{"rate": "1r/h", "burst": 2, "zone": "reload-test"}
	clk := newClock()
	old, cancelOld := loadRateLimitIn(t, cfg)
	old.now = clk.now
	rlServe(t, old, alice)
	rlServe(t, old, alice)
	if w, _ := rlServe(t, old, alice); w.Code != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", w.Code)
	}

	cur, cancelCur := loadRateLimitIn(t, cfg)
	cur.now = clk.now
	cancelOld()
	if w, _ := rlServe(t, cur, alice); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after reload: status = %d, want 429 (budget kept)", w.Code)
	}
	if w, _ := rlServe(t, cur, bob); w.Code != http.StatusNoContent {
		t.Fatalf("after reload: bob's status = %d", w.Code)
	}

	changed, cancelChanged := loadRateLimitIn(t, map[string]any{"rate": "2r/h", "burst": 2, "zone": "reload-test"})
	changed.now = clk.now
	if w, _ := rlServe(t, changed, alice); w.Code != http.StatusNoContent {
		t.Fatalf("new rate: status = %d, want a fresh budget", w.Code)
	}

	store := cur.store.(*memoryStore)
	cancelCur()
	cancelChanged()
	n := 0
	memoryBuckets.Range(func(_, v any) bool {
		if v.(*memoryStore) == store {
			n++
		}
		return true
	})
	if n != 0 {
		t.Fatal("buckets still pooled after the last config was cleaned up")
	}
}

// TestMemoryStoreBounded: full buckets are swept, and the number of
// buckets never passes the cap, however many keys an attacker uses,
// without dropping the buckets of keys that spent their budget.
func TestMemoryStoreBounded(t *testing.T) {
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	key := func(i int) []byte { return fmt.Appendf(nil, "ip:10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }

	t.Run("cap", func(t *testing.T) {
		const capacity = 64 * memoryShards
		ms := newMemoryStore(time.Minute, 3, capacity)
		for range 3 {
			if d, _ := ms.take(ctx, []byte("u:alice"), t0); !d.allowed {
				t.Fatal("alice refused within her burst")
			}
		}
		for i := range 20 * capacity {
			if d, _ := ms.take(ctx, key(i), t0); !d.allowed {
				t.Fatalf("new key %d refused", i)
			}
			if i%1000 == 0 && ms.len() > capacity {
				t.Fatalf("%d buckets, cap %d", ms.len(), capacity)
			}
		}
		if n := ms.len(); n > capacity || n < capacity/2 {
			t.Fatalf("%d buckets, cap %d", n, capacity)
		}
		if d, _ := ms.take(ctx, []byte("u:alice"), t0); d.allowed {
			t.Fatal("a flood of new keys evicted alice's empty bucket")
		}
	})

	t.Run("sweep", func(t *testing.T) {
		ms := newMemoryStore(time.Second, 5, maxMemoryBuckets)
		for i := range 2000 {
			ms.take(ctx, key(i), t0)
		}
		if n := ms.len(); n != 2000 {
			t.Fatalf("%d buckets, want 2000", n)
		}
		// Full again after 1s; swept on the next insert after a minute.
		later := t0.Add(memorySweepEvery)
		for i := range 2000 {
			ms.take(ctx, key(100_000+i), later)
		}
		if n := ms.len(); n != 2000 {
			t.Fatalf("%d buckets after the sweep, want the 2000 new ones", n)
		}
	})

	t.Run("evicts the fullest bucket", func(t *testing.T) {
		s := &memoryShard{buckets: map[string]*memoryBucket{
			"u:empty":  {tat: 300},
			"u:almost": {tat: 50},
		}, nextSweep: 1 << 62}
		s.insert("u:new", 100, 10, 2)
		if _, ok := s.buckets["u:almost"]; ok || len(s.buckets) != 2 || s.buckets["u:empty"] == nil {
			t.Fatalf("buckets = %v", s.buckets)
		}
	})

	t.Run("shrinks", func(t *testing.T) {
		s := &memoryShard{buckets: map[string]*memoryBucket{}}
		for i := range 5000 {
			s.insert(string(key(i)), 100, 0, 10_000)
		}
		late := int64(memorySweepEvery)
		s.insert("u:late", late+1, late, 10_000)
		if len(s.buckets) != 1 || s.peak != 1 {
			t.Fatalf("after sweep: %d buckets, peak %d", len(s.buckets), s.peak)
		}
	})
}

func TestGCRA(t *testing.T) {
	// interval 10, burst 3 (tolerance 30).
	tat := int64(0)
	var d decision
	for i, want := range []int64{2, 1, 0} {
		tat, d = gcra(tat, 100, 10, 30)
		if !d.allowed || d.remaining != want {
			t.Fatalf("take %d: %+v", i, d)
		}
	}
	if tat != 130 || d.reset != 30 {
		t.Fatalf("tat %d, %+v", tat, d)
	}
	next, d := gcra(tat, 105, 10, 30)
	if d.allowed || next != tat || d.retryAfter != 5 || d.reset != 25 {
		t.Fatalf("over the limit: tat %d, %+v", next, d)
	}
}

func TestBreaker(t *testing.T) {
	var b breaker
	fail := errors.New("down")
	const s = int64(time.Second)
	for i := range breakerThreshold - 1 {
		b.record(int64(i), fail)
		if !b.allow(int64(i)) {
			t.Fatalf("open after %d failures", i+1)
		}
	}
	b.record(10, nil) // a success in between: not in a row
	for range breakerThreshold - 1 {
		b.record(10, fail)
	}
	if !b.allow(10) {
		t.Fatal("open after failures that were not in a row")
	}
	b.record(20, fail)
	if b.allow(21) || b.allow(20+s-1) {
		t.Fatal("closed during the cooldown")
	}
	// One probe per cooldown.
	if !b.allow(20 + s) {
		t.Fatal("no probe after the cooldown")
	}
	if b.allow(20+s) || b.allow(20+2*s-1) {
		t.Fatal("a second probe in the same cooldown")
	}
	b.record(20+s, fail) // the probe failed
	if b.allow(20 + 2*s - 1) {
		t.Fatal("closed after a failed probe")
	}
	if !b.allow(20 + 2*s) {
		t.Fatal("no probe after the second cooldown")
	}
	b.record(20+2*s, nil) // the probe succeeded
	if !b.allow(20+2*s) || !b.allow(20+2*s) {
		t.Fatal("still open after a successful probe")
	}
}

// ---- Redis store ----

// startRedis runs redis-server for a test (internal/redistest, the one
// launcher both modules use).
func startRedis(t testing.TB) *testRedis { return &testRedis{redistest.Start(t)} }

// testRedis adds what these tests ask of the server.
type testRedis struct{ *redistest.Server }

func (r *testRedis) addr() string { return r.Addr() }

// start restarts the server after stop (an outage), failing the test when
// it cannot.
func (r *testRedis) start(t testing.TB) {
	t.Helper()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
}

func (r *testRedis) client(t testing.TB) *redis.Client {
	c := r.Client()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func redisLimitConfig(addr string, extra map[string]any) map[string]any {
	cfg := map[string]any{
		"rate":  "1r/m",
		"burst": 3,
		"store": "redis",
		"redis": map[string]any{
			"addresses":    []string{addr},
			"key_prefix":   "gw:",
			"dial_timeout": "300ms",
			"read_timeout": "300ms",
		},
	}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// TestRateLimitRedisShared: two gateways (separately provisioned configs)
// with the same settings share one budget per key, kept under hashed keys
// that expire once the bucket is full again.
func TestRateLimitRedisShared(t *testing.T) {
	srv := startRedis(t)
	cfg := redisLimitConfig(srv.addr(), nil)
	gw1, _ := loadRateLimitIn(t, cfg)
	gw2, _ := loadRateLimitIn(t, cfg)

	for i, st := range []struct {
		gw    *RateLimit
		req   rlReq
		want  int
		limit string
	}{
		{gw1, alice, http.StatusNoContent, `"default";r=2;t=60`},
		{gw2, alice, http.StatusNoContent, `"default";r=1;t=120`},
		{gw1, alice, http.StatusNoContent, `"default";r=0;t=180`},
		{gw2, alice, http.StatusTooManyRequests, `"default";r=0;t=180`},
		{gw1, alice, http.StatusTooManyRequests, `"default";r=0;t=180`},
		{gw2, bob, http.StatusNoContent, `"default";r=2;t=60`},
		{gw1, rlReq{from: "198.51.100.7:1"}, http.StatusNoContent, `"default";r=2;t=60`},
	} {
		w, called := rlServe(t, st.gw, st.req)
		if w.Code != st.want || called != (st.want == http.StatusNoContent) {
			t.Fatalf("step %d: status %d, upstream called %v; want %d", i, w.Code, called, st.want)
		}
		if got := w.Header().Get("RateLimit"); got != st.limit {
			t.Fatalf("step %d: RateLimit = %q, want %q", i, got, st.limit)
		}
		if got := w.Header().Get("RateLimit-Policy"); got != `"default";q=3;w=180` {
			t.Fatalf("step %d: RateLimit-Policy = %q", i, got)
		}
		if st.want == http.StatusTooManyRequests {
			checkProblem(t, w, st.want)
			if ra := w.Header().Get("Retry-After"); ra != "60" {
				t.Fatalf("step %d: Retry-After = %q, want 60", i, ra)
			}
		}
	}

	// A limit with other settings (zone) has its own budget.
	other, _ := loadRateLimitIn(t, redisLimitConfig(srv.addr(), map[string]any{"zone": "other"}))
	if w, _ := rlServe(t, other, alice); w.Code != http.StatusNoContent {
		t.Fatalf("other zone: status %d", w.Code)
	}

	ctx := context.Background()
	c := srv.client(t)
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Fatalf("keys = %q, want 4 buckets", keys)
	}
	keyRE := regexp.MustCompile(`^gw:rl:[0-9a-f]{64}$`)
	for _, k := range keys {
		if !keyRE.MatchString(k) {
			t.Fatalf("key %q does not look like gw:rl:<sha-256>", k)
		}
		v, _ := c.Get(ctx, k).Result()
		for _, secret := range []string{"alice", "bob", "198.51.100.7"} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Fatalf("key %q = %q stores %q", k, v, secret)
			}
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > 180*time.Second {
			t.Fatalf("PTTL %s = %v, %v; want (0, 180s]", k, ttl, err)
		}
	}
}

// TestRateLimitRedisConcurrent: concurrent requests through two gateways
// spend exactly the burst.
func TestRateLimitRedisConcurrent(t *testing.T) {
	srv := startRedis(t)
	cfg := redisLimitConfig(srv.addr(), map[string]any{"rate": "1r/h", "burst": 20})
	gws := []*RateLimit{}
	for range 2 {
		gw, _ := loadRateLimitIn(t, cfg)
		gws = append(gws, gw)
	}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			if _, called := rlServe(t, gws[i%2], alice); called {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 20 {
		t.Fatalf("%d requests allowed, want 20", n)
	}
}

// TestRateLimitRedisOutage: with Redis killed, fail closed answers 503
// fast and fail open lets requests through with a throttled warning; once
// Redis is back, both limit again without being provisioned anew.
func TestRateLimitRedisOutage(t *testing.T) {
	srv := startRedis(t)
	closed, _ := loadRateLimitIn(t, redisLimitConfig(srv.addr(), nil))
	open, _ := loadRateLimitIn(t, redisLimitConfig(srv.addr(), map[string]any{"fail": "open", "zone": "open"}))
	core, logs := observer.New(zapcore.WarnLevel)
	open.logger = zap.New(core)
	closedCore, closedLogs := observer.New(zapcore.WarnLevel)
	closed.logger = zap.New(closedCore)
	clk := newClock()
	open.now = clk.now

	for _, gw := range []*RateLimit{closed, open} {
		if w, _ := rlServe(t, gw, alice); w.Code != http.StatusNoContent {
			t.Fatalf("Redis up: status %d", w.Code)
		}
	}

	srv.Stop()

	start := time.Now()
	w, called := rlServe(t, closed, alice)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("fail closed took %v", took)
	}
	p := checkProblem(t, w, http.StatusServiceUnavailable)
	if called || w.Header().Get("Retry-After") != "5" || p.RetryAfter != 5 {
		t.Fatalf("fail closed: upstream called %v, Retry-After %q, body %+v", called, w.Header().Get("Retry-After"), p)
	}
	if w.Header().Get("RateLimit") != "" || w.Header().Get("RateLimit-Policy") == "" {
		t.Fatalf("fail closed: RateLimit %q, RateLimit-Policy %q", w.Header().Get("RateLimit"), w.Header().Get("RateLimit-Policy"))
	}
	if strings.Contains(w.Body.String(), srv.addr()) || strings.Contains(w.Body.String(), "redis") {
		t.Fatalf("503 body reveals the store: %s", w.Body)
	}
	if closedLogs.FilterMessageSnippet("refused").Len() != 1 {
		t.Fatalf("fail closed logs: %v", closedLogs.All())
	}

	for i := range 5 {
		start := time.Now()
		w, called := rlServe(t, open, alice)
		took := time.Since(start)
		if took > 2*time.Second {
			t.Fatalf("fail open took %v", took)
		}
		// After breakerThreshold failures, Redis is not waited for.
		if i >= breakerThreshold && took > 200*time.Millisecond {
			t.Fatalf("fail open, request %d with the breaker open took %v", i, took)
		}
		if w.Code != http.StatusNoContent || !called {
			t.Fatalf("fail open, request %d: status %d, upstream called %v", i, w.Code, called)
		}
		if w.Header().Get("RateLimit") != "" || w.Header().Get("RateLimit-Policy") != `"open";q=3;w=180` {
			t.Fatalf("fail open: RateLimit %q, RateLimit-Policy %q", w.Header().Get("RateLimit"), w.Header().Get("RateLimit-Policy"))
		}
	}
	if logs.Len() != 1 {
		t.Fatalf("fail open logged %d warnings in 10s, want 1: %v", logs.Len(), logs.All())
	}
	clk.advance(warnEvery)
	rlServe(t, open, alice)
	all := logs.All()
	if len(all) != 2 || all[1].ContextMap()["suppressed"] != int64(4) || all[1].ContextMap()["outcome"] != "fail_open" {
		t.Fatalf("after 10s: %v", all)
	}

	// Redis comes back empty, on the same address. The clients reconnect
	// on their own; poll, as a client retrying would.
	srv.start(t)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for _, gw := range []*RateLimit{closed, open} {
		for {
			w, _ := rlServe(t, gw, bob)
			if w.Code == http.StatusNoContent && w.Header().Get("RateLimit") != "" {
				break
			}
			clk.advance(breakerCooldown) // open's breaker probes again
			select {
			case <-tick.C:
			case <-deadline:
				t.Fatalf("Redis back: status %d, RateLimit %q", w.Code, w.Header().Get("RateLimit"))
			}
		}
	}
	// Limiting again: bob's bucket is in the fresh Redis.
	for range 3 {
		rlServe(t, closed, bob)
	}
	if w, _ := rlServe(t, closed, bob); w.Code != http.StatusTooManyRequests {
		t.Fatalf("Redis back: status %d, want 429", w.Code)
	}
}

// TestRateLimitRedisSlow: a Redis that accepts connections but never
// answers fails closed within the timeouts, never hangs.
func TestRateLimitRedisSlow(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})

	closed, _ := loadRateLimitIn(t, redisLimitConfig(l.Addr().String(), nil))
	closed.logger = zap.NewNop()
	start := time.Now()
	w, called := rlServe(t, closed, alice)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("fail closed took %v against a silent Redis", took)
	}
	checkProblem(t, w, http.StatusServiceUnavailable)
	if called {
		t.Fatal("upstream called")
	}
}

// ---- benchmark ----

// discardWriter is a ResponseWriter that keeps only headers.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header       { return d.h }
func (*discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (*discardWriter) WriteHeader(int)             {}

func BenchmarkRateLimitMemory(b *testing.B) {
	for _, bc := range []struct {
		name string
		req  rlReq
	}{
		{"user", alice},
		{"anonymous", rlReq{from: "198.51.100.7:1234"}},
		{"anonymous IPv6", rlReq{from: "[2001:db8::1]:1234"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rl := mustLoadRateLimit(b, map[string]any{"rate": "1000r/s", "burst": 1000})
			// The clock runs at the rate: every request is allowed.
			var ns atomic.Int64
			ns.Store(time.Now().UnixNano())
			rl.now = func() time.Time { return time.Unix(0, ns.Add(int64(time.Millisecond))) }
			r := bc.req.build(b)
			w := &discardWriter{h: make(http.Header)}
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				if err := rl.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
			if w.h.Get("RateLimit") == "" || w.h.Get("Retry-After") != "" {
				b.Fatalf("headers %v", w.h)
			}
		})
	}
}
