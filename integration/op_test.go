package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// rp is a relying party built from go-oidc and x/oauth2 only, to prove
// the test provider on its own.
type rp struct {
	t        *testing.T
	op       *testop.Provider
	provider *oidc.Provider
	oauth    oauth2.Config
	http     *http.Client
	ctx      context.Context
}

func newRP(t *testing.T, op *testop.Provider, scopes ...string) *rp {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second}
	ctx := oidc.ClientContext(t.Context(), hc)
	p, err := oidc.NewProvider(ctx, op.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess,
			testop.ScopeRecipesRead, testop.ScopeRecipesWrite, testop.ScopeAdmin}
	}
	return &rp{
		t: t, op: op, provider: p, http: hc, ctx: ctx,
		oauth: oauth2.Config{
			ClientID:     op.ClientID(),
			ClientSecret: op.ClientSecret(),
			Endpoint:     p.Endpoint(),
			RedirectURL:  fmt.Sprintf("http://127.0.0.1:%d/auth/callback", harness.FreePort(t)),
			Scopes:       scopes,
		},
	}
}

type loginResult struct {
	token    *oauth2.Token
	idToken  *oidc.IDToken
	verifier string
}

// login runs the code flow with PKCE, state and nonce up to the verified ID token.
func (r *rp) login(username, password string, opts ...oauth2.AuthCodeOption) loginResult {
	r.t.Helper()
	cb, verifier, nonce, state := r.authorize(username, password, opts...)
	if got := cb.Query().Get("state"); got != state {
		r.t.Fatalf("callback state = %q, want %q", got, state)
	}
	if e := cb.Query().Get("error"); e != "" {
		r.t.Fatalf("callback error %s: %s", e, cb.Query().Get("error_description"))
	}
	tok, err := r.oauth.Exchange(r.ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		r.t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: r.oauth.ClientID}).Verify(r.ctx, raw)
	if err != nil {
		r.t.Fatalf("id token: %v", err)
	}
	if idt.Nonce != nonce {
		r.t.Fatalf("id token nonce = %q, want %q", idt.Nonce, nonce)
	}
	return loginResult{token: tok, idToken: idt, verifier: verifier}
}

// authorize logs in up to the callback, not exchanging the code.
func (r *rp) authorize(username, password string, opts ...oauth2.AuthCodeOption) (cb *url.URL, verifier, nonce, state string) {
	r.t.Helper()
	verifier, nonce, state = oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	opts = append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce),
		oauth2.SetAuthURLParam("prompt", "consent")}, opts...)
	cb = harness.LoginToCallback(r.t, harness.NewClient(r.t), r.oauth.AuthCodeURL(state, opts...), username, password)
	if !strings.HasPrefix(cb.String(), r.oauth.RedirectURL+"?") {
		r.t.Fatalf("callback %s is not at the redirect URI %s", cb.Redacted(), r.oauth.RedirectURL)
	}
	return cb, verifier, nonce, state
}

// refresh forces a refresh_token grant.
func (r *rp) refresh(tok *oauth2.Token) (*oauth2.Token, error) {
	stale := *tok
	stale.AccessToken = ""
	stale.Expiry = time.Now().Add(-time.Minute)
	return r.oauth.TokenSource(r.ctx, &stale).Token()
}

// postForm posts to one of the provider's endpoints as the client (HTTP Basic).
func (r *rp) postForm(endpoint string, form url.Values) (int, map[string]any) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(r.oauth.ClientID), url.QueryEscape(r.oauth.ClientSecret))
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (r *rp) discovery() map[string]any {
	r.t.Helper()
	var d map[string]any
	if err := r.provider.Claims(&d); err != nil {
		r.t.Fatal(err)
	}
	return d
}

