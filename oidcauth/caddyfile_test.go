package oidcauth

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/internal/adapttest"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const goodKey = "k1-0123456789abcdef0123456789abcdef"

// provisionFromCaddyfile parses a block, round-trips it through JSON (as
// Caddy does) and provisions it.
func provisionFromCaddyfile(t *testing.T, block string) (*Handler, error) {
	t.Helper()
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	mod, err := ctx.LoadModuleByID("http.handlers.oidc_auth", raw)
	if err != nil {
		return nil, err
	}
	return mod.(*Handler), nil
}

// caddyfileCases are oidc_auth blocks and the error each must give ("" =
// valid); TestCaddyfileConfig checks them and FuzzCaddyfile starts from them.
var caddyfileCases = []struct {
	name  string
	block string
	err   string
}{
	{"minimal", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session {
				keys {env.BFF_TEST_KEY}
			}
		}`, ""},
	{"full", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_secret s3cret
			scopes openid profile offline_access
			public /assets/* /favicon.ico
			public /healthz
			login_path /login
			session_events_path /auth/events
			trusted_origins https://admin.example.com
			refresh_skew 1m
			revalidate 5m
			auth_params audience api
			auth_params acr_values mfa
			session {
				store memory
				keys {env.BFF_TEST_KEY} ` + goodKey + `x
				idle_timeout 10m
				lifetime 8h
			}
		}`, ""},
	{"acr levels", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			acr_levels phr > mfa > pwd
			session {
				keys ` + goodKey + `
			}
		}`, ""},
	{"acr levels without >", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			acr_levels mfa pwd
			session {
				keys ` + goodKey + `
			}
		}`, "separated by >"},
	{"acr levels trailing >", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			acr_levels mfa >
			session {
				keys ` + goodKey + `
			}
		}`, "must follow the last >"},
	{"acr level twice", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			acr_levels mfa > pwd > mfa
			session {
				keys ` + goodKey + `
			}
		}`, "ranked twice"},
	{"acr level with a quote", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			acr_levels "a\"b" > pwd
			session {
				keys ` + goodKey + `
			}
		}`, "printable ASCII"},
	{"session_events_path not a path", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session_events_path auth/session
			session {
				keys ` + goodKey + `
			}
		}`, "session_events_path"},
	{"session_events_path without a value", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session_events_path
			session {
				keys ` + goodKey + `
			}
		}`, "wrong argument count"},
	{"missing issuer", `oidc_auth {
			client_id portal
			session {
				keys ` + goodKey + `
			}
		}`, "issuer is required"},
	{"issuer not a url", `oidc_auth {
			issuer id.example.com
			client_id portal
			session {
				keys ` + goodKey + `
			}
		}`, "not an http(s) URL"},
	{"missing client", `oidc_auth {
			issuer https://id.example.com
			session {
				keys ` + goodKey + `
			}
		}`, "client_id is required"},
	{"missing keys", `oidc_auth {
			issuer https://id.example.com
			client_id portal
		}`, "session keys are required"},
	{"short key", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session {
				keys short
			}
		}`, "key 1 is 5 bytes, need at least 32"},
	{"unset env key", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session {
				keys {env.BFF_TEST_UNSET_KEY_XYZ}
			}
		}`, "BFF_TEST_UNSET_KEY_XYZ} is empty"},
	{"unknown subdirective", `oidc_auth {
			issuer https://id.example.com
			frobnicate yes
		}`, `unrecognized subdirective "frobnicate"`},
	{"unknown session subdirective", `oidc_auth {
			session {
				cookies yes
			}
		}`, `session: unrecognized subdirective "cookies"`},
	{"bad duration", `oidc_auth {
			refresh_skew soon
		}`, `refresh_skew: bad duration "soon"`},
	{"bad revalidate", `oidc_auth {
			revalidate 0
		}`, `revalidate: duration "0" must be positive`},
	{"revalidate twice", `oidc_auth {
			revalidate 5m
			revalidate 1m
		}`, `subdirective "revalidate" given more than once`},
	{"bad idle", `oidc_auth {
			session {
				idle_timeout -5m
			}
		}`, `idle_timeout: duration "-5m" must be positive`},
	{"twice", `oidc_auth {
			issuer https://a.example
			issuer https://b.example
		}`, `"issuer" given more than once`},
	{"arity", `oidc_auth {
			client_id a b
		}`, "wrong argument count"},
	{"directive args", `oidc_auth https://id.example.com`, "wrong argument count"},
	{"no openid", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			scopes profile
			session {
				keys ` + goodKey + `
			}
		}`, "scopes must include openid"},
	{"bad store", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session {
				store disk
				keys ` + goodKey + `
			}
		}`, `session store "disk"`},
	{"idle over lifetime", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			session {
				keys ` + goodKey + `
				idle_timeout 2h
				lifetime 1h
			}
		}`, "exceeds lifetime"},
	{"bad post logout", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			post_logout_redirect https://evil.example
			session {
				keys ` + goodKey + `
			}
		}`, "post_logout_redirect"},
	{"frontchannel logout path", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			frontchannel_logout_path /fcl
			session {
				keys ` + goodKey + `
			}
		}`, ""},
	{"relative frontchannel logout path", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			frontchannel_logout_path fcl
			session {
				keys ` + goodKey + `
			}
		}`, `frontchannel_logout_path "fcl" must start with /`},
	{"frontchannel logout path twice", `oidc_auth {
			frontchannel_logout_path /a
			frontchannel_logout_path /b
		}`, `"frontchannel_logout_path" given more than once`},
	{"frontchannel logout path arity", `oidc_auth {
			frontchannel_logout_path
		}`, "wrong argument count"},
	{"client auth, resource, userinfo", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_secret s3cret
			client_auth post
			resource https://api.example.com/ urn:example:reports
			resource https://other.example.com/
			userinfo off
			session {
				keys ` + goodKey + `
			}
		}`, ""},
	{"client_auth post without a secret", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_auth post
			session {
				keys ` + goodKey + `
			}
		}`, `client_auth post needs client_secret`},
	{"client_auth private_key_jwt without a key", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_auth private_key_jwt
			session {
				keys ` + goodKey + `
			}
		}`, `needs client_key`},
	{"client_auth none with a secret", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_secret s3cret
			client_auth none
			session {
				keys ` + goodKey + `
			}
		}`, `public client`},
	{"unknown client_auth", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_auth mtls
			session {
				keys ` + goodKey + `
			}
		}`, `client_auth "mtls"`},
	{"resource with a fragment", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			resource https://api.example.com/#x
			session {
				keys ` + goodKey + `
			}
		}`, `RFC 8707`},
	{"relative resource", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			resource /api
			session {
				keys ` + goodKey + `
			}
		}`, `not an absolute URI`},
	{"bad userinfo", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			userinfo sometimes
			session {
				keys ` + goodKey + `
			}
		}`, `userinfo "sometimes"`},
	{"bad client_key", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			client_auth private_key_jwt
			client_key MIGHAgEAMBMGByqGSM49AgEGCCqGSM49
			session {
				keys ` + goodKey + `
			}
		}`, `client_key`},
	{"bad trusted origin", `oidc_auth {
			issuer https://id.example.com
			client_id portal
			trusted_origins not-an-origin
			session {
				keys ` + goodKey + `
			}
		}`, "trusted_origins"},
}

func TestCaddyfileConfig(t *testing.T) {
	t.Setenv("BFF_TEST_KEY", goodKey)
	for _, tc := range caddyfileCases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := provisionFromCaddyfile(t, tc.block)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				raw, _ := json.Marshal(h)
				if strings.Contains(string(raw), goodKey) && !strings.Contains(tc.block, goodKey) {
					t.Fatal("a secret from the environment was written into the JSON config")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to contain %q", err, tc.err)
			}
		})
	}
}

func TestFrontchannelLogoutPath(t *testing.T) {
	for block, want := range map[string]string{
		"":                                DefaultFrontchannelLogoutPath,
		"frontchannel_logout_path /fcl/x": "/fcl/x",
	} {
		h, err := provisionFromCaddyfile(t, `oidc_auth {
			issuer https://id.example.com
			client_id portal
			`+block+`
			session {
				keys `+goodKey+`
			}
		}`)
		if err != nil {
			t.Fatal(err)
		}
		if h.FrontchannelLogoutPath != want {
			t.Errorf("%q: frontchannel_logout_path %q, want %q", block, h.FrontchannelLogoutPath, want)
		}
	}
}

// FuzzCaddyfile feeds arbitrary tokens to the oidc_auth parser: it must
// return an error or a config whose JSON is stable across a round trip
// (what Caddy stores is what it loads), never panic.
func FuzzCaddyfile(f *testing.F) {
	for _, tc := range caddyfileCases {
		f.Add(tc.block)
	}
	f.Add("oidc_auth {\n\tsession {\n\t\tredis {\n\t\t\taddress 127.0.0.1:6379\n\t\t}\n\t}\n}")
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		first, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("marshalling parsed config: %v", err)
		}
		again := new(Handler)
		if err := json.Unmarshal(first, again); err != nil {
			t.Fatalf("config does not round-trip: %v\n%s", err, first)
		}
		second, err := json.Marshal(again)
		if err != nil {
			t.Fatalf("marshalling reloaded config: %v", err)
		}
		if string(first) != string(second) {
			t.Fatalf("JSON changed across a round trip:\n%s\n%s", first, second)
		}
	})
}

// TestCaddyfileAdapt compares whole Caddyfiles with the JSON they adapt to
// (or the error they give), as Caddy's own adapt tests do.
func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t, "testdata/caddyfile_adapt") }

func TestParseExternalURL(t *testing.T) {
	for v, want := range map[string]bool{
		"https://portal.example.com":      true,
		"https://portal.example.com/":     true,
		"http://127.0.0.1:8080":           true,
		"https://portal.example.com/app":  false,
		"https://portal.example.com?x=1":  false,
		"https://user@portal.example.com": false,
		"ftp://portal.example.com":        false,
		"portal.example.com":              false,
		"https://":                        false,
	} {
		if _, ok := parseExternalURL(v); ok != want {
			t.Errorf("parseExternalURL(%q) = %v, want %v", v, ok, want)
		}
	}
	for h, want := range map[string]bool{"a.example": true, "a.example:8443": true, "[::1]:80": true,
		"a.example/x": false, "a@b": false, "": false, "a b": false, "a.example?x": false} {
		if validHost(h) != want {
			t.Errorf("validHost(%q) = %v, want %v", h, !want, want)
		}
	}
}
