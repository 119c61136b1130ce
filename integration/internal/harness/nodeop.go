package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NodeOP is panva's OpenID-certified oidc-provider (pinned in
// testdata/oidc-provider/package-lock.json), run with Node on a free
// loopback port: a second, independent provider, and one that implements
// pushed authorization requests (RFC 9126), which zitadel's does not.
type NodeOP struct {
	issuer string
	secret string
}

// Issuer is the provider's issuer URL.
func (p *NodeOP) Issuer() string { return p.issuer }

// ClientSecret is the secret of its one client, "bff".
func (p *NodeOP) ClientSecret() string { return p.secret }

// StartNodeOP starts the provider for a client whose redirect URI is
// redirectURI; requirePAR makes it refuse authorization requests that
// were not pushed. Without node or the installed package (make deps runs
// npm ci) the test fails in CI and is skipped, loudly, elsewhere.
func StartNodeOP(t testing.TB, redirectURI string, requirePAR bool) *NodeOP {
	t.Helper()
	root, err := rootDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "integration", "testdata", "oidc-provider")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "oidc-provider"))
	}
	if err != nil {
		msg := fmt.Sprintf("node or oidc-provider is missing (%v): run `make deps` (npm ci --prefix integration/testdata/oidc-provider)", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPED: " + msg)
	}
	port := FreePort(t)
	secret := "node-op-secret-" + fmt.Sprint(port)
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	req := "0"
	if requirePAR {
		req = "1"
	}
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port), "REDIRECT_URI="+redirectURI, "CLIENT_SECRET="+secret, "REQUIRE_PAR="+req)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := newSyncBuffer()
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting oidc-provider: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if issuer, ok := strings.CutPrefix(line, "listening "); ok {
				ready <- issuer
			}
			_, _ = logs.Write([]byte(line + "\n"))
		}
	}()
	select {
	case issuer := <-ready:
		return &NodeOP{issuer: issuer, secret: secret}
	case <-time.After(30 * time.Second):
		t.Fatalf("oidc-provider did not start:\n%s", logs.String())
	}
	return nil
}