// exchange runs an RFC 8693 token exchange of an access token.
func (r *rp) exchange(accessToken, audience, scope string) (int, map[string]any) {
	r.t.Helper()
	form := url.Values{
		"grant_type":         {testop.GrantTokenExchange},
		"subject_token":      {accessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {audience},
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	return r.postForm(r.discovery()["token_endpoint"].(string), form)
}

func startOP(t *testing.T, cfg testop.Config) *testop.Provider {
	t.Helper()
	op, err := testop.Start(cfg)
	if err != nil {
		t.Fatalf("start op: %v", err)
	}
	t.Cleanup(func() { _ = op.Close() })
	return op
}

func invalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

func TestOPDiscovery(t *testing.T) {
	op := startOP(t, testop.Config{})
	if !strings.HasPrefix(op.Issuer(), "http://127.0.0.1:") || strings.HasSuffix(op.Issuer(), "/") {
		t.Fatalf("issuer = %q, want http://127.0.0.1:PORT", op.Issuer())
	}
	d := newRP(t, op).discovery() // go-oidc checks that the issuer matches
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
		"end_session_endpoint", "revocation_endpoint"} {
		v, _ := d[k].(string)
		if !strings.HasPrefix(v, op.Issuer()+"/") {
			t.Errorf("discovery %s = %q, want an endpoint under the issuer", k, v)
		}
	}
	grants := fmt.Sprint(d["grant_types_supported"])
	for _, g := range []string{testop.GrantAuthorizationCode, testop.GrantRefreshToken, testop.GrantTokenExchange} {
		if !strings.Contains(grants, g) {
			t.Errorf("grant_types_supported %s lacks %s", grants, g)
		}
	}
	if !strings.Contains(fmt.Sprint(d["code_challenge_methods_supported"]), "S256") {
		t.Errorf("code_challenge_methods_supported = %v, want S256", d["code_challenge_methods_supported"])
	}
	if op.Stats().Discovery == 0 {
		t.Error("discovery requests not counted")
	}
}

func TestOPRefusesNonLoopbackAddr(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0"} {
		if op, err := testop.Start(testop.Config{Addr: addr}); err == nil {
			_ = op.Close()
			t.Errorf("Start(%q) succeeded, want an error", addr)
		}
	}
}

