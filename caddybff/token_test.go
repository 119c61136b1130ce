package caddybff

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-bff/caddy-bff/internal/problem"
)

func mintConfig(key string) map[string]any {
	return map[string]any{
		"mode":        "mint",
		"audience":    "orders-api",
		"signing_key": key,
	}
}

// bearer returns the token of an upstream's single Authorization value.
func bearer(t *testing.T, auth []string) string {
	t.Helper()
	if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
		t.Fatalf("upstream Authorization = %q, want one Bearer value", auth)
	}
	return strings.TrimPrefix(auth[0], "Bearer ")
}

// verify checks tok against the key set as a service would: key by kid,
// the key's alg only, audience, issuer, expiry required.
func verify(t *testing.T, jwks []byte, tok, iss string) (jwt.MapClaims, *jwt.Token) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("decoding key set: %v", err)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			t.Fatalf("kid %q matches %d keys", kid, len(keys))
		}
		if keys[0].Algorithm != tk.Method.Alg() || keys[0].Use != "sig" || !keys[0].IsPublic() {
			t.Fatalf("published key %+v does not fit token alg %s", keys[0], tk.Method.Alg())
		}
		return keys[0].Key, nil
	},
		jwt.WithValidMethods([]string{"ES256", "RS256", "EdDSA"}),
		jwt.WithAudience("orders-api"),
		jwt.WithIssuer(iss),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return claims, parsed
}

