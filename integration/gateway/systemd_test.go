package gateway

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// Issue 13, item 7: deploy/caddy-bff.service is a valid unit, and what it
// runs works: ExecStart with the EnvironmentFile's secrets serves the
// config, ExecReload picks up an edited Caddyfile without a restart.
func TestSystemdUnit(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	unit, err := os.ReadFile("../../deploy/caddy-bff.service")
	if err != nil {
		t.Fatal(err)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		dir := t.TempDir()
		local := strings.ReplaceAll(string(unit), "/usr/local/bin/caddy", bin)
		if err := os.WriteFile(filepath.Join(dir, "caddy-bff.service"), []byte(local), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(analyze, "verify", "caddy-bff.service")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("SKIPPED part: systemd-analyze is not installed; the unit's commands are still run below")
	}
	// The unit's commands, with its EnvironmentFile read as systemd does.
	var execStart, execReload string
	sc := bufio.NewScanner(strings.NewReader(string(unit)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "ExecReload="); ok {
			execReload = v
		}
	}
	if !strings.Contains(execStart, " run --environ --config /etc/caddy/Caddyfile --adapter caddyfile") ||
		!strings.Contains(execReload, " reload --config /etc/caddy/Caddyfile --adapter caddyfile --force") {
		t.Fatalf("unexpected commands: %q %q", execStart, execReload)
	}
	var env []string
	envFile, err := os.ReadFile("../../deploy/secrets.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(envFile), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	op := startOP(t, 0)
	addr, admin := harness.FreeAddr(t), harness.FreeAddr(t)
	caddyfile := func(body string) string {
		return strings.Replace(harness.Caddyfile(fmt.Sprintf(`http://%s {
	oidc_auth {
		issuer %s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		public /version
		session {
			keys {env.SESSION_KEY} {env.SESSION_KEY_PREVIOUS}
		}
	}
	respond /version %q
}
`, addr, op.Issuer(), body)), "admin off", "admin "+admin, 1)
	}
	c := harness.StartCaddy(t, bin, caddyfile("one"), env...)
	if r := get(t, bare(), "http://"+addr+"/version"); r.StatusCode != 200 || r.body != "one" {
		t.Fatalf("ExecStart: %d %q", r.StatusCode, r.body)
	}
	file := filepath.Join(c.Dir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile("two")), 0o600); err != nil {
		t.Fatal(err)
	}
	reload := exec.Command(bin, "reload", "--config", file, "--adapter", "caddyfile", "--force", "--address", admin)
	reload.Env = append(os.Environ(), env...)
	if out, err := reload.CombinedOutput(); err != nil {
		t.Fatalf("ExecReload: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := get(t, bare(), "http://"+addr+"/version"); r.StatusCode == http.StatusOK && r.body == "two" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reload did not take effect")
		}
	}
	if c.Exited() {
		t.Fatal("caddy restarted instead of reloading")
	}
}
