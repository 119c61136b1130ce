package caddybff

import (
	"crypto/rsa"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/internal/adapttest"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// keyFiles writes test keys to files and returns a replacer for the
// KEY_* names used in Caddyfile snippets.
func keyFiles(t *testing.T) *strings.Replacer {
	t.Helper()
	k := keysOnce()
	dir := t.TempDir()
	files := map[string]string{
		"KEY_EC":      pkcs8PEM(t, k.ec),
		"KEY_RSA":     pkcs1PEM(k.rsa.(*rsa.PrivateKey)),
		"KEY_ED":      pkcs8PEM(t, k.ed),
		"KEY_PUBLIC":  publicPEM(t, k.ec),
		"KEY_P384":    pkcs8PEM(t, k.p384),
		"KEY_RSA1024": pkcs1PEM(k.rsa1024.(*rsa.PrivateKey)),
	}
	// Longer names first: NewReplacer tries its pairs in order, and
	// KEY_RSA must not match the start of KEY_RSA1024.
	names := slices.SortedFunc(maps.Keys(files), func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, name := range names {
		pem := files[name]
		path := filepath.Join(dir, strings.ToLower(name)+".pem")
		if err := os.WriteFile(path, []byte(pem), 0o600); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, name, path)
	}
	pairs = append(pairs, "KEY_MISSING", filepath.Join(dir, "missing.pem"))
	return strings.NewReplacer(pairs...)
}

// caddyfileCases are Caddyfile snippets and the error each must give, from
// parsing or from loading (Provision, Validate); "" means valid.
var caddyfileCases = []struct {
	name, input, wantErr string
}{
	{"token: bare", `bff_token`, ""},
	{"token: empty block", "bff_token {\n}", ""},
	{"token: access_token", "bff_token {\n mode access_token\n}", ""},
	{"token: mint, all options", "bff_token {\n mode mint\n audience orders-api\n scopes orders:read orders:write\n scopes profile\n ttl 90s\n issuer https://bff.example\n claims email name\n claims groups\n signing_key KEY_EC\n}", ""},
	{"token: mint rsa file placeholder", "bff_token {\n mode mint\n audience a\n signing_key {file.KEY_RSA}\n}", ""},
	{"token: mint ed25519", "bff_token {\n mode mint\n audience a\n signing_key KEY_ED\n}", ""},
	{"token: ttl bounds", "bff_token {\n mode mint\n audience a\n ttl 1h\n signing_key KEY_EC\n}", ""},

	{"token: argument on directive", `bff_token mint`, "wrong argument count"},
	{"token: unknown subdirective", "bff_token {\n audiences a\n}", `unrecognized subdirective "audiences"`},
	{"token: mode without value", "bff_token {\n mode\n}", "wrong argument count"},
	{"token: mode with two values", "bff_token {\n mode mint exchange\n}", "wrong argument count"},
	{"token: unknown mode", "bff_token {\n mode jwt\n}", `unknown mode "jwt"`},
	{"token: mode twice", "bff_token {\n mode mint\n mode mint\n}", `"mode" given more than once`},
	{"token: audience twice", "bff_token {\n audience a\n audience b\n}", `"audience" given more than once`},
	{"token: signing_key twice", "bff_token {\n signing_key KEY_EC\n signing_key KEY_RSA\n}", `"signing_key" given more than once`},
	{"token: audience with two values", "bff_token {\n audience a b\n}", "wrong argument count"},
	{"token: scopes without values", "bff_token {\n scopes\n}", "wrong argument count"},
	{"token: claims without values", "bff_token {\n claims\n}", "wrong argument count"},
	{"token: bad ttl", "bff_token {\n ttl soon\n}", `parsing ttl "soon"`},
	{"token: nested block", "bff_token {\n ttl 5m {\n x\n }\n}", "subdirectives take no block"},
	{"jwks: nested block", "bff_jwks {\n signing_key KEY_EC {\n }\n}", "subdirectives take no block"},

	{"token: exchange without audience", "bff_token {\n mode exchange\n}", "bff_token: mode exchange needs audience"},
	{"token: exchange", "bff_token {\n mode exchange\n audience a\n scopes x y\n}", ""},
	{"token: exchange with ttl", "bff_token {\n mode exchange\n audience a\n ttl 1m\n}", "ttl does not apply to mode exchange"},
	{"token: mint without audience", "bff_token {\n mode mint\n signing_key KEY_EC\n}", "bff_token: mode mint needs audience"},
	{"token: mint without key", "bff_token {\n mode mint\n audience a\n}", "bff_token: mode mint needs signing_key"},
	{"token: ttl too short", "bff_token {\n mode mint\n audience a\n ttl 5s\n signing_key KEY_EC\n}", "bff_token: ttl 5s is out of range"},
	{"token: ttl too long", "bff_token {\n mode mint\n audience a\n ttl 2h\n signing_key KEY_EC\n}", "bff_token: ttl 2h0m0s is out of range"},
	{"token: negative ttl", "bff_token {\n mode mint\n audience a\n ttl -1m\n signing_key KEY_EC\n}", "out of range"},
	{"token: scopes without mint", "bff_token {\n scopes admin\n}", "bff_token: scopes does not apply to mode access_token"},
	{"token: audience without mint", "bff_token {\n mode access_token\n audience a\n}", "bff_token: audience does not apply to mode access_token"},
	{"token: key without mint", "bff_token {\n signing_key KEY_EC\n}", "bff_token: signing_key does not apply"},
	{"token: reserved claim", "bff_token {\n mode mint\n audience a\n claims email sub\n signing_key KEY_EC\n}", `bff_token: claims: "sub" is set by bff_token itself`},
	{"token: scope claim", "bff_token {\n mode mint\n audience a\n claims scope\n signing_key KEY_EC\n}", `"scope" is set by bff_token itself`},
	{"token: issuer with space", "bff_token {\n mode mint\n audience a\n issuer \"https://a b\"\n signing_key KEY_EC\n}", "issuer"},
	{"token: missing key file", "bff_token {\n mode mint\n audience a\n signing_key KEY_MISSING\n}", "bff_token: signing_key: not PEM text, and reading /"},
	{"token: unset env key", "bff_token {\n mode mint\n audience a\n signing_key {env.BFF_TEST_UNSET_KEY}\n}", "bff_token: signing_key: resolving placeholders"},
	{"token: public key", "bff_token {\n mode mint\n audience a\n signing_key KEY_PUBLIC\n}", "need a private key"},
	{"token: p-384 key", "bff_token {\n mode mint\n audience a\n signing_key KEY_P384\n}", "need P-256"},
	{"token: rsa 1024 key", "bff_token {\n mode mint\n audience a\n signing_key KEY_RSA1024\n}", "RSA key is 1024 bits"},

	{"jwks: rotation", "bff_jwks {\n signing_key KEY_EC\n previous_key KEY_RSA\n previous_key KEY_ED\n max_age 1h\n}", ""},
	{"jwks: public key", "bff_jwks {\n signing_key KEY_PUBLIC\n}", ""},
	{"jwks: argument on directive", "bff_jwks KEY_EC", "wrong argument count"},
	{"jwks: unknown subdirective", "bff_jwks {\n key KEY_EC\n}", `unrecognized subdirective "key"`},
	{"jwks: signing_key twice", "bff_jwks {\n signing_key KEY_EC\n signing_key KEY_RSA\n}", `"signing_key" given more than once`},
	{"jwks: max_age twice", "bff_jwks {\n max_age 1m\n max_age 2m\n}", `"max_age" given more than once`},
	{"jwks: previous_key without value", "bff_jwks {\n signing_key KEY_EC\n previous_key\n}", "previous_key takes exactly one value"},
	{"jwks: previous_key with two values", "bff_jwks {\n signing_key KEY_EC\n previous_key KEY_RSA KEY_ED\n}", "previous_key takes exactly one value"},
	{"jwks: bad max_age", "bff_jwks {\n max_age forever\n}", `parsing max_age "forever"`},
	{"jwks: no signing_key", "bff_jwks {\n previous_key KEY_EC\n}", "bff_jwks: signing_key is required"},
	{"jwks: max_age too long", "bff_jwks {\n signing_key KEY_EC\n max_age 48h\n}", "bff_jwks: max_age 48h0m0s is out of range"},
	{"jwks: same key twice", "bff_jwks {\n signing_key KEY_EC\n previous_key KEY_PUBLIC\n}", "bff_jwks: previous_key 1 is a key listed before"},
	{"jwks: p-384 key", "bff_jwks {\n signing_key KEY_EC\n previous_key KEY_P384\n}", "bff_jwks: previous_key 1: EC key on curve P-384"},
	{"jwks: missing key file", "bff_jwks {\n signing_key KEY_MISSING\n}", "bff_jwks: signing_key: not PEM text, and reading /"},
}

// TestCaddyfile parses each snippet as the Caddyfile adapter does, then
// loads the JSON it becomes as Caddy does.
func TestCaddyfile(t *testing.T) {
	files := keyFiles(t)
	for _, tt := range caddyfileCases {
		t.Run(tt.name, func(t *testing.T) {
			input := files.Replace(tt.input)
			tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
			if err != nil {
				t.Fatal(err)
			}
			d := caddyfile.NewDispenser(tokens)
			var (
				h  caddyfile.Unmarshaler
				id string
			)
			if strings.HasPrefix(input, "bff_token") {
				h, id = new(Token), "http.handlers.bff_token"
			} else {
				h, id = new(JWKS), "http.handlers.bff_jwks"
			}
			err = h.UnmarshalCaddyfile(d)
			if err == nil {
				var raw []byte
				raw, err = json.Marshal(h)
				if err != nil {
					t.Fatal(err)
				}
				_, err = loadModule(t, id, json.RawMessage(raw))
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "BEGIN") {
				t.Fatalf("error echoes key material: %v", err)
			}
		})
	}
}

// FuzzCaddyfile feeds arbitrary tokens to both parsers: they must return
// an error or a config that survives a JSON round trip, never panic.
func FuzzCaddyfile(f *testing.F) {
	for _, tt := range caddyfileCases {
		f.Add(tt.input)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		for _, h := range []caddyfile.Unmarshaler{new(Token), new(JWKS)} {
			if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
				continue
			}
			raw, err := json.Marshal(h)
			if err != nil {
				t.Fatalf("marshalling parsed config: %v", err)
			}
			if err := json.Unmarshal(raw, h); err != nil {
				t.Fatalf("config does not round-trip: %v", err)
			}
			switch h := h.(type) {
			case *Token:
				_ = h.Validate()
			case *JWKS:
				_ = h.Validate()
			}
		}
	})
}

// TestCaddyfileAdapt compares whole Caddyfiles with the JSON they adapt to
// (or the error they give), as Caddy's own adapt tests do.
func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t, "testdata/caddyfile_adapt") }