func TestOPCodeFlow(t *testing.T) {
	op := startOP(t, testop.Config{AccessTokenTTL: 30 * time.Second})
	r := newRP(t, op)

	t.Run("reader", func(t *testing.T) {
		res := r.login(testop.ReaderUsername, testop.ReaderPassword)
		if res.idToken.Subject != testop.ReaderSubject {
			t.Errorf("sub = %q, want %q", res.idToken.Subject, testop.ReaderSubject)
		}
		if res.token.RefreshToken == "" {
			t.Error("no refresh token despite offline_access with prompt=consent")
		}
		if ttl := time.Until(res.token.Expiry); ttl <= 0 || ttl > 31*time.Second {
			t.Errorf("access token expires in %v, want at most AccessTokenTTL", ttl)
		}
		scope, _ := res.token.Extra("scope").(string)
		granted := strings.Fields(scope)
		if !slices.Contains(granted, testop.ScopeRecipesRead) || slices.Contains(granted, testop.ScopeRecipesWrite) ||
			slices.Contains(granted, testop.ScopeAdmin) {
			t.Errorf("granted scope %q, want recipes:read and no write/admin", scope)
		}

		// The ID token carries no profile claims; UserInfo does.
		var idClaims map[string]any
		_ = res.idToken.Claims(&idClaims)
		if _, ok := idClaims["email"]; ok {
			t.Errorf("ID token carries email by default: %v", idClaims)
		}
		ui, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(res.token))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		var uc struct {
			Email             string
			PreferredUsername string `json:"preferred_username"`
			Groups            []string
		}
		_ = ui.Claims(&uc)
		if ui.Subject != testop.ReaderSubject || ui.Email != testop.ReaderEmail || uc.PreferredUsername != testop.ReaderUsername ||
			!slices.Equal(uc.Groups, testop.Reader().Groups) {
			t.Errorf("userinfo = %+v (%+v), want the reader's claims", ui, uc)
		}

		// A JWT access token for the client, with the granted scopes.
		at, err := r.provider.Verifier(&oidc.Config{ClientID: op.ClientID()}).Verify(r.ctx, res.token.AccessToken)
		if err != nil {
			t.Fatalf("access token is not a JWT for %s: %v", op.ClientID(), err)
		}
		var atc struct{ Scope string }
		_ = at.Claims(&atc)
		if atc.Scope != scope {
			t.Errorf("access token scope = %q, want %q", atc.Scope, scope)
		}
	})

	t.Run("admin gets every custom scope", func(t *testing.T) {
		res := r.login(testop.AdminUsername, testop.AdminPassword)
		scope, _ := res.token.Extra("scope").(string)
		for _, s := range []string{testop.ScopeRecipesRead, testop.ScopeRecipesWrite, testop.ScopeAdmin} {
			if !slices.Contains(strings.Fields(scope), s) {
				t.Errorf("admin scope %q lacks %s", scope, s)
			}
		}
	})

	t.Run("code replay", func(t *testing.T) {
		cb, verifier, _, _ := r.authorize(testop.ReaderUsername, testop.ReaderPassword)
		code := cb.Query().Get("code")
		if _, err := r.oauth.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			t.Fatalf("first exchange: %v", err)
		}
		if _, err := r.oauth.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); !invalidGrant(err) {
			t.Errorf("replayed code: err = %v, want invalid_grant", err)
		}
	})

	t.Run("wrong PKCE verifier", func(t *testing.T) {
		cb, _, _, _ := r.authorize(testop.ReaderUsername, testop.ReaderPassword)
		if _, err := r.oauth.Exchange(r.ctx, cb.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Error("exchange with the wrong code_verifier succeeded")
		}
	})

	t.Run("wrong client secret", func(t *testing.T) {
		cb, verifier, _, _ := r.authorize(testop.ReaderUsername, testop.ReaderPassword)
		bad := r.oauth
		bad.ClientSecret = "wrong"
		if _, err := bad.Exchange(r.ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Error("exchange with the wrong client secret succeeded")
		}
	})

	t.Run("offline_access needs prompt=consent", func(t *testing.T) {
		res := r.login(testop.ReaderUsername, testop.ReaderPassword, oauth2.SetAuthURLParam("prompt", "login"))
		if res.token.RefreshToken != "" {
			t.Error("refresh token issued without prompt=consent")
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		start := r.oauth.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
		_, _, err := harness.TryLogin(harness.NewClient(t), start, testop.ReaderUsername, "nope", true)
		if !errors.Is(err, harness.ErrLoginRejected) {
			t.Errorf("err = %v, want ErrLoginRejected", err)
		}
	})

	if got := op.Stats().Logins; got < 6 {
		t.Errorf("Stats().Logins = %d, want at least 6", got)
	}
}

func TestOPRedirectURIRules(t *testing.T) {
	op := startOP(t, testop.Config{})
	r := newRP(t, op)
	tests := []struct {
		name, redirect string
		ok             bool
	}{
		{"127.0.0.1 any port", "http://127.0.0.1:12345/auth/callback", true},
		{"other path", "http://127.0.0.1:12345/other/callback", false},
		{"localhost", "http://localhost:12345/auth/callback", false},
		{"other host", "http://evil.example/auth/callback", false},
		{"https other host", "https://evil.example:12345/auth/callback", false},
		{"extra segment", "http://127.0.0.1:12345/x/auth/callback", false},
		{"userinfo trick", "http://127.0.0.1:1@evil.example/auth/callback", false},
		{"six-digit port", "http://127.0.0.1:123456/auth/callback", false},
		{"query added", "http://127.0.0.1:12345/auth/callback?x=1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := r.oauth
			cfg.RedirectURL = tt.redirect
			start := cfg.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			resp, err := harness.NewClient(t).Get(start)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := resp.Location()
			reachedLogin := resp.StatusCode == http.StatusFound && loc != nil && strings.HasPrefix(loc.String(), op.Issuer()+"/login/")
			if reachedLogin != tt.ok {
				t.Errorf("authorize with redirect_uri %s: status %d location %v; accepted = %v, want %v",
					tt.redirect, resp.StatusCode, loc, reachedLogin, tt.ok)
			}
			if loc != nil && strings.HasPrefix(loc.String(), tt.redirect) && !tt.ok {
				t.Errorf("provider redirected to the unregistered %s", tt.redirect)
			}
		})
	}
}

