package gateway

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// Versions of the xcaddy build README shows.
const (
	xcaddyVersion = "v0.4.5"
	caddyVersion  = "v2.11.9"
)

// Issue 13, item 2: the plugins build into a caddy with xcaddy exactly
// as README's build section says, and that caddy lists our modules and
// validates Caddyfile.example.
func TestXcaddyBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short: builds a whole caddy with xcaddy")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env := append(os.Environ(), "GOBIN="+filepath.Join(dir, "bin"), "GOFLAGS=", "GOWORK=off")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env, cmd.Dir = env, dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// README: go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
	run("go", "install", "github.com/caddyserver/xcaddy/cmd/xcaddy@"+xcaddyVersion)
	// README: xcaddy build v2.11.9 --with github.com/caddy-bff/caddy-bff@v0.0.0=$PWD
	// (a checkout: MODULE@VERSION=PATH; without the version go get asks
	// the module proxy for versions of an unpublished module).
	bin := filepath.Join(dir, "caddy")
	run(filepath.Join(dir, "bin", "xcaddy"), "build", caddyVersion, "--output", bin,
		"--with", "github.com/caddy-bff/caddy-bff@v0.0.0="+root)

	mods := run(bin, "list-modules")
	for _, id := range []string{"http.handlers.oidc_auth", "http.handlers.scope_authz", "http.handlers.bff_token",
		"http.handlers.bff_jwks", "http.handlers.bff_apps", "http.handlers.bff_rate_limit", "http.handlers.bff_health"} {
		if !strings.Contains(mods, id) {
			t.Errorf("the xcaddy build lacks %s", id)
		}
	}
	src, err := os.ReadFile(filepath.Join(root, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := harness.Validate(bin, string(src), exampleEnv(t)...); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("the xcaddy build does not validate Caddyfile.example: %v\n%s", err, out)
	}
}
