package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// Peers: other gateways that log users in through an OpenID Provider,
// measured as site B against the same bare site A, OP, upstream and load
// (-peer NAME). Each is built from the Go module proxy at a pinned
// version, once: the binaries are cached under -peers-dir.

const (
	oauth2ProxyVersion   = "v7.15.6"
	caddySecurityVersion = "v1.1.64"
	xcaddyVersion        = "v0.4.5"

	// userHeader is where both peers pass the user's identity upstream;
	// the upstream counts the requests that carry it.
	userHeader = "X-Forwarded-User"
)

// peerRedirectURIs are the peers' callback URLs, registered with the OP
// next to our chain's.
var peerRedirectURIs = []string{
	"http://127.0.0.1:*/oauth2/callback",                                 // oauth2-proxy
	"http://127.0.0.1:*/auth/oauth2/generic/authorization-code-callback", // caddy-security
}

// peer is a running peer gateway.
type peer struct {
	label   string // what the report calls it
	version string
	proc    *harness.Process
	login   string // where a browser starts logging in (a URL on the peer)
}

// peerVersion is the pinned version of a peer, "" if there is no such peer.
func peerVersion(name string) string {
	switch name {
	case "oauth2-proxy":
		return oauth2ProxyVersion
	case "caddy-security":
		return caddySecurityVersion
	}
	return ""
}

// goEnv is the environment for the go command building a peer: outside
// this module (GOFLAGS=-mod=mod from the Makefile does not apply to
// `go install pkg@version`, nor to xcaddy's own module) and workspace.
func goEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOFLAGS=") && !strings.HasPrefix(kv, "GOWORK=") {
			env = append(env, kv)
		}
	}
	return append(env, "GOWORK=off")
}

// buildPeer returns the peer's binary, building it into dir/NAME-VERSION
// when it is not there yet.
func buildPeer(ctx context.Context, dir, name string) (string, error) {
	version := peerVersion(name)
	if version == "" {
		return "", fmt.Errorf("unknown peer %q (oauth2-proxy or caddy-security)", name)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name+"-"+version)
	bin := filepath.Join(out, name)
	if name == "caddy-security" {
		caddyVersion, err := pinnedCaddy()
		if err != nil {
			return "", err
		}
		out = filepath.Join(dir, name+"-"+version+"-caddy-"+caddyVersion)
		bin = filepath.Join(out, "caddy")
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	run := func(env []string, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = out
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, b)
		}
		return nil
	}
	start := time.Now()
	switch name {
	case "oauth2-proxy":
		logf("building oauth2-proxy %s (go install, once; cached in %s) …", version, out)
		err = run(append(goEnv(), "GOBIN="+out), "go", "install", "github.com/oauth2-proxy/oauth2-proxy/v7@"+version)
	case "caddy-security":
		caddyVersion, _ := pinnedCaddy()
		tools := filepath.Join(dir, "xcaddy-"+xcaddyVersion)
		xcaddy := filepath.Join(tools, "xcaddy")
		if _, serr := os.Stat(xcaddy); serr != nil {
			logf("installing xcaddy %s …", xcaddyVersion)
			if err = run(append(goEnv(), "GOBIN="+tools), "go", "install", "github.com/caddyserver/xcaddy/cmd/xcaddy@"+xcaddyVersion); err != nil {
				break
			}
		}
		logf("building caddy %s with caddy-security %s (xcaddy, once; cached in %s) …", caddyVersion, version, out)
		err = run(goEnv(), xcaddy, "build", caddyVersion, "--with", "github.com/greenpau/caddy-security@"+version, "--output", bin)
	}
	if err != nil {
		return "", err
	}
	logf("built %s in %v", bin, time.Since(start).Round(time.Second))
	return bin, nil
}

