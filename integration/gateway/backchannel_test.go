package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

func postLogoutToken(t *testing.T, g *gw, token string) resp {
	t.Helper()
	c := bare()
	r, err := c.PostForm(g.base+"/auth/backchannel-logout", url.Values{"logout_token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	return resp{r, ""}
}

func TestBackchannelLogout(t *testing.T) {
	for _, store := range []string{"cookie", "memory"} {
		t.Run(store, func(t *testing.T) {
			g := startGW(t, gwOpts{store: store})
			admin1, admin2 := g.admin(), g.admin()
			reader := g.login(testop.ReaderUsername, testop.ReaderPassword)
			copied := g.cookieHeader(admin1)

			mustToken := func(sub, sid string, edit func(map[string]any)) string {
				tok, err := g.op.LogoutToken(sub, sid, edit)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			good := mustToken(testop.AdminSubject, "", nil)
			tampered := good[:len(good)-6] + "AAAAAA"
			parts := strings.Split(good, ".")
			swapped := parts[0] + "." + strings.Split(mustToken(testop.ReaderSubject, "", nil), ".")[1] + "." + parts[2]
			old := time.Now().Add(-time.Hour).Unix()
			for name, tok := range map[string]string{
				"garbage":       "not-a-jwt",
				"tampered sig":  tampered,
				"swapped body":  swapped,
				"wrong aud":     mustToken(testop.AdminSubject, "", func(c map[string]any) { c["aud"] = "someone-else" }),
				"wrong iss":     mustToken(testop.AdminSubject, "", func(c map[string]any) { c["iss"] = "http://127.0.0.1:1" }),
				"expired":       mustToken(testop.AdminSubject, "", func(c map[string]any) { c["iat"] = old; c["exp"] = old + 60 }),
				"stale no exp":  mustToken(testop.AdminSubject, "", func(c map[string]any) { c["iat"] = old; delete(c, "exp") }),
				"future iat":    mustToken(testop.AdminSubject, "", func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() }),
				"nonce":         mustToken(testop.AdminSubject, "", func(c map[string]any) { c["nonce"] = "n" }),
				"no event":      mustToken(testop.AdminSubject, "", func(c map[string]any) { delete(c, "events") }),
				"other event":   mustToken(testop.AdminSubject, "", func(c map[string]any) { c["events"] = map[string]any{"x": map[string]any{}} }),
				"event not obj": mustToken(testop.AdminSubject, "", func(c map[string]any) { c["events"] = map[string]any{testop.BackchannelEvent: "yes"} }),
				"no sub or sid": mustToken("", "", nil),
				"no jti":        mustToken(testop.AdminSubject, "", func(c map[string]any) { delete(c, "jti") }),
				"no iat":        mustToken(testop.AdminSubject, "", func(c map[string]any) { delete(c, "iat") }),
			} {
				if r := postLogoutToken(t, g, tok); r.StatusCode != 400 {
					t.Fatalf("%s: %d, want 400", name, r.StatusCode)
				}
			}
			if r := get(t, bare(), g.base+"/auth/backchannel-logout"); r.StatusCode != 405 {
				t.Fatalf("GET: %d, want 405", r.StatusCode)
			}
			if r := get(t, admin1, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("a rejected logout token ended a session: %d", r.StatusCode)
			}

			if r := postLogoutToken(t, g, good); r.StatusCode != 200 {
				t.Fatalf("valid logout token: %d", r.StatusCode)
			}
			for i, c := range []string{"first", "second"} {
				cl := admin1
				if i == 1 {
					cl = admin2
				}
				if r := get(t, cl, g.base+"/api/x"); r.StatusCode != 401 {
					t.Fatalf("admin's %s session after back-channel logout: %d", c, r.StatusCode)
				}
			}
			if r := do(t, bare(), "GET", g.base+"/api/x", map[string]string{"Cookie": copied}); r.StatusCode != 401 {
				t.Fatalf("a copied cookie survived back-channel logout: %d", r.StatusCode)
			}
			if r := get(t, reader, g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("another user's session ended: %d", r.StatusCode)
			}
			if r := postLogoutToken(t, g, good); r.StatusCode != 400 {
				t.Fatalf("replayed logout token: %d, want 400", r.StatusCode)
			}
			// The user can log in again afterwards.
			if r := get(t, g.admin(), g.base+"/api/x"); r.StatusCode != 200 {
				t.Fatalf("login after back-channel logout: %d", r.StatusCode)
			}
			assertNoSecrets(t, g.caddy.Logs(), good)
		})
	}
}

// forgedLogoutToken is a logout token with every claim right but signed by
// a key of the attacker's, under a key id the provider never had, with the
// algorithm the provider advertises (RS256).
func forgedLogoutToken(t *testing.T, g *gw, k *rsa.PrivateKey, kid string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k},
		(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := josejwt.Signed(signer).Claims(map[string]any{
		"iss": g.op.Issuer(), "aud": "bff", "sub": testop.AdminSubject, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": kid, "events": map[string]any{testop.BackchannelEvent: map[string]any{}},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Item 10 of issue 9: forged logout tokens with random key ids cannot make
// the gateway hammer the provider's JWKS endpoint; genuine tokens and
// logins still work right after.
func TestForgedLogoutTokensDoNotHammerJWKS(t *testing.T) {
	g := startGW(t, gwOpts{})
	c := g.admin() // the key set is fetched once, for the ID token
	g.op.ResetStats()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if r := postLogoutToken(t, g, forgedLogoutToken(t, g, k, fmt.Sprintf("forged-%d", i))); r.StatusCode != 400 {
			t.Fatalf("forged token %d: %d, want 400", i, r.StatusCode)
		}
	}
	if n := g.op.Stats().Keys; n > 1 {
		t.Fatalf("50 forged logout tokens made %d JWKS fetches at the provider, want at most 1", n)
	}
	if r := get(t, c, g.base+"/api/x"); r.StatusCode != 200 {
		t.Fatalf("a forged token ended the session: %d", r.StatusCode)
	}
	tok, err := g.op.LogoutToken(testop.AdminSubject, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := postLogoutToken(t, g, tok); r.StatusCode != 200 {
		t.Fatalf("the genuine logout token after the forged ones: %d", r.StatusCode)
	}
	if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
		t.Fatalf("after the genuine logout token: %d", r.StatusCode)
	}
	g.admin()
	t.Logf("JWKS fetches for 50 forged tokens, a genuine one and a login: %d", g.op.Stats().Keys)
}