func TestOPRefreshAndRevocation(t *testing.T) {
	op := startOP(t, testop.Config{AccessTokenTTL: 5 * time.Second})
	r := newRP(t, op)
	res := r.login(testop.ReaderUsername, testop.ReaderPassword)

	before := op.TokenCalls(testop.GrantRefreshToken)
	tok2, err := r.refresh(res.token)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == "" || tok2.RefreshToken == "" || tok2.RefreshToken == res.token.RefreshToken {
		t.Fatalf("refresh gave %+v, want a new access token and a rotated refresh token", tok2)
	}
	if got := op.TokenCalls(testop.GrantRefreshToken) - before; got != 1 {
		t.Errorf("refresh_token calls = %d, want 1", got)
	}
	if ttl := time.Until(tok2.Expiry); ttl <= 0 || ttl > 6*time.Second {
		t.Errorf("refreshed token expires in %v, want <= 5s", ttl)
	}

	// The rotated-away refresh token is dead.
	if _, err := r.refresh(res.token); !invalidGrant(err) {
		t.Errorf("reusing a rotated refresh token: err = %v, want invalid_grant", err)
	}
	if n := op.LiveRefreshTokens(testop.ReaderUsername); n != 1 {
		t.Errorf("LiveRefreshTokens = %d, want 1", n)
	}

	// The invalid_grant switch.
	if n := op.RevokeRefreshTokens(testop.ReaderUsername); n != 1 {
		t.Errorf("RevokeRefreshTokens = %d, want 1", n)
	}
	if _, err := r.refresh(tok2); !invalidGrant(err) {
		t.Errorf("refresh after RevokeRefreshTokens: err = %v, want invalid_grant", err)
	}
	if st := op.Stats(); st.TokenErrors[testop.GrantRefreshToken] < 2 {
		t.Errorf("TokenErrors[refresh_token] = %d, want >= 2", st.TokenErrors[testop.GrantRefreshToken])
	}

	// A fresh login works again; the revocation endpoint kills its refresh token.
	res = r.login(testop.ReaderUsername, testop.ReaderPassword)
	revURL := r.discovery()["revocation_endpoint"].(string)
	if code, body := r.postForm(revURL, url.Values{"token": {res.token.RefreshToken}, "token_type_hint": {"refresh_token"}}); code != http.StatusOK {
		t.Fatalf("revoke: %d %v", code, body)
	}
	if op.Stats().Revocations != 1 {
		t.Errorf("Revocations = %d, want 1", op.Stats().Revocations)
	}
	if _, err := r.refresh(res.token); !invalidGrant(err) {
		t.Errorf("refresh after revocation: err = %v, want invalid_grant", err)
	}
	if n := op.LiveRefreshTokens(testop.ReaderSubject); n != 0 {
		t.Errorf("LiveRefreshTokens = %d after revocation, want 0", n)
	}
}

