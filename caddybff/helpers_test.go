package caddybff

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// testKeys are generated once per test binary: RSA generation is slow
// under -race.
type testKeys struct {
	ec, ec2, rsa, ed, p384, rsa1024 crypto.Signer
}

var keysOnce = sync.OnceValue(func() *testKeys {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &testKeys{
		ec:      must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		ec2:     must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)),
		rsa:     must(rsa.GenerateKey(rand.Reader, 2048)),
		ed:      ed,
		p384:    must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)),
		rsa1024: must(rsa.GenerateKey(rand.Reader, 1024)),
	}
})

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkcs8PEM(t testing.TB, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func sec1PEM(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	// OpenSSL's `ecparam -genkey` writes the curve first.
	return pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}) +
		pemBlock("EC PRIVATE KEY", der)
}

func pkcs1PEM(k *rsa.PrivateKey) string {
	return pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
}

func publicPEM(t testing.TB, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PUBLIC KEY", der)
}

// loadModule decodes cfg strictly, provisions and validates it, as Caddy
// does; the context is cancelled when the test ends.
func loadModule(t testing.TB, id string, cfg any) (any, error) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx.LoadModuleByID(id, raw)
}

func mustLoadToken(t testing.TB, cfg any) *Token {
	t.Helper()
	m, err := loadModule(t, "http.handlers.bff_token", cfg)
	if err != nil {
		t.Fatalf("loading bff_token: %v", err)
	}
	return m.(*Token)
}

func mustLoadJWKS(t testing.TB, cfg any) *JWKS {
	t.Helper()
	m, err := loadModule(t, "http.handlers.bff_jwks", cfg)
	if err != nil {
		t.Fatalf("loading bff_jwks: %v", err)
	}
	return m.(*JWKS)
}

// session describes the identity oidc_auth would attach.
type session struct {
	key         string
	subject     string
	scopes      []string
	claims      map[string]any
	expiresAt   time.Time
	accessToken string
	tokenExpiry time.Time
	acr         string
	authTime    time.Time
}

// newRequest is a request as Caddy's server hands it to handlers, with the
// session's identity attached unless s is nil.
func newRequest(t testing.TB, method, target string, s *session) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, &caddyhttp.Server{})
	if s != nil {
		id := &oidcauth.Identity{Subject: s.subject, Scopes: s.scopes, Claims: s.claims, ExpiresAt: s.expiresAt,
			ACR: s.acr, AuthTime: s.authTime}
		oidcauth.InsecureSetIdentity(r, id, s.key, s.accessToken, s.tokenExpiry)
	}
	return r
}

// upstream records what the next handler saw.
type upstream struct {
	calls atomic.Int32
	mu    sync.Mutex
	auth  []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.calls.Add(1)
	u.mu.Lock()
	u.auth = r.Header.Values("Authorization")
	u.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serve runs h and returns the response and the Authorization values the
// upstream saw (nil when it was not called).
func serve(t testing.TB, h caddyhttp.MiddlewareHandler, r *http.Request) (*httptest.ResponseRecorder, []string) {
	t.Helper()
	w := httptest.NewRecorder()
	up := new(upstream)
	if err := h.ServeHTTP(w, r, up); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	if up.calls.Load() == 0 {
		return w, nil
	}
	return w, up.auth
}

// clock is a settable time source for injected now funcs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
