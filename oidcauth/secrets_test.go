package oidcauth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/oauth2"
)

// Item 13 of issue 9: no config error repeats a secret, whether the
// Caddyfile parser, placeholder resolution or validation reports it.
func TestConfigErrorsNeverEchoSecrets(t *testing.T) {
	for _, tc := range []struct {
		name, block, secret string
	}{
		{"client_secret with a space", `oidc_auth {
			issuer https://id.example.com
			client_id c
			client_secret correct horse-battery-staple
			session {
				keys ` + goodKey + `
			}
		}`, "horse-battery-staple"},
		{"client_secret holding braces", `oidc_auth {
			issuer https://id.example.com
			client_id c
			client_secret "s3cr{et-part-of-the-secret}x"
			session {
				keys ` + goodKey + `
			}
		}`, "et-part-of-the-secret"},
		{"session key holding braces", `oidc_auth {
			issuer https://id.example.com
			client_id c
			session {
				keys "0123456789abcdef{0123456789abcdef-secret}"
			}
		}`, "0123456789abcdef-secret"},
		{"redis password with a space", `oidc_auth {
			issuer https://id.example.com
			client_id c
			session {
				keys ` + goodKey + `
				redis {
					password correct horse-battery-staple
				}
			}
		}`, "horse-battery-staple"},
		{"redis password holding braces", `oidc_auth {
			issuer https://id.example.com
			client_id c
			session {
				keys ` + goodKey + `
				redis {
					password "pw{the-redis-secret}"
				}
			}
		}`, "the-redis-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provisionFromCaddyfile(t, tc.block)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("the error repeats the secret: %v", err)
			}
		})
	}
}

// A UserInfo endpoint that echoes the request (a WAF's error page, a
// debug proxy) must not put the access token into our log: go-oidc copies
// the body of a non-200 answer into its error.
func TestUserInfoErrorNeverLogsTheAnswer(t *testing.T) {
	const token = "at-secret-0123456789abcdef"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "denied; you sent %s", r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	ctx := context.Background()
	p := (&oidc.ProviderConfig{IssuerURL: "https://id.example", UserInfoURL: srv.URL}).NewProvider(ctx)
	core, logs := observer.New(zap.DebugLevel)
	h := &Handler{logger: zap.New(core), Scopes: []string{"openid"}, disc: &discovery{}}
	r := httptest.NewRequest("GET", "/auth/callback", nil)
	claims := h.userClaims(ctx, r, &providerInfo{oidc: p, userinfo: srv.URL},
		map[string]any{"sub": "alice"}, &oauth2.Token{AccessToken: token, TokenType: "Bearer"})
	if claims["sub"] != "alice" {
		t.Fatalf("claims %v: want the ID token's", claims)
	}
	if logs.Len() != 1 {
		t.Fatalf("%d log entries, want the one warning", logs.Len())
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, token) || strings.Contains(line, "you sent") {
			t.Fatalf("the log repeats the provider's answer: %s", line)
		}
		if !strings.Contains(line, "answered 401") {
			t.Fatalf("the log does not say what happened: %s", line)
		}
	}
}
