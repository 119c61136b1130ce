// Package gateway tests caddy-bff end to end: our caddy binary runs real
// Caddyfiles against zitadel's OpenID Provider in-process and a recording
// upstream, driven by an HTTP client that logs in through the provider's
// own HTML form.
package gateway

import (
	"os"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveBuild()
	os.Exit(code)
}