func TestOPTokenExchange(t *testing.T) {
	op := startOP(t, testop.Config{})
	r := newRP(t, op)
	res := r.login(testop.ReaderUsername, testop.ReaderPassword)

	code, body := r.exchange(res.token.AccessToken, "demo-api", testop.ScopeRecipesRead)
	if code != http.StatusOK {
		t.Fatalf("exchange: %d %v", code, body)
	}
	at, _ := body["access_token"].(string)
	tok, err := r.provider.Verifier(&oidc.Config{ClientID: "demo-api"}).Verify(r.ctx, at)
	if err != nil {
		t.Fatalf("exchanged token for demo-api: %v", err)
	}
	var c struct{ Scope string }
	_ = tok.Claims(&c)
	if tok.Subject != testop.ReaderSubject || c.Scope != testop.ScopeRecipesRead {
		t.Errorf("exchanged token sub %q scope %q, want %s and recipes:read", tok.Subject, c.Scope, testop.ReaderSubject)
	}
	if body["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" {
		t.Errorf("issued_token_type = %v", body["issued_token_type"])
	}
	if op.TokenCalls(testop.GrantTokenExchange) != 1 {
		t.Errorf("token exchange calls = %d, want 1", op.TokenCalls(testop.GrantTokenExchange))
	}

	tests := []struct {
		name, token, scope, wantErr string
	}{
		{"scope beyond the subject token", res.token.AccessToken, testop.ScopeAdmin, "invalid_scope"},
		{"garbage subject token", "not-a-token", "", "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := r.exchange(tt.token, "demo-api", tt.scope)
			if code == http.StatusOK || body["error"] != tt.wantErr {
				t.Errorf("exchange: %d %v, want error %s", code, body, tt.wantErr)
			}
		})
	}

	t.Run("revoked subject token", func(t *testing.T) {
		op.RevokeRefreshTokens(testop.ReaderUsername)
		code, body := r.exchange(res.token.AccessToken, "demo-api", "")
		if code == http.StatusOK {
			t.Errorf("exchange of a revoked access token succeeded: %v", body)
		}
	})
}

func TestOPEndSession(t *testing.T) {
	op := startOP(t, testop.Config{})
	r := newRP(t, op)
	res := r.login(testop.ReaderUsername, testop.ReaderPassword)
	endURL := r.discovery()["end_session_endpoint"].(string)
	rawID, _ := res.token.Extra("id_token").(string)
	back := fmt.Sprintf("http://127.0.0.1:%d/", harness.FreePort(t))

	get := func(q url.Values) *http.Response {
		resp, err := harness.NewClient(t).Get(endURL + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	for _, bad := range []string{"http://evil.example/", "http://127.0.0.1:1@evil.example/", "http://localhost:8080/"} {
		resp := get(url.Values{"id_token_hint": {rawID}, "post_logout_redirect_uri": {bad}})
		if loc, _ := resp.Location(); resp.StatusCode < 400 || loc != nil {
			t.Errorf("unregistered post_logout_redirect_uri %s: %d %v, want an error", bad, resp.StatusCode, loc)
		}
	}

	resp := get(url.Values{"id_token_hint": {rawID}, "post_logout_redirect_uri": {back}, "state": {"xyz"}})
	loc, _ := resp.Location()
	if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), back) || loc.Query().Get("state") != "xyz" {
		t.Fatalf("end_session: %d %v, want 302 to %s with state", resp.StatusCode, loc, back)
	}
	if got := op.Stats().EndSessions; got != 4 {
		t.Errorf("EndSessions = %d, want 4", got)
	}
	if _, err := r.refresh(res.token); !invalidGrant(err) {
		t.Errorf("refresh after end_session: err = %v, want invalid_grant", err)
	}
}

func TestOPStopRestartAndFailures(t *testing.T) {
	op := startOP(t, testop.Config{})
	r := newRP(t, op)
	res := r.login(testop.ReaderUsername, testop.ReaderPassword)

	if err := op.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.refresh(res.token); err == nil {
		t.Fatal("refresh succeeded while the provider was stopped")
	} else if invalidGrant(err) {
		t.Fatalf("stopped provider gave invalid_grant: %v", err)
	}
	if err := op.Restart(); err != nil {
		t.Fatal(err)
	}
	// State survives a restart: the refresh token still works.
	tok, err := r.refresh(res.token)
	if err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}

	op.FailTokenEndpoint(http.StatusServiceUnavailable)
	_, err = r.refresh(tok)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("refresh with the token endpoint failing: %v, want a 503", err)
	}
	op.FailTokenEndpoint(0)
	if _, err := r.refresh(tok); err != nil {
		t.Fatalf("refresh after the failure cleared: %v", err)
	}

	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	if err := op.Restart(); err == nil {
		t.Error("Restart after Close succeeded")
	}
}

