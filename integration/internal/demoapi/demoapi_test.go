package demoapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	iss = "http://127.0.0.1:8080"
	aud = "demo-api"
)

type keys struct {
	ec    *ecdsa.PrivateKey
	other *ecdsa.PrivateKey // not published
	rsa   *rsa.PrivateKey
}

func newKeys(t *testing.T) keys {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return keys{ec: ec, other: other, rsa: rk}
}

// jwksServer publishes the EC and RSA public keys and counts fetches.
func jwksServer(t *testing.T, k keys) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, pub := range map[string]any{"ec1": &k.ec.PublicKey, "rsa1": &k.rsa.PublicKey} {
		j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	body, _ := json.Marshal(set)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": iss, "aud": aud, "sub": "id2", "scope": "openid recipes:read",
		"exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "email": "reader@example.com",
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestAPI(t *testing.T) {
	k := newKeys(t)
	jwks, fetches := jwksServer(t, k)
	api, err := New(Config{JWKSURL: jwks.URL, Issuer: iss, Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)

	good := sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(nil))
	tests := []struct {
		name       string
		path       string
		auth       string
		wantStatus int
		wantSub    string
	}{
		{"me", "/api/me", "Bearer " + good, 200, "id2"},
		{"recipes with scope", "/api/recipes", "Bearer " + good, 200, "id2"},
		{"rsa key", "/api/me", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa, "rsa1", claims(nil)), 200, "id2"},
		{"lowercase scheme", "/api/me", "bearer " + good, 200, "id2"},
		{"scope array", "/api/recipes", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) {
			delete(c, "scope")
			c["scp"] = []string{"recipes:read"}
		})), 200, "id2"},

		{"no token", "/api/me", "", 401, ""},
		{"basic auth", "/api/me", "Basic YTpi", 401, ""},
		{"garbage", "/api/me", "Bearer abc.def.ghi", 401, ""},
		{"recipes without scope", "/api/recipes", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { c["scope"] = "openid" })), 403, ""},
		{"wrong audience", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { c["aud"] = "other" })), 401, ""},
		{"wrong issuer", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { c["iss"] = "http://evil" })), 401, ""},
		{"expired", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), 401, ""},
		{"no exp", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { delete(c, "exp") })), 401, ""},
		{"no sub", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { delete(c, "sub") })), 401, ""},
		{"unpublished key", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.other, "ec1", claims(nil)), 401, ""},
		{"unknown kid", "/api/me", "Bearer " + sign(t, jwt.SigningMethodES256, k.other, "nope", claims(nil)), 401, ""},
		{"alg none", "/api/me", "Bearer " + sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "ec1", claims(nil)), 401, ""},
		{"hmac with the public key", "/api/me", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("secret"), "ec1", claims(nil)), 401, ""},
		{"unknown path", "/api/nope", "Bearer " + good, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if rec.Code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
			if tt.wantSub != "" {
				var body map[string]any
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				if body["sub"] != tt.wantSub || !strings.Contains(rec.Body.String(), "recipes:read") {
					t.Errorf("body %s, want sub %s and its scopes", rec.Body, tt.wantSub)
				}
			}
		})
	}
	if fetches.Load() == 0 {
		t.Error("JWKS never fetched")
	}
}

func TestAPIStartsBeforeJWKS(t *testing.T) {
	k := newKeys(t)
	var ready atomic.Bool
	jwks, _ := jwksServer(t, k)
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		resp, err := http.Get(jwks.URL)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		var v any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		_ = json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(gate.Close)

	api, err := New(Config{JWKSURL: gate.URL, Issuer: iss, Audience: aud})
	if err != nil {
		t.Fatalf("New with the JWKS down: %v", err)
	}
	t.Cleanup(api.Close)
	ready.Store(true)
	req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(nil)))
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("first token after the JWKS came up: %d %s", rec.Code, rec.Body)
	}
}

