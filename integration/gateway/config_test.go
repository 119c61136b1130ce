package gateway

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// exampleEnv is what an operator exports before running Caddyfile.example.
func exampleEnv(t *testing.T) []string {
	apps := filepath.Join(t.TempDir(), "applications.json")
	if err := os.WriteFile(apps, []byte(`{"applications": [
	{"name": "recipes", "title": "Recipes", "entry": "/mfe/recipes/remoteEntry.js", "route": "/recipes", "require": "recipes:read"},
	{"name": "admin", "title": "Administration", "entry": "/mfe/admin/remoteEntry.js", "route": "/admin", "require": ["admin"]}
]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{
		"OIDC_CLIENT_SECRET=example-secret",
		"SESSION_KEY=" + sessionKeyA,
		"SESSION_KEY_PREVIOUS=" + sessionKeyB,
		"BFF_SIGNING_KEY_FILE=" + writeSigningKey(t),
		"BFF_APPS_FILE=" + apps,
	}
}

func TestCaddyfileExampleValidates(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	src, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, err := harness.Validate(bin, string(src), exampleEnv(t)...)
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("caddy validate Caddyfile.example: %v\n%s", err, out)
	}
	// An operator copies this file: it must validate without warnings
	// (formatting, shadowed rules, risky settings).
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"level":"warn"`) {
			t.Errorf("caddy validate warns about Caddyfile.example: %s", line)
		}
	}
	// Without its secrets it must refuse to start, naming what is missing.
	out, err = harness.Validate(bin, string(src))
	if err == nil || !strings.Contains(out, "oidc_auth") {
		t.Fatalf("validate without secrets passed or said nothing useful: %v\n%s", err, out)
	}
}

func TestListModules(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, id := range []string{"http.handlers.oidc_auth", "http.handlers.bff_token", "http.handlers.bff_jwks"} {
		if !strings.Contains(string(out), id+"\n") {
			t.Errorf("caddy list-modules lacks %s", id)
		}
	}
}

func TestValidateRejectsBadConfig(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	key := writeSigningKey(t)
	oidc := func(body string) string {
		return harness.Caddyfile("http://127.0.0.1:1 {\n\toidc_auth {\n" + body + "\n\t}\n\trespond ok\n}\n")
	}
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"missing issuer", oidc("client_id x\nsession {\nkeys " + sessionKeyA + "\n}"), "oidc_auth: issuer is required"},
		{"short key", oidc("issuer https://id.example\nclient_id x\nsession {\nkeys short-key\n}"), "key 1 is 9 bytes, need at least 32"},
		{"no keys", oidc("issuer https://id.example\nclient_id x"), "session keys are required"},
		{"unknown subdirective", oidc("issuer https://id.example\nfrobnicate 1"), `unrecognized subdirective \"frobnicate`},
		{"bad duration", oidc("refresh_skew tomorrow"), `refresh_skew: bad duration \"tomorrow`},
		{"bad idle", oidc("session {\nidle_timeout 5 minutes\n}"), "wrong argument count"},
		{"unset env", oidc("issuer https://id.example\nclient_id x\nsession {\nkeys {env.BFF_UNSET_FOR_TEST}\n}"), "BFF_UNSET_FOR_TEST"},
		{"mint without audience", harness.Caddyfile("http://127.0.0.1:1 {\n\tbff_token {\n\t\tmode mint\n\t\tsigning_key " + key + "\n\t}\n}\n"), "bff_token"},
		{"bad mode", harness.Caddyfile("http://127.0.0.1:1 {\n\tbff_token {\n\t\tmode magic\n\t}\n}\n"), "bff_token"},
		{"jwks without key", harness.Caddyfile("http://127.0.0.1:1 {\n\tbff_jwks\n}\n"), "bff_jwks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := harness.Validate(bin, tc.cfg)
			if err == nil {
				t.Fatalf("caddy validate accepted it:\n%s", tc.cfg)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
}

// Item 13 of issue 9: `caddy validate` (whose output ends up in CI logs
// and terminals) never repeats a secret: a signing key given without its
// PEM armour, a client secret or Redis password holding braces or a space.
func TestValidateNeverEchoesSecrets(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	const der = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G"
	site := func(body string) string { return harness.Caddyfile("http://127.0.0.1:1 {\n" + body + "\n}\n") }
	oidc := "oidc_auth {\n\tissuer https://id.example\n\tclient_id x\n\tsession {\n\t\tkeys " + sessionKeyA + "\n\t\t%s\n\t}\n\t%s\n}"
	for _, tc := range []struct {
		name, cfg, secret string
	}{
		{"signing_key without armour", site("bff_token {\n\tmode mint\n\taudience a\n\tsigning_key " + der + "\n}"), der[30:60]},
		{"signing_key from env without armour", site("bff_jwks {\n\tsigning_key {env.BFF_TEST_KEY_BLOB}\n}"), der[30:60]},
		{"client_secret with braces", site(fmt.Sprintf(oidc, "", `client_secret "pre{client-secret-inner}post"`)), "client-secret-inner"},
		{"client_secret with a space", site(fmt.Sprintf(oidc, "", "client_secret correct horse-battery")), "horse-battery"},
		{"redis password with braces", site(fmt.Sprintf(oidc, "redis {\n\t\t\tpassword \"pw{redis-secret-inner}\"\n\t\t}", "")), "redis-secret-inner"},
		{"redis URL with a password as the address", site(fmt.Sprintf(oidc, "redis {\n\t\t\taddress {env.BFF_TEST_REDIS_URL}\n\t\t}", "")), "hunter2-redis-pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := harness.Validate(bin, tc.cfg, "BFF_TEST_KEY_BLOB="+der,
				"BFF_TEST_REDIS_URL=rediss://default:hunter2-redis-pw@cache.example:6380")
			if err == nil {
				t.Fatalf("caddy validate accepted it:\n%s", tc.cfg)
			}
			if strings.Contains(out, tc.secret) {
				t.Fatalf("caddy validate repeats the secret:\n%s", out)
			}
			if !strings.Contains(out, "not shown") {
				t.Fatalf("the error does not say what is wrong:\n%s", out)
			}
		})
	}
}