func TestMintVerifiesWithPublishedKey(t *testing.T) {
	k := keysOnce()
	tests := []struct {
		name, key, alg string
	}{
		{"es256 pkcs8", pkcs8PEM(t, k.ec), "ES256"},
		{"rs256 pkcs1", pkcs1PEM(k.rsa.(*rsa.PrivateKey)), "RS256"},
		{"eddsa pkcs8", pkcs8PEM(t, k.ed), "EdDSA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mintConfig(tt.key)
			cfg["ttl"] = "2m"
			cfg["claims"] = []string{"email", "groups", "realm_access.roles", "absent"}
			tok := mustLoadToken(t, cfg)
			core, logs := observer.New(zapcore.DebugLevel)
			tok.logger = zap.New(core)
			// Another key is published too, as during a rotation.
			jwks := mustLoadJWKS(t, map[string]any{
				"signing_key":   tt.key,
				"previous_keys": []string{publicPEM(t, k.ec2)},
			})
			keySet := serveJWKS(t, jwks)

			s := &session{
				key: "sess-1", subject: "user-1", scopes: []string{"orders:read", "profile"},
				claims: map[string]any{
					"email": "ada@example.com", "groups": []any{"staff"},
					"realm_access": map[string]any{"roles": []any{"admin"}},
				},
				accessToken: "provider-access-token",
			}
			r := newRequest(t, http.MethodGet, "https://Portal.Example/api/orders", s)
			w, auth := serve(t, tok, r)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d, body %s", w.Code, w.Body)
			}
			raw := bearer(t, auth)
			claims, parsed := verify(t, keySet, raw, "https://portal.example")

			if parsed.Method.Alg() != tt.alg || parsed.Header["typ"] != "JWT" {
				t.Errorf("header = %v, want alg %s, typ JWT", parsed.Header, tt.alg)
			}
			if kid := parsed.Header["kid"]; kid != tok.key.KID || kid != jwks.kids[0] {
				t.Errorf("kid %v, want %s (bff_jwks %s)", kid, tok.key.KID, jwks.kids[0])
			}
			exp, _ := claims.GetExpirationTime()
			iat, _ := claims.GetIssuedAt()
			if got := exp.Sub(iat.Time); got != 2*time.Minute {
				t.Errorf("exp - iat = %s, want 2m", got)
			}
			if jti, _ := claims["jti"].(string); len(jti) != 22 {
				t.Errorf("jti %q is not 16 random bytes in base64url", jti)
			}
			want := map[string]any{
				"sub": "user-1", "scope": "orders:read profile", "email": "ada@example.com",
				"groups": []any{"staff"}, "realm_access.roles": []any{"admin"}, "aud": "orders-api",
			}
			for name, v := range want {
				if got, _ := json.Marshal(claims[name]); string(got) != string(must(json.Marshal(v))) {
					t.Errorf("claim %s = %s, want %s", name, got, must(json.Marshal(v)))
				}
			}
			if _, ok := claims["absent"]; ok {
				t.Error("absent claim was added")
			}
			if _, ok := claims["nbf"]; ok {
				t.Error("unexpected nbf")
			}
			// Neither the client nor the logs see the token.
			if strings.Contains(w.Body.String(), raw) || strings.Contains(headerText(w.Header()), raw) {
				t.Error("token leaked into the response")
			}
			for _, e := range logs.All() {
				b, _ := json.Marshal(e.ContextMap())
				if strings.Contains(string(b)+e.Message, raw[:40]) {
					t.Errorf("token leaked into log %q", e.Message)
				}
			}
			if logs.FilterMessage("minted token").Len() != 1 {
				t.Errorf("want one debug entry for the mint, got %v", logs.All())
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func headerText(h http.Header) string {
	var sb strings.Builder
	_ = h.Write(&sb)
	return sb.String()
}

func serveJWKS(t *testing.T, j *JWKS) []byte {
	t.Helper()
	w := httptest.NewRecorder()
	if err := j.ServeHTTP(w, newRequest(t, http.MethodGet, "https://portal.example/.well-known/jwks.json", nil), nil); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusOK {
		t.Fatalf("bff_jwks status %d", w.Code)
	}
	return w.Body.Bytes()
}

func TestMintIssuer(t *testing.T) {
	key := pkcs8PEM(t, keysOnce().ec)
	keySet := serveJWKS(t, mustLoadJWKS(t, map[string]any{"signing_key": key}))
	tests := []struct {
		name, issuer, target, want string
	}{
		{"configured", "https://bff.example", "https://portal.example/api", "https://bff.example"},
		{"https origin", "", "https://portal.example:8443/api", "https://portal.example:8443"},
		{"http origin", "", "http://localhost/api", "http://localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mintConfig(key)
			if tt.issuer != "" {
				cfg["issuer"] = tt.issuer
			}
			tok := mustLoadToken(t, cfg)
			_, auth := serve(t, tok, newRequest(t, http.MethodGet, tt.target, &session{key: "s", subject: "u"}))
			verify(t, keySet, bearer(t, auth), tt.want)
		})
	}
}

func TestMintCache(t *testing.T) {
	tok := mustLoadToken(t, mintConfig(pkcs8PEM(t, keysOnce().ed)))
	clk := newClock()
	tok.now = clk.now
	var mints atomic.Int32
	tok.minted = func() { mints.Add(1) }

	alice := &session{key: "sess-a", subject: "alice", scopes: []string{"a", "b"}}
	get := func(s *session) string {
		t.Helper()
		_, auth := serve(t, tok, newRequest(t, http.MethodGet, "https://portal.example/api", s))
		return bearer(t, auth)
	}

	first := get(alice)
	// Default ttl 5m: reused until 1m (ttl/5) remains.
	steps := []struct {
		name    string
		advance time.Duration
		s       *session
		same    bool
		mints   int32
	}{
		{"second request reuses", 0, alice, true, 1},
		{"still fresh", 3*time.Minute + 59*time.Second, alice, true, 1},
		{"near expiry mints anew", time.Second, alice, false, 2},
		{"new one is reused", 0, alice, true, 2},
		{"other session", 0, &session{key: "sess-b", subject: "alice", scopes: []string{"a", "b"}}, false, 3},
		{"same session, scopes changed on refresh", 0, &session{key: "sess-a", subject: "alice", scopes: []string{"a"}}, false, 4},
		{"same session key, other subject", 0, &session{key: "sess-a", subject: "mallory", scopes: []string{"a"}}, false, 5},
	}
	prev := first
	for _, st := range steps {
		clk.advance(st.advance)
		got := get(st.s)
		if (got == prev) != st.same {
			t.Errorf("%s: same token = %v, want %v", st.name, got == prev, st.same)
		}
		if n := mints.Load(); n != st.mints {
			t.Errorf("%s: %d mints, want %d", st.name, n, st.mints)
		}
		if st.s == alice {
			prev = got
		}
	}

	// A session ending before ttl caps the token; a session already over
	// gets a 401, not a token.
	short := &session{key: "sess-c", subject: "carol", expiresAt: clk.now().Add(time.Minute)}
	claims, _ := verifyUnsigned(t, get(short))
	if exp, _ := claims.GetExpirationTime(); !exp.Equal(short.expiresAt) {
		t.Errorf("exp %v, want the session's end %v", exp, short.expiresAt)
	}
	ended := &session{key: "sess-d", subject: "dave", expiresAt: clk.now()}
	w, auth := serve(t, tok, newRequest(t, http.MethodGet, "https://portal.example/api", ended))
	if w.Code != http.StatusUnauthorized || auth != nil {
		t.Errorf("ended session: status %d, upstream %q", w.Code, auth)
	}

	// The sweeper drops what can no longer be reused.
	before := tok.cache.len()
	clk.advance(10 * time.Minute)
	if n := tok.cache.sweep(); n != before || tok.cache.len() != 0 {
		t.Errorf("sweep dropped %d of %d, %d left", n, before, tok.cache.len())
	}
}

// verifyUnsigned decodes claims without checking the signature (the
// signature is covered by TestMintVerifiesWithPublishedKey).
func verifyUnsigned(t *testing.T, tok string) (jwt.MapClaims, *jwt.Token) {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, claims)
	if err != nil {
		t.Fatal(err)
	}
	return claims, parsed
}

func TestMintSingleflight(t *testing.T) {
	tok := mustLoadToken(t, mintConfig(pkcs1PEM(keysOnce().rsa.(*rsa.PrivateKey))))
	s := &session{key: "sess-1", subject: "user-1"}
	const n = 100
	// In a synctest bubble, synctest.Wait returns only when every request
	// is blocked: the minting one in the hook, the others waiting on its
	// flight. Without singleflight, all n would be in the hook.
	synctest.Test(t, func(t *testing.T) {
		var mints atomic.Int32
		release := make(chan struct{})
		tok.minted = func() {
			mints.Add(1)
			<-release
		}
		var wg sync.WaitGroup
		tokens := make([]string, n)
		for i := range n {
			r := newRequest(t, http.MethodGet, "https://portal.example/api", s)
			wg.Go(func() {
				w := httptest.NewRecorder()
				up := new(upstream)
				if err := tok.ServeHTTP(w, r, up); err != nil {
					t.Error(err)
					return
				}
				if len(up.auth) == 1 {
					tokens[i] = up.auth[0]
				}
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		if got := mints.Load(); got != 1 {
			t.Errorf("%d mints for %d concurrent first requests, want 1", got, n)
		}
		for i, tk := range tokens {
			if tk == "" || tk != tokens[0] {
				t.Fatalf("request %d got a different or no token", i)
			}
		}
	})
}

func TestUnauthorized(t *testing.T) {
	key := pkcs8PEM(t, keysOnce().ec)
	now := time.Now()
	tests := []struct {
		name    string
		cfg     map[string]any
		s       *session
		wantMsg string
	}{
		{"access_token: no session", map[string]any{}, nil, "login required"},
		{"mint: no session", mintConfig(key), nil, "login required"},
		{"access_token: no access token", map[string]any{}, &session{key: "s", subject: "u"}, "no access token"},
		{"access_token: expired", map[string]any{"mode": "access_token"}, &session{key: "s", subject: "u", accessToken: "at", tokenExpiry: now.Add(-time.Second)}, "expired"},
		{"mint: session over", mintConfig(key), &session{key: "s", subject: "u", expiresAt: now.Add(-time.Second)}, "session expired"},
		{"mint: no subject", mintConfig(key), &session{key: "s"}, "session expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustLoadToken(t, tt.cfg)
			r := newRequest(t, http.MethodGet, "https://portal.example/api", tt.s)
			r.Header.Set("Authorization", "Bearer forged")
			r.Header.Set("X-Request-ID", "req-42")
			w, auth := serve(t, tok, r)
			if auth != nil {
				t.Fatalf("upstream was called with %q", auth)
			}
			if w.Code != http.StatusUnauthorized || w.Header().Get("Content-Type") != problem.ContentType {
				t.Fatalf("status %d, content type %q", w.Code, w.Header().Get("Content-Type"))
			}
			var p problem.Details
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Status != 401 || p.LoginURL != "/auth/login" || p.RequestID != "req-42" || !strings.Contains(p.Detail, tt.wantMsg) {
				t.Errorf("problem = %+v, want 401 with login_url, request_id and %q", p, tt.wantMsg)
			}
			if w.Header().Get("X-Request-ID") != "req-42" {
				t.Error("request id not returned")
			}
			if strings.Contains(w.Body.String(), "forged") {
				t.Error("response echoes the client's Authorization")
			}
		})
	}
}

func TestAuthorizationReplaced(t *testing.T) {
	key := pkcs8PEM(t, keysOnce().ec)
	forged := []string{"Bearer forged", "Basic YWRtaW46YWRtaW4="}
	tests := []struct {
		name   string
		cfg    map[string]any
		forged []string
		want   string // "" means a minted JWT
	}{
		{"access_token, one forged header", map[string]any{}, forged[:1], "Bearer provider-at"},
		{"access_token, two forged headers", map[string]any{}, forged, "Bearer provider-at"},
		{"access_token, none sent", map[string]any{}, nil, "Bearer provider-at"},
		{"mint, forged headers", mintConfig(key), forged, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustLoadToken(t, tt.cfg)
			s := &session{key: "s", subject: "u", accessToken: "provider-at", tokenExpiry: time.Now().Add(time.Hour)}
			r := newRequest(t, http.MethodGet, "https://portal.example/api", s)
			for _, v := range tt.forged {
				r.Header.Add("Authorization", v)
			}
			w, auth := serve(t, tok, r)
			if tt.want == "" {
				claims, _ := verifyUnsigned(t, bearer(t, auth))
				if claims["sub"] != "u" {
					t.Errorf("sub = %v", claims["sub"])
				}
			} else if len(auth) != 1 || auth[0] != tt.want {
				t.Errorf("upstream Authorization = %q, want %q", auth, tt.want)
			}
			if strings.Contains(headerText(w.Header())+w.Body.String(), "provider-at") {
				t.Error("access token leaked into the response")
			}
		})
	}
}

func TestScopeNarrowing(t *testing.T) {
	key := pkcs8PEM(t, keysOnce().ec)
	tests := []struct {
		name       string
		configured []string
		user       []string
		want       string // "" means no scope claim
	}{
		{"no narrowing", nil, []string{"openid", "orders:read", "orders:write"}, "openid orders:read orders:write"},
		{"intersection in user order", []string{"orders:write", "orders:read"}, []string{"openid", "orders:read", "orders:write"}, "orders:read orders:write"},
		{"configured scope the user lacks is not granted", []string{"orders:read", "admin"}, []string{"orders:read"}, "orders:read"},
		{"nothing in common", []string{"admin"}, []string{"orders:read"}, ""},
		{"user without scopes", []string{"admin"}, nil, ""},
		{"duplicates collapse", nil, []string{"a", "b", "a"}, "a b"},
		{"near-miss names do not match", []string{"orders:read"}, []string{"orders:read ", "Orders:read", "orders:readx"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mintConfig(key)
			if tt.configured != nil {
				cfg["scopes"] = tt.configured
			}
			tok := mustLoadToken(t, cfg)
			s := &session{key: "s", subject: "u", scopes: tt.user}
			for range 2 { // minted, then from the cache
				_, auth := serve(t, tok, newRequest(t, http.MethodGet, "https://portal.example/api", s))
				claims, _ := verifyUnsigned(t, bearer(t, auth))
				got, present := claims["scope"]
				if (tt.want == "" && present) || (tt.want != "" && got != tt.want) {
					t.Errorf("scope = %v (present %v), want %q", got, present, tt.want)
				}
			}
		})
	}
}

// Without a session key, tokens are minted per request, never shared.
func TestMintWithoutSessionKeyIsNotCached(t *testing.T) {
	tok := mustLoadToken(t, mintConfig(pkcs8PEM(t, keysOnce().ec)))
	var mints atomic.Int32
	tok.minted = func() { mints.Add(1) }
	for range 2 {
		serve(t, tok, newRequest(t, http.MethodGet, "https://portal.example/api", &session{subject: "u"}))
	}
	if mints.Load() != 2 || tok.cache.len() != 0 {
		t.Errorf("%d mints, %d cached; want 2 and 0", mints.Load(), tok.cache.len())
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache(100, time.Now)
	now := time.Now()
	for i := range 1000 {
		c.put(cacheKey{session: string(rune(i + 1))}, &cachedToken{refreshAt: now.Add(time.Hour)})
		if c.len() > 100 {
			t.Fatalf("cache grew to %d", c.len())
		}
	}
	// Stale entries make room before fresh ones are evicted.
	c = newTokenCache(2, time.Now)
	c.put(cacheKey{session: "stale"}, &cachedToken{refreshAt: now.Add(-time.Second)})
	c.put(cacheKey{session: "fresh"}, &cachedToken{refreshAt: now.Add(time.Hour)})
	c.put(cacheKey{session: "new"}, &cachedToken{refreshAt: now.Add(time.Hour)})
	if c.get(cacheKey{session: "fresh"}) == nil || c.get(cacheKey{session: "new"}) == nil || c.get(cacheKey{session: "stale"}) != nil {
		t.Error("eviction dropped a fresh entry while a stale one was left")
	}
}

func TestRefreshSkew(t *testing.T) {
	for _, tt := range []struct{ ttl, want time.Duration }{
		{10 * time.Second, 5 * time.Second},
		{30 * time.Second, 10 * time.Second},
		{5 * time.Minute, time.Minute},
		{time.Hour, 12 * time.Minute},
	} {
		if got := refreshSkew(tt.ttl); got != tt.want {
			t.Errorf("refreshSkew(%s) = %s, want %s", tt.ttl, got, tt.want)
		}
	}
}

func BenchmarkMintCached(b *testing.B) {
	k := keysOnce()
	tok := mustLoadToken(b, mintConfig(pkcs8PEM(b, k.ec)))
	tok.logger = zap.NewNop()
	s := &session{key: "sess-1", subject: "user-1", scopes: []string{"openid", "orders:read"}}
	r := newRequest(b, http.MethodGet, "https://portal.example/api/orders", s)
	w := httptest.NewRecorder()
	next := nopHandler{}
	if err := tok.ServeHTTP(w, r, next); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := tok.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ey") {
		b.Fatal("no token set")
	}
}

type nopHandler struct{}

func (nopHandler) ServeHTTP(http.ResponseWriter, *http.Request) error { return nil }
