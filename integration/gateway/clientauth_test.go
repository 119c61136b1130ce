package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
	"github.com/caddy-bff/caddy-bff/internal/signkey"
)

// clientAuthGW runs our caddy against a provider whose client
// authenticates as cfg says, with the oidc_auth lines given: login,
// /api/* with the access token, /api/x/* with an exchanged one.
func clientAuthGW(t *testing.T, cfg testop.Config, oidcLines string) (*gw, *testop.Provider) {
	t.Helper()
	cfg.AccessTokenTTL = 4 * time.Second
	cfg.RedirectURIs = []string{"http://127.0.0.1:*/auth/callback"}
	op, err := testop.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = op.Close() })
	bin := harness.MustBuildCaddy(t)
	up := harness.NewUpstream(t)
	addr := harness.FreeAddr(t)
	g := &gw{t: t, op: op, up: up, addr: addr, base: "http://" + addr, bin: bin}
	g.cfg = harness.Caddyfile(fmt.Sprintf(`http://%[1]s {
	oidc_auth {
		issuer %[2]s
		client_id bff
		%[4]s
		scopes openid profile email offline_access recipes:read
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /api/x/* {
		bff_token {
			mode exchange
			audience test-api
		}
		reverse_proxy %[3]s
	}
	handle /api/* {
		bff_token
		reverse_proxy %[3]s
	}
	handle /welcome {
		respond "welcome" 200
	}
}
`, addr, op.Issuer(), upstream(up), oidcLines))
	g.env = []string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKeyA}
	g.caddy = harness.StartCaddy(t, bin, g.cfg, g.env...)
	return g, op
}

func upstream(up *harness.Upstream) string { return up.Addr() }

// login, a call, a refresh, and logout (with revocation) all authenticate
// the client the one way configured; exchange too when asked.
func exerciseClient(t *testing.T, g *gw, exchange bool) {
	t.Helper()
	c := g.reader()
	if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
		t.Fatalf("API call: %d %s", r.StatusCode, r.body)
	}
	time.Sleep(2500 * time.Millisecond) // past half the 4s token's life
	if r := get(t, c, g.base+"/api/b"); r.StatusCode != 200 {
		t.Fatalf("API call after the refresh point: %d %s", r.StatusCode, r.body)
	}
	if n := g.op.TokenCalls(testop.GrantRefreshToken); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	if exchange {
		if r := get(t, c, g.base+"/api/x/1"); r.StatusCode != 200 {
			t.Fatalf("exchange: %d %s", r.StatusCode, r.body)
		}
	}
	if r := do(t, c, "POST", g.base+"/auth/logout", map[string]string{"Origin": g.base}); r.StatusCode >= 400 {
		t.Fatalf("logout: %d %s", r.StatusCode, r.body)
	}
	if g.op.Stats().Revocations != 1 {
		t.Fatalf("%d revocations, want 1", g.op.Stats().Revocations)
	}
}

// Issue 11, item 2: a provider that takes client_secret_post only. Token
// exchange and revocation used to send Basic whatever discovery said, so
// exchange failed (403) and logout revoked nothing.
func TestClientSecretPostOnly(t *testing.T) {
	g, op := clientAuthGW(t, testop.Config{ClientAuth: oidc.AuthMethodPost, TokenAuthMethods: []string{"client_secret_post"}},
		"client_secret {env.OIDC_CLIENT_SECRET}")
	exerciseClient(t, g, true)
	st := op.Stats()
	if st.AuthMethods["client_secret_basic"] != 0 || st.AuthMethods["client_secret_post"] < 4 {
		t.Fatalf("client authentication used: %v", st.AuthMethods)
	}
}

// private_key_jwt (RFC 7523) end to end against zitadel's OP: login,
// refresh and revocation with a signed assertion, no secret anywhere.
// (zitadel's token exchange takes client secrets only.)
func TestPrivateKeyJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	sk, err := signkey.New(key)
	if err != nil {
		t.Fatal(err)
	}
	g, op := clientAuthGW(t, testop.Config{ClientAuth: oidc.AuthMethodPrivateKeyJWT, ClientKey: &key.PublicKey, ClientKeyID: sk.KID},
		"client_auth private_key_jwt\n\t\tclient_key "+file)
	exerciseClient(t, g, false)
	st := op.Stats()
	if st.AuthMethods["private_key_jwt"] < 3 || st.AuthMethods["client_secret_basic"] != 0 || st.AuthMethods["client_secret_post"] != 0 {
		t.Fatalf("client authentication used: %v", st.AuthMethods)
	}
	if st.TokenErrors[testop.GrantRefreshToken] != 0 || st.TokenErrors["authorization_code"] != 0 {
		t.Fatalf("token errors: %v", st.TokenErrors)
	}
}
