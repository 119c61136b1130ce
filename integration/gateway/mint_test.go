package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// A service verifies the minted JWT offline with nothing but bff_jwks.
func TestMintVerifiedAgainstJWKS(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin()
	if r := get(t, c, g.base+"/api/recipes"); r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	first, _ := g.up.Last()
	if r := get(t, c, g.base+"/api/other"); r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	second, _ := g.up.Last()
	if first.BearerToken() != second.BearerToken() {
		t.Fatal("the minted token was not reused from the cache")
	}

	jr := get(t, bare(), g.base+"/.well-known/jwks.json")
	if jr.StatusCode != 200 || jr.Header.Get("Cache-Control") == "" {
		t.Fatalf("jwks: %d, Cache-Control %q", jr.StatusCode, jr.Header.Get("Cache-Control"))
	}
	kf, err := keyfunc.NewJWKSetJSON(json.RawMessage(jr.body))
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(first.BearerToken(), claims, kf.Keyfunc,
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(g.base), jwt.WithAudience("test-api"),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil || !tok.Valid {
		t.Fatalf("minted token does not verify against bff_jwks: %v", err)
	}
	if claims["sub"] != testop.AdminSubject || claims["email"] != testop.AdminEmail || claims["jti"] == nil {
		b, _ := json.Marshal(claims)
		t.Fatalf("claims %s", b)
	}
	exp, _ := claims.GetExpirationTime()
	if d := time.Until(exp.Time); d <= 0 || d > 5*time.Minute+5*time.Second {
		t.Fatalf("exp in %v, want within the 5m ttl", d)
	}
	// A token for another audience must not verify as ours.
	if _, err := jwt.Parse(first.BearerToken(), kf.Keyfunc, jwt.WithAudience("other-api")); err == nil {
		t.Fatal("token verified for a foreign audience")
	}
}
