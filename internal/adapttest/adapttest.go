// Package adapttest runs Caddyfile adapt golden files, as Caddy's own
// caddytest/integration/caddyfile_adapt does: each
// testdata/caddyfile_adapt/*.caddyfiletest holds a Caddyfile, a line of
// ten dashes, and either the JSON it adapts to or text its adapt error
// must contain.
package adapttest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// Run checks every golden file of dir. The caller's package must register
// its directives (importing it does).
func Run(t *testing.T, dir string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.caddyfiletest"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no adapt tests in %s: %v", dir, err)
	}
	newlines := regexp.MustCompile(`\r?\n`)
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.SplitN(string(data), "----------", 2)
			if len(parts) != 2 {
				t.Fatal("no ---------- separator")
			}
			input := strings.TrimSpace(parts[0]) + "\n"
			expected := newlines.ReplaceAllString(strings.TrimSpace(parts[1]), "\n")
			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, path, input, "caddyfile", expected) {
					t.Error("adapted JSON differs")
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err == nil || !strings.Contains(err.Error(), expected) {
				t.Errorf("adapt error = %v, want it to contain %q", err, expected)
			}
		})
	}
}
