package gateway

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// RFC 8693 token exchange at the real provider: racing first requests of a
// session make exactly one exchange call; the token is for the configured
// audience and scopes; a refused exchange is a 403 problem, a provider
// outage a 503 problem.
func TestTokenExchange(t *testing.T) {
	g := startGW(t, gwOpts{tokenMode: "exchange"})
	c := g.admin()
	g.op.ResetStats()
	g.up.Reset()

	const n = 100
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", g.base+"/api/recipes", nil)
			r, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			r.Body.Close()
			codes[i] = r.StatusCode
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if got := g.op.TokenCalls(testop.GrantTokenExchange); got != 1 {
		t.Fatalf("%d token exchange calls at the provider for %d racing requests, want 1", got, n)
	}
	reqs := g.up.Requests()
	tok := reqs[0].BearerToken()
	for _, r := range reqs {
		if r.BearerToken() != tok {
			t.Fatal("racing requests got different tokens")
		}
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		t.Fatalf("exchanged token is not a JWT: %v", err)
	}
	aud, _ := claims.GetAudience()
	if !strings.Contains(strings.Join(aud, " "), "test-api") || claims["sub"] != testop.AdminSubject {
		t.Fatalf("exchanged token claims: aud %v sub %v", aud, claims["sub"])
	}
	if sc := strings.Fields(claims["scope"].(string)); len(sc) != 1 || sc[0] != "recipes:read" {
		t.Fatalf("exchanged token scope %v, want narrowed to recipes:read", claims["scope"])
	}

	// A user whose token cannot be narrowed to the scope is refused: 403.
	g2 := startGW(t, gwOpts{tokenMode: "exchange", scopes: "openid profile email"})
	c2 := g2.admin()
	r := get(t, c2, g2.base+"/api/recipes")
	if r.StatusCode != 403 {
		t.Fatalf("refused exchange: %d, want 403: %s", r.StatusCode, r.body)
	}
	r.problem(t)
	if len(g2.up.Requests()) != 1 { // only the login's landing page
		t.Fatal("a request with a refused exchange reached the upstream")
	}

	// Provider down: 503, never a pass. (The cached token still serves
	// the first session until shortly before it expires.)
	c3 := g.login(testop.ReaderUsername, testop.ReaderPassword)
	if err := g.op.Stop(); err != nil {
		t.Fatal(err)
	}
	r = get(t, c3, g.base+"/api/recipes")
	if r.StatusCode != 503 {
		t.Fatalf("exchange with the provider down: %d, want 503", r.StatusCode)
	}
	r.problem(t)
	if r := get(t, c, g.base+"/api/recipes"); r.StatusCode != 200 {
		t.Fatalf("cached exchanged token with the provider down: %d", r.StatusCode)
	}
	assertNoSecrets(t, g.caddy.Logs(), tok)
}
