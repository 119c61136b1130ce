package caddybff

import (
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-bff/caddy-bff/internal/problem"
)

func TestJWKSPublishesPublicKeys(t *testing.T) {
	k := keysOnce()
	j := mustLoadJWKS(t, map[string]any{
		"signing_key":   pkcs8PEM(t, k.ec),
		"previous_keys": []string{pkcs1PEM(k.rsa.(*rsa.PrivateKey)), publicPEM(t, k.ed)},
		"max_age":       "10m",
	})
	w, _ := serve(t, j, newRequest(t, http.MethodGet, "https://portal.example/.well-known/jwks.json", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	for h, want := range map[string]string{
		"Content-Type":  "application/json",
		"Cache-Control": "public, max-age=600",
	} {
		if got := w.Header().Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}

	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	wantAlgs := []string{"ES256", "RS256", "EdDSA"}
	if len(raw.Keys) != len(wantAlgs) {
		t.Fatalf("%d keys, want %d", len(raw.Keys), len(wantAlgs))
	}
	for i, key := range raw.Keys {
		if key["alg"] != wantAlgs[i] || key["use"] != "sig" || key["kid"] != j.kids[i] {
			t.Errorf("key %d = %v, want alg %s, use sig, kid %s", i, key, wantAlgs[i], j.kids[i])
		}
		// Private parts must never be published (RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2).
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := key[private]; ok {
				t.Errorf("key %d publishes private member %q", i, private)
			}
		}
	}

	// The kid in the set is the one bff_token puts in its tokens.
	tok := mustLoadToken(t, mintConfig(pkcs1PEM(k.rsa.(*rsa.PrivateKey))))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Key(tok.key.KID)) != 1 {
		t.Errorf("bff_token kid %s not in the key set", tok.key.KID)
	}
}

func TestJWKSMethods(t *testing.T) {
	j := mustLoadJWKS(t, map[string]any{"signing_key": pkcs8PEM(t, keysOnce().ed)})
	tests := []struct {
		method   string
		status   int
		wantBody bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, true},
		{http.MethodPut, http.StatusMethodNotAllowed, true},
		{http.MethodDelete, http.StatusMethodNotAllowed, true},
		{http.MethodOptions, http.StatusMethodNotAllowed, true},
		{"PROPFIND", http.StatusMethodNotAllowed, true},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			w, _ := serve(t, j, newRequest(t, tt.method, "https://portal.example/.well-known/jwks.json", nil))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			if (w.Body.Len() > 0) != tt.wantBody {
				t.Errorf("body length %d, want body %v", w.Body.Len(), tt.wantBody)
			}
			if tt.status == http.StatusMethodNotAllowed {
				if w.Header().Get("Allow") != "GET, HEAD" || w.Header().Get("Content-Type") != problem.ContentType {
					t.Errorf("headers %v", w.Header())
				}
				if strings.Contains(w.Body.String(), `"keys"`) {
					t.Error("405 carries the key set")
				}
			} else if w.Header().Get("Content-Length") != "" && w.Header().Get("Content-Length") != strconv.Itoa(len(j.body)) {
				t.Errorf("Content-Length %s, body %d", w.Header().Get("Content-Length"), len(j.body))
			}
		})
	}
}

func TestJWKSDefaultMaxAge(t *testing.T) {
	j := mustLoadJWKS(t, map[string]any{"signing_key": pkcs8PEM(t, keysOnce().ec)})
	w, _ := serve(t, j, newRequest(t, http.MethodGet, "https://portal.example/jwks", nil))
	if got := w.Header().Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control = %q", got)
	}
}
