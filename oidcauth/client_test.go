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
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/internal/signkey"
)

func TestChooseAuth(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, err := signkey.New(ec)
	if err != nil {
		t.Fatal(err)
	}
	secret := &providerClient{secret: "s"}
	withKey := &providerClient{key: key}
	public := &providerClient{}
	zitadel := []string{authNone, authBasic, authPost, authPrivateKeyJWT}
	for _, tc := range []struct {
		name       string
		c          *providerClient
		configured string
		advertised []string
		want, err  string
	}{
		{"no list means basic", secret, "", nil, authBasic, ""},
		{"secret skips none", secret, "", zitadel, authBasic, ""},
		{"post only", secret, "", []string{authPost}, authPost, ""},
		{"key", withKey, "", zitadel, authPrivateKeyJWT, ""},
		{"public client", public, "", zitadel, authNone, ""},
		{"configured post", secret, authPost, zitadel, authPost, ""},
		{"configured but not offered", secret, authPost, []string{authBasic}, "", "accepts only client_secret_basic"},
		{"nothing the config can do", public, "", []string{authBasic, authPost}, "", "can do none of them"},
		{"a secret never falls back to none", secret, "", []string{authNone, authPrivateKeyJWT}, "", "can do none"},
	} {
		got, err := tc.c.chooseAuth(tc.configured, tc.advertised)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q %v; want %q %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// What each method puts on the wire, and the assertion's claims.
func TestAuthenticate(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := signkey.New(ec)
	var got *http.Request
	var form url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got, form = r, r.PostForm
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":"60","id_token":"x.y.z","scope":"openid"}`))
	}))
	defer srv.Close()
	c := &providerClient{http: srv.Client(), issuer: "https://id.example", clientID: "bff client", secret: "p@ss word", key: key}
	ctx := context.Background()

	tok, err := c.token(ctx, "refresh", srv.URL+"/token", authBasic, url.Values{"grant_type": {"refresh_token"}})
	if err != nil || tok.AccessToken != "at" || tok.Extra("id_token") != "x.y.z" || tok.ExpiresIn != 60 {
		t.Fatalf("token: %+v %v", tok, err)
	}
	if id, pw, ok := got.BasicAuth(); !ok || id != url.QueryEscape("bff client") || pw != url.QueryEscape("p@ss word") || form.Has("client_secret") {
		t.Fatalf("basic: %q %q %v %v", id, pw, ok, form)
	}

	_, _ = c.token(ctx, "refresh", srv.URL+"/token", authPost, url.Values{})
	if _, _, ok := got.BasicAuth(); ok || form.Get("client_id") != "bff client" || form.Get("client_secret") != "p@ss word" {
		t.Fatalf("post: %v", form)
	}

	_, _ = c.token(ctx, "refresh", srv.URL+"/token", authNone, url.Values{})
	if _, _, ok := got.BasicAuth(); ok || form.Get("client_id") != "bff client" || form.Has("client_secret") {
		t.Fatalf("none: %v", form)
	}

	_, _ = c.token(ctx, "refresh", srv.URL+"/token", authPrivateKeyJWT, url.Values{})
	if _, _, ok := got.BasicAuth(); ok || form.Has("client_secret") || form.Get("client_assertion_type") != clientAssertionType {
		t.Fatalf("private_key_jwt: %v", form)
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(form.Get("client_assertion"), claims, func(*jwt.Token) (any, error) { return key.Public, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("bff client"), jwt.WithSubject("bff client"), jwt.WithAudience("https://id.example"), jwt.WithExpirationRequired())
	if err != nil || parsed.Header["kid"] != key.KID {
		t.Fatalf("assertion: %v, kid %v", err, parsed.Header["kid"])
	}
	if aud, _ := claims.GetAudience(); !slices.Equal(aud, []string{"https://id.example"}) {
		t.Fatalf("assertion aud %v, want the issuer alone", aud)
	}
	if exp, _ := claims.GetExpirationTime(); exp.After(time.Now().Add(2 * time.Minute)) {
		t.Fatalf("assertion lives until %v", exp)
	}
	first := claims["jti"]
	_, _ = c.token(ctx, "refresh", srv.URL+"/token", authPrivateKeyJWT, url.Values{})
	again := jwt.MapClaims{}
	_, _ = jwt.ParseWithClaims(form.Get("client_assertion"), again, func(*jwt.Token) (any, error) { return key.Public, nil })
	if again["jti"] == first {
		t.Fatal("two assertions share a jti")
	}
}

// Refusals carry the status and error code, never the body; outages and
// non-token answers are errProviderDown.
func TestSeconds(t *testing.T) {
	for in, want := range map[string]float64{`60`: 60, `"60"`: 60, `1e12`: maxExpiresIn, `"1e300"`: maxExpiresIn,
		`"Inf"`: 0, `"NaN"`: 0, `-5`: 0, `null`: 0, `"soon"`: 0, ``: 0, `{}`: 0} {
		if got := seconds(json.RawMessage(in)); got != want {
			t.Errorf("seconds(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestTokenErrors(t *testing.T) {
	answer := ""
	status := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(answer))
	}))
	defer srv.Close()
	c := &providerClient{http: srv.Client(), clientID: "bff", secret: "s"}
	status, answer = 400, `{"error":"invalid_grant","error_description":"token rt-SECRET-123 is revoked"}`
	_, err := c.token(context.Background(), "refresh", srv.URL, authBasic, url.Values{})
	re, ok := errors.AsType[*oauth2.RetrieveError](err)
	if !ok || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 400 || strings.Contains(err.Error(), "rt-SECRET") {
		t.Fatalf("refusal: %v", err)
	}
	status, answer = 200, `<html>`
	if _, err := c.token(context.Background(), "refresh", srv.URL, authBasic, url.Values{}); !errors.Is(err, errProviderDown) {
		t.Fatalf("not a token: %v", err)
	}
	srv.Close()
	if _, err := c.token(context.Background(), "refresh", srv.URL, authBasic, url.Values{}); !errors.Is(err, errProviderDown) {
		t.Fatalf("down: %v", err)
	}
}

