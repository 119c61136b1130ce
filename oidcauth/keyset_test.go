package oidcauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

type testKey struct {
	priv *ecdsa.PrivateKey
	kid  string
}

func newTestKey(t *testing.T, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{k, kid}
}

func (k testKey) sign(t *testing.T, payload string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{}).WithHeader("kid", k.kid))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwksServer serves the public halves of keys (replaceable) and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []testKey
	extra   []json.RawMessage
	fetches atomic.Int32
	status  atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...testKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []any
		for _, k := range s.keys {
			out = append(out, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"})
		}
		for _, e := range s.extra {
			out = append(out, e)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": out})
	}))
	t.Cleanup(s.Close)
	return s
}

func TestKeySet(t *testing.T) {
	a, b := newTestKey(t, "a"), newTestKey(t, "b")
	srv := newJWKSServer(t, a)
	// Keys we must skip without failing the set.
	srv.extra = []json.RawMessage{
		json.RawMessage(`{"kty":"RSA","use":"enc","kid":"enc","n":"AQAB","e":"AQAB"}`),
		json.RawMessage(`{"kty":"OKP","crv":"X448","kid":"x448","x":"AAAA"}`),
		json.RawMessage(`{"kty":"EC","crv":"secp256k1","alg":"ES256K","kid":"k1","x":"AAAA","y":"AAAA"}`),
	}
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ks := newKeySet(srv.URL, srv.Client(), clock)
	ctx := context.Background()

	if p, err := ks.VerifySignature(ctx, a.sign(t, "hello")); err != nil || string(p) != "hello" {
		t.Fatalf("first token: %q %v", p, err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	// Known kid: no fetch. Bad signature with a known kid: refused, no fetch.
	for range 10 {
		if _, err := ks.VerifySignature(ctx, a.sign(t, "again")); err != nil {
			t.Fatal(err)
		}
	}
	forgedA := newTestKey(t, "a")
	if _, err := ks.VerifySignature(ctx, forgedA.sign(t, "x")); err == nil {
		t.Fatal("a forged signature with a known kid verified")
	}
	// Unknown kids, forged: within the interval no fetch at all; past it,
	// one, however many race.
	if _, err := ks.VerifySignature(ctx, newTestKey(t, "z").sign(t, "x")); !errors.Is(err, errUnknownKeyID) {
		t.Fatalf("unknown kid within the interval: %v", err)
	}
	advance(keysRefetchInterval)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := newTestKey(t, "forged-"+string(rune('A'+i%26)))
			if _, err := ks.VerifySignature(ctx, k.sign(t, "x")); err == nil {
				t.Error("a forged token verified")
			}
		}()
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("50 forged tokens: %d fetches in all, want 2 (one refetch)", n)
	}
	// The provider rotates to b: a token signed with b verifies once the
	// interval has passed.
	srv.mu.Lock()
	srv.keys = []testKey{a, b}
	srv.mu.Unlock()
	if _, err := ks.VerifySignature(ctx, b.sign(t, "x")); !errors.Is(err, errUnknownKeyID) {
		t.Fatalf("within the interval: %v, want errUnknownKeyID", err)
	}
	advance(keysRefetchInterval)
	if _, err := ks.VerifySignature(ctx, b.sign(t, "x")); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
	if p, ok, err := verifyWith(mustParse(t, b.sign(t, "y")), ks.keys, ""); !ok || err != nil || string(p) != "y" {
		t.Fatalf("a token without kid is tried with every key: %q %v %v", p, ok, err)
	}
	// A failed fetch keeps the old keys and is retried sooner.
	advance(keysRefetchInterval)
	srv.status.Store(http.StatusServiceUnavailable)
	if _, err := ks.VerifySignature(ctx, newTestKey(t, "c").sign(t, "x")); !errors.Is(err, errProviderDown) {
		t.Fatalf("provider down: %v, want errProviderDown", err)
	}
	if _, err := ks.VerifySignature(ctx, a.sign(t, "x")); err != nil {
		t.Fatalf("a known key after a failed fetch: %v", err)
	}
	srv.status.Store(0)
	advance(keysRetryAfterError)
	c := newTestKey(t, "c")
	srv.mu.Lock()
	srv.keys = append(srv.keys, c)
	srv.mu.Unlock()
	if _, err := ks.VerifySignature(ctx, c.sign(t, "x")); err != nil {
		t.Fatalf("retry after the error backoff: %v", err)
	}
	// HMAC and "none" are never accepted, whatever the key set holds.
	if _, err := ks.VerifySignature(ctx, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."); err == nil {
		t.Fatal("alg none accepted")
	}
}

func TestSigningAlgs(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "RS256"}, {[]string{"HS256", "none"}, "RS256"}, {[]string{"ES256", "HS256", "RS256"}, "ES256 RS256"},
	} {
		got := signingAlgs(tc.in)
		s := ""
		for i, a := range got {
			if i > 0 {
				s += " "
			}
			s += a
		}
		if s != tc.want {
			t.Errorf("signingAlgs(%v) = %q, want %q", tc.in, s, tc.want)
		}
	}
}

func mustParse(t *testing.T, raw string) *jose.JSONWebSignature {
	t.Helper()
	jws, err := jose.ParseSigned(raw, allowedJWSAlgs)
	if err != nil {
		t.Fatal(err)
	}
	return jws
}