// The API checks every scope itself, whatever the gateway decided.
func TestAPIScopes(t *testing.T) {
	k := newKeys(t)
	jwks, _ := jwksServer(t, k)
	api, err := New(Config{JWKSURL: jwks.URL, Issuer: iss, Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	token := func(sub, scope string) string {
		return "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) {
			c["sub"], c["scope"] = sub, scope
		}))
	}
	admin := token("id1", "openid recipes:read recipes:write admin")
	writer := token("id3", "recipes:write")
	reader := token("id2", "openid recipes:read")
	const ctJSON = "application/json"

	tests := []struct {
		name, method, path, auth, ctype, body string
		wantStatus                            int
		wantBody                              string
	}{
		{"admin adds a recipe", "POST", "/api/recipes", admin, ctJSON, `{"title": "  Risotto  "}`, 201, `"title":"Risotto","author":"id1"`},
		{"writer adds a recipe", "POST", "/api/recipes", writer, "application/json; charset=utf-8", `{"title": "Pho"}`, 201, `"author":"id3"`},
		{"the new recipes are listed", "GET", "/api/recipes", reader, "", "", 200, `"Risotto"`},
		{"admin reads stats", "GET", "/api/admin/stats", admin, "", "", 200, `"sub":"id1"`},

		{"reader cannot add", "POST", "/api/recipes", reader, ctJSON, `{"title": "Sneaky"}`, 403, `"scope":"recipes:write"`},
		{"admin scope alone cannot add", "POST", "/api/recipes", token("id1", "admin"), ctJSON, `{"title": "Sneaky"}`, 403, "insufficient_scope"},
		{"writer cannot read stats", "GET", "/api/admin/stats", writer, "", "", 403, `"scope":"admin"`},
		{"reader cannot read stats", "GET", "/api/admin/stats", reader, "", "", 403, "insufficient_scope"},
		{"scope that merely contains admin", "GET", "/api/admin/stats", token("id2", "administrator recipes:admin"), "", "", 403, "insufficient_scope"},
		{"no token cannot add", "POST", "/api/recipes", "", ctJSON, `{"title": "Sneaky"}`, 401, "invalid_token"},
		{"no token, no stats", "GET", "/api/admin/stats", "", "", "", 401, "invalid_token"},
		{"form body", "POST", "/api/recipes", writer, "application/x-www-form-urlencoded", `title=Sneaky`, 415, "unsupported_media_type"},
		{"not JSON", "POST", "/api/recipes", writer, ctJSON, `title`, 400, "invalid_request"},
		{"unknown field", "POST", "/api/recipes", writer, ctJSON, `{"title": "A", "author": "id1"}`, 400, "invalid_request"},
		{"two objects", "POST", "/api/recipes", writer, ctJSON, `{"title": "A"} {"title": "B"}`, 400, "invalid_request"},
		{"empty title", "POST", "/api/recipes", writer, ctJSON, `{"title": "  "}`, 400, "title must be"},
		{"long title", "POST", "/api/recipes", writer, ctJSON, `{"title": "` + strings.Repeat("a", 81) + `"}`, 400, "title must be"},
		{"control character", "POST", "/api/recipes", writer, ctJSON, `{"title": "a\u0007b"}`, 400, "title must be"},
		{"huge body", "POST", "/api/recipes", writer, ctJSON, `{"title": "` + strings.Repeat("a", 8<<10) + `"}`, 400, "invalid_request"},
		{"other method", "DELETE", "/api/recipes", admin, "", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := api.Requests()
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("%d %s, want %d with %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if rec.Code == 403 && !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="insufficient_scope"`) {
				t.Errorf("403 without an insufficient_scope challenge: %q", rec.Header().Get("WWW-Authenticate"))
			}
			if got := api.Requests(); got != before+1 {
				t.Errorf("Requests() went from %d to %d", before, got)
			}
		})
	}

	// Stats count per caller.
	req := httptest.NewRequest("GET", "/api/admin/stats", nil)
	req.Header.Set("Authorization", admin)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	var st map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st["recipes"] != float64(5) || st["your_calls"] != float64(4) || st["callers"] != float64(3) {
		t.Errorf("stats %v, want 5 recipes, 4 calls of id1, 3 callers", st)
	}
}

// Added recipes are bounded.
func TestAPIRecipesBounded(t *testing.T) {
	k := newKeys(t)
	jwks, _ := jwksServer(t, k)
	api, err := New(Config{JWKSURL: jwks.URL, Issuer: iss, Audience: aud})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	tok := "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, "ec1", claims(func(c jwt.MapClaims) { c["scope"] = "recipes:read recipes:write" }))
	for i := range maxRecipes + 10 {
		req := httptest.NewRequest("POST", "/api/recipes", strings.NewReader(`{"title": "r`+strconv.Itoa(i)+`"}`))
		req.Header.Set("Authorization", tok)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != 201 {
			t.Fatalf("add %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	req := httptest.NewRequest("GET", "/api/recipes", nil)
	req.Header.Set("Authorization", tok)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	var body struct{ Recipes []Recipe }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Recipes) != maxRecipes || body.Recipes[len(body.Recipes)-1].Title != "r"+strconv.Itoa(maxRecipes+9) {
		t.Errorf("%d recipes, last %+v", len(body.Recipes), body.Recipes[len(body.Recipes)-1])
	}
}