// resource (RFC 8707) goes on the refresh request, every value.
func TestResourceOnRefresh(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	op := newFakeOP(t)
	var got url.Values
	op.answer = func(w http.ResponseWriter, r *http.Request, n int) {
		got = r.PostForm
		tokenReply("at-2", "rt-2", 300)(w, r, n)
	}
	h, s := refreshHandler(t, op, &now)
	h.Resource = []string{"https://api.example/", "urn:example:reports"}
	if _, _, err := h.refresh(httptest.NewRequest("GET", "/api/x", nil), s); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["resource"], h.Resource) {
		t.Fatalf("resource sent %q, want %q", got["resource"], h.Resource)
	}
}

// userinfo auto stops calling an endpoint that refused the token (once,
// logged once); on keeps calling; off never calls; an outage is no refusal.
func TestUserInfoModes(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		status int
		calls  int
	}{
		{"auto", http.StatusUnauthorized, 1},
		{"", http.StatusForbidden, 1},
		{"auto", http.StatusServiceUnavailable, 3},
		{"on", http.StatusUnauthorized, 3},
		{"off", http.StatusUnauthorized, 0},
	} {
		calls := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls++
			w.WriteHeader(tc.status)
		}))
		ctx := context.Background()
		p := (&oidc.ProviderConfig{IssuerURL: "https://id.example", UserInfoURL: srv.URL}).NewProvider(ctx)
		core, logs := observer.New(zap.DebugLevel)
		h := &Handler{logger: zap.New(core), Scopes: []string{"openid"}, disc: &discovery{}, UserInfo: tc.mode}
		for range 3 {
			h.userClaims(ctx, httptest.NewRequest("GET", "/", nil), &providerInfo{oidc: p, userinfo: srv.URL},
				map[string]any{"sub": "alice"}, &oauth2.Token{AccessToken: "at", TokenType: "Bearer"})
		}
		srv.Close()
		if calls != tc.calls {
			t.Errorf("userinfo %q, status %d: %d calls, want %d", tc.mode, tc.status, calls, tc.calls)
		}
		if tc.mode != "off" && tc.calls == 1 && logs.Len() != 1 {
			t.Errorf("userinfo %q: %d log entries, want 1", tc.mode, logs.Len())
		}
	}
}
