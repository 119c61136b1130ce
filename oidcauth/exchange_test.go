package oidcauth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseExchange(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := &Handler{now: func() time.Time { return now }}
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error // nil: success
		life   time.Duration
	}{
		{"ok", 200, `{"access_token":"tok","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}`, nil, 300 * time.Second},
		{"ok string expiry", 200, `{"access_token":"tok","token_type":"bearer","expires_in":"60"}`, nil, time.Minute},
		{"ok N_A token type", 200, `{"access_token":"tok","token_type":"N_A","expires_in":60}`, nil, time.Minute},
		{"no expiry", 200, `{"access_token":"tok","token_type":"Bearer"}`, ErrProviderUnavailable, 0},
		{"zero expiry", 200, `{"access_token":"tok","expires_in":0}`, ErrProviderUnavailable, 0},
		{"negative expiry", 200, `{"access_token":"tok","expires_in":-5}`, ErrProviderUnavailable, 0},
		{"not json", 200, `<html>hello</html>`, ErrProviderUnavailable, 0},
		{"no token", 200, `{"token_type":"Bearer","expires_in":60}`, ErrProviderUnavailable, 0},
		{"wrong type", 200, `{"access_token":"tok","token_type":"DPoP","expires_in":60}`, ErrProviderUnavailable, 0},
		{"array", 200, `[1,2]`, ErrProviderUnavailable, 0},
		{"refused target", 400, `{"error":"invalid_target"}`, ErrExchangeRefused, 0},
		{"refused scope", 400, `{"error":"invalid_scope","error_description":"tok-secret"}`, ErrExchangeRefused, 0},
		{"unauthorized client", 401, `{"error":"invalid_client"}`, ErrExchangeRefused, 0},
		{"refused no body", 403, ``, ErrExchangeRefused, 0},
		{"server error", 500, `{"error":"server_error"}`, ErrProviderUnavailable, 0},
		{"bad gateway", 502, `oops`, ErrProviderUnavailable, 0},
		{"redirect", 302, ``, ErrProviderUnavailable, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, exp, err := h.parseExchange(tc.status, []byte(tc.body))
			if tc.want == nil {
				if err != nil || tok != "tok" || exp.Sub(now) != tc.life {
					t.Fatalf("got %q %v %v", tok, exp.Sub(now), err)
				}
				return
			}
			if !errors.Is(err, tc.want) || tok != "" {
				t.Fatalf("got %q, %v; want %v", tok, err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "tok-secret") || strings.Contains(err.Error(), "<html>")) {
				t.Fatalf("error echoes the provider's body: %v", err)
			}
		})
	}
}