// pinnedCaddy is the Caddy version the project's go.mod requires.
func pinnedCaddy() (string, error) {
	root, err := harness.RootDir()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/caddyserver/caddy/v2" {
			return f[1], nil
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == "github.com/caddyserver/caddy/v2" {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("%s/go.mod does not require github.com/caddyserver/caddy/v2", root)
}

// startPeer runs the peer on addr in front of the upstream, logging in
// through issuer's OP as the client clientID/secret.
func startPeer(bin, name, dir, addr, upstream, issuer, clientID, secret string) (*peer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &peer{version: peerVersion(name)}
	var err error
	switch name {
	case "oauth2-proxy":
		p.label = "oauth2-proxy " + p.version + " (cookie session) + upstream proxy"
		p.login = "http://" + addr + "/oauth2/start?rd=" + benchPath
		secretBytes := make([]byte, 16)
		_, _ = rand.Read(secretBytes)
		p.proc, err = harness.Start(dir, []string{"OAUTH2_PROXY_CLIENT_SECRET=" + secret, "OAUTH2_PROXY_COOKIE_SECRET=" + hex.EncodeToString(secretBytes)}, bin,
			"--http-address", addr,
			"--upstream", "http://"+upstream+"/",
			"--provider", "oidc",
			"--oidc-issuer-url", issuer,
			"--client-id", clientID,
			"--redirect-url", "http://"+addr+"/oauth2/callback",
			"--scope", "openid profile email offline_access",
			"--code-challenge-method", "S256",
			"--email-domain", "*",
			// The OP's ID token has no email; the user is its subject.
			"--insecure-oidc-allow-unverified-email",
			"--cookie-secure=false",
			"--skip-provider-button",
			// API requests without a session get 401, not a redirect.
			"--api-route", "^/api/",
			// The upstream gets the user (X-Forwarded-User, on by default)
			// and the ID token as a Bearer JWT, as our chain gives one.
			"--pass-authorization-header",
			"--request-logging=false",
			"--auth-logging=false",
		)
	case "caddy-security":
		p.label = "caddy " + mustPinnedCaddy() + " + caddy-security " + p.version + " (authorize, JWT cookie) + reverse_proxy"
		p.version += " (caddy " + mustPinnedCaddy() + ")"
		p.login = "http://" + addr + "/auth/oauth2/generic"
		var cfg bytes.Buffer
		if err := caddySecurityTemplate.Execute(&cfg, map[string]string{
			"Addr": addr, "Upstream": upstream, "Issuer": issuer, "ClientID": clientID,
			"Transport": transport, "UserHeader": userHeader,
		}); err != nil {
			return nil, err
		}
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		p.proc, err = harness.Run(bin, dir, cfg.String(), "OIDC_CLIENT_SECRET="+secret, "AUTHP_KEY="+hex.EncodeToString(key))
	default:
		return nil, fmt.Errorf("unknown peer %q", name)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func mustPinnedCaddy() string {
	v, err := pinnedCaddy()
	if err != nil {
		return "?"
	}
	return v
}

// caddySecurityTemplate is caddy-security's Caddyfile: an authentication
// portal with the OP as a generic OpenID Connect provider, and an
// authorization policy in front of the same reverse_proxy as site A's.
var caddySecurityTemplate = template.Must(template.New("caddy-security").Parse(`{
	admin off
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log {
		level ERROR
		output stderr
		format json
	}
	security {
		oauth identity provider generic {
			realm generic
			driver generic
			client_id {{.ClientID}}
			client_secret {env.OIDC_CLIENT_SECRET}
			scopes openid email profile
			metadata_url {{.Issuer}}/.well-known/openid-configuration
			# The OP's ID token has no email (it is in the UserInfo).
			disable email claim check
		}
		authentication portal portal {
			crypto default token lifetime 3600
			crypto key sign-verify {env.AUTHP_KEY}
			enable identity provider generic
			cookie insecure on
			transform user {
				match realm generic
				action add role authp/user
			}
		}
		authorization policy policy {
			set auth url /auth/oauth2/generic
			crypto key verify {env.AUTHP_KEY}
			allow roles authp/user
			inject header "{{.UserHeader}}" from sub
		}
	}
}

http://{{.Addr}} {
	route /auth* {
		authenticate with portal
	}
	route /api/* {
		authorize with policy
		reverse_proxy {{.Upstream}} {
			{{.Transport}}
		}
	}
}
`))