// Rotating refresh tokens raced by several clients: exactly one wins, the
// rest get invalid_grant (never a server error), and the winner's token works.
func TestOPConcurrentRefresh(t *testing.T) {
	op := startOP(t, testop.Config{})
	r := newRP(t, op)
	res := r.login(testop.ReaderUsername, testop.ReaderPassword)

	const n = 8
	type result struct {
		tok *oauth2.Token
		err error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			tok, err := r.refresh(res.token)
			results <- result{tok, err}
		}()
	}
	close(start)
	var winners []*oauth2.Token
	for range n {
		res := <-results
		switch {
		case res.err == nil:
			winners = append(winners, res.tok)
		case !invalidGrant(res.err):
			t.Errorf("losing refresh: %v, want invalid_grant", res.err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d refreshes succeeded, want exactly 1", len(winners))
	}
	if _, err := r.refresh(winners[0]); err != nil {
		t.Errorf("the winner's refresh token: %v", err)
	}
	if got := op.TokenCalls(testop.GrantRefreshToken); got != n+1 {
		t.Errorf("refresh_token calls = %d, want %d", got, n+1)
	}
}

func TestOPOpaqueAccessTokensAndIDTokenClaims(t *testing.T) {
	op := startOP(t, testop.Config{OpaqueAccessTokens: true, IDTokenUserinfoClaims: true})
	r := newRP(t, op)
	res := r.login(testop.AdminUsername, testop.AdminPassword)
	if strings.Count(res.token.AccessToken, ".") == 2 {
		t.Errorf("access token looks like a JWT with OpaqueAccessTokens")
	}
	var idc struct {
		Email  string
		Name   string
		Groups []string
	}
	_ = res.idToken.Claims(&idc)
	if idc.Email != testop.AdminEmail || idc.Name != testop.AdminName || !slices.Equal(idc.Groups, testop.Admin().Groups) {
		t.Errorf("ID token claims %+v, want the admin's profile and email with IDTokenUserinfoClaims", idc)
	}
	ui, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(res.token))
	if err != nil || ui.Subject != testop.AdminSubject {
		t.Fatalf("userinfo with an opaque token: %v %+v", err, ui)
	}
	code, body := r.exchange(res.token.AccessToken, "demo-api", testop.ScopeAdmin)
	if code != http.StatusOK || body["scope"] != testop.ScopeAdmin {
		t.Errorf("exchange of an opaque token: %d %v", code, body)
	}
}

// Introspection (RFC 7662) answers for live access tokens only: a user
// revoked at the provider gets active:false, as at a real provider, JWT
// access tokens issued without a refresh token included.
func TestOPIntrospection(t *testing.T) {
	op := startOP(t, testop.Config{})
	r := newRP(t, op, oidc.ScopeOpenID, "profile")
	res := r.login(testop.ReaderUsername, testop.ReaderPassword)
	endpoint, _ := r.discovery()["introspection_endpoint"].(string)
	if endpoint == "" {
		t.Fatal("discovery has no introspection_endpoint")
	}
	introspect := func() map[string]any {
		t.Helper()
		code, body := r.postForm(endpoint, url.Values{"token": {res.token.AccessToken}, "token_type_hint": {"access_token"}})
		if code != http.StatusOK {
			t.Fatalf("introspection: %d %v", code, body)
		}
		return body
	}
	if got := introspect(); got["active"] != true || got["sub"] != testop.ReaderSubject {
		t.Fatalf("live token: %v, want active for %s", got, testop.ReaderSubject)
	}
	op.RevokeRefreshTokens(testop.ReaderUsername)
	if got := introspect(); got["active"] != false {
		t.Fatalf("revoked user's token: %v, want active false", got)
	}
	if n := op.Stats().Introspect; n != 2 {
		t.Fatalf("Introspect = %d, want 2", n)
	}
}
