package integration

import (
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// Each login starts a provider session: its sid is in the login's ID
// token and in the provider's cookie, and the provider's logout page
// frames every registered front-channel logout URI with iss and that sid
// (OpenID Connect Front-Channel Logout 1.0 §3), once.
func TestOPFrontchannelLogout(t *testing.T) {
	rpURI := "http://127.0.0.1:1/auth/frontchannel-logout"
	op := startOP(t, testop.Config{FrontchannelLogoutURIs: []string{rpURI}})
	r := newRP(t, op)
	c := harness.NewClient(t)
	verifier, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	cb := harness.LoginToCallback(t, c, r.oauth.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)),
		testop.AdminUsername, testop.AdminPassword)
	tok, err := r.oauth.Exchange(r.ctx, cb.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: op.ClientID()}).Verify(r.ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ SID string }
	_ = idt.Claims(&claims)
	sids := op.SessionIDs(testop.AdminUsername)
	if claims.SID == "" || len(sids) != 1 || sids[0] != claims.SID {
		t.Fatalf("ID token sid %q, provider sessions %v", claims.SID, sids)
	}

	page := func() string {
		t.Helper()
		res, err := c.Get(op.Issuer() + testop.FrontchannelLogoutPath)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	want := `src="` + strings.ReplaceAll(op.FrontchannelLogoutURL(rpURI, claims.SID), "&", "&amp;") + `"`
	if q, _ := url.Parse(op.FrontchannelLogoutURL(rpURI, claims.SID)); q.Query().Get("iss") != op.Issuer() || q.Query().Get("sid") != claims.SID {
		t.Fatalf("front-channel URL %s", q)
	}
	if body := page(); !strings.Contains(body, want) {
		t.Fatalf("logout page lacks %s:\n%s", want, body)
	}
	if n := len(op.SessionIDs(testop.AdminUsername)); n != 0 {
		t.Fatalf("%d provider sessions after logout", n)
	}
	if body := page(); strings.Contains(body, "<iframe") {
		t.Fatalf("a second visit frames again:\n%s", body)
	}
}
