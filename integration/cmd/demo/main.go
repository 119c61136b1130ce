// Command demo runs the caddy-bff demo on this machine, loopback only:
//
//   - a real OpenID Provider (the zitadel/oidc example, see
//     internal/testop) on 127.0.0.1:9998 with two test users;
//   - a demo API (internal/demoapi) on 127.0.0.1:9001 that trusts only
//     JWTs it verifies against the gateway's JWKS;
//   - Caddy, in this process, with caddy-bff's modules, loading
//     demo/Caddyfile on http://127.0.0.1:8080: oidc_auth logs users in and
//     keeps the session in a sealed cookie, scope_authz checks each /api
//     call against the user's scopes, bff_token mints a short-lived JWT
//     for /api/*, bff_jwks publishes its key, bff_apps tells the shell
//     which micro-frontends of demo/applications.json the user may load,
//     and file_server serves the shell and the micro-frontends in
//     demo/www.
//
// Run it from the integration directory:
//
//	cd integration && go run ./cmd/demo
//
// then open http://127.0.0.1:8080/. Ctrl+C stops everything.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-bff/caddy-bff/caddybff"
	_ "github.com/caddy-bff/caddy-bff/oidcauth"
	_ "github.com/caddy-bff/caddy-bff/scopeauthz"

	"github.com/caddy-bff/caddy-bff/integration/internal/demoapi"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// Defaults, and the settings the demo Caddyfile reads through {$BFF_DEMO_*}.
const (
	defaultGatewayAddr  = "127.0.0.1:8080"
	defaultOPAddr       = "127.0.0.1:9998"
	defaultAPIAddr      = "127.0.0.1:9001"
	defaultClientSecret = "bff-demo-secret"
	clientID            = "bff"
	apiAudience         = "demo-api"
)

type options struct {
	gatewayAddr string
	opAddr      string
	apiAddr     string
	caddyfile   string // "" finds demo/Caddyfile
	signingKey  string // PEM file; "" generates one
	gateway     bool   // run Caddy
	out         io.Writer
}

func main() {
	o := options{out: os.Stdout}
	verbose := false
	flag.StringVar(&o.gatewayAddr, "addr", defaultGatewayAddr, "gateway (Caddy) listen address, on 127.0.0.1")
	flag.StringVar(&o.opAddr, "op", defaultOPAddr, "OpenID Provider listen address, on 127.0.0.1")
	flag.StringVar(&o.apiAddr, "api", defaultAPIAddr, "demo API listen address, on 127.0.0.1")
	flag.StringVar(&o.caddyfile, "caddyfile", "", "gateway Caddyfile (default: demo/Caddyfile)")
	flag.StringVar(&o.signingKey, "signing-key", "", "PEM private key bff_token signs with (default: a fresh EC P-256 key)")
	flag.BoolVar(&o.gateway, "gateway", true, "run the Caddy gateway (false: only the provider and the API)")
	flag.BoolVar(&verbose, "v", false, "log every provider request")
	flag.Parse()

	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	// The example provider logs each request through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := start(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	d.banner()
	<-ctx.Done()
	fmt.Fprintln(o.out, "\nstopping…")
	if err := d.close(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// demo is the running set of servers.
type demo struct {
	o       options
	op      *testop.Provider
	api     *demoapi.API
	apiSrv  *http.Server
	tmpDir  string
	keyFile string
	caddyUp bool
}

func loopback(name, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s address %q: %w", name, addr, err)
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("%s address %q: the demo listens on 127.0.0.1 only", name, addr)
	}
	return nil
}

// findCaddyfile finds demo/Caddyfile from the integration directory or
// the repository root.
func findCaddyfile() (string, error) {
	for _, p := range []string{"demo/Caddyfile", "integration/demo/Caddyfile"} {
		if _, err := os.Stat(p); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", errors.New("demo/Caddyfile not found: run from the integration directory or pass -caddyfile")
}

// writeSigningKey generates an EC P-256 key as PKCS#8 PEM into dir.
func writeSigningKey(dir string) (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "signing-key.pem")
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func start(o options) (d *demo, err error) {
	for _, a := range []struct{ name, addr string }{{"gateway", o.gatewayAddr}, {"provider", o.opAddr}, {"api", o.apiAddr}} {
		if err := loopback(a.name, a.addr); err != nil {
			return nil, err
		}
	}
	if o.out == nil {
		o.out = io.Discard
	}
	d = &demo{o: o}
	defer func() {
		if err != nil {
			_ = d.close()
		}
	}()

	if d.tmpDir, err = os.MkdirTemp("", "caddy-bff-demo-"); err != nil {
		return nil, err
	}
	d.keyFile = o.signingKey
	if d.keyFile == "" {
		if d.keyFile, err = writeSigningKey(d.tmpDir); err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
	} else if d.keyFile, err = filepath.Abs(d.keyFile); err != nil {
		return nil, err
	}

	secret := os.Getenv("BFF_DEMO_CLIENT_SECRET")
	if secret == "" {
		secret = defaultClientSecret
	}
	gatewayURL := "http://" + o.gatewayAddr

	d.op, err = testop.Start(testop.Config{
		Addr:                   o.opAddr,
		ClientID:               clientID,
		ClientSecret:           secret,
		RedirectURIs:           []string{gatewayURL + "/auth/callback"},
		PostLogoutRedirectURIs: []string{gatewayURL + "/"},
		// Step-up: a login that asks for acr_values=mfa gets acr mfa (the
		// demo provider's "second factor" is its password form again);
		// any other login gets pwd.
		ACRValues:  []string{"mfa"},
		DefaultACR: "pwd",
		// The provider's logout page (testop.FrontchannelLogoutPath)
		// frames the gateway's default front-channel logout URI.
		FrontchannelLogoutURIs: []string{gatewayURL + "/auth/frontchannel-logout"},
	})
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}

	if o.gateway {
		if err := d.startGateway(secret); err != nil {
			return nil, err
		}
	}

	// The API comes last: its first JWKS fetch then finds the gateway up.
	d.api, err = demoapi.New(demoapi.Config{
		JWKSURL:  gatewayURL + "/.well-known/jwks.json",
		Issuer:   gatewayURL,
		Audience: apiAudience,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.apiAddr)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	d.apiSrv = &http.Server{Handler: d.api, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.apiSrv.Serve(ln) }()

	return d, nil
}

// startGateway runs the demo Caddyfile in this process.
func (d *demo) startGateway(secret string) (err error) {
	o := d.o
	caddyfile := o.caddyfile
	if caddyfile == "" {
		if caddyfile, err = findCaddyfile(); err != nil {
			return err
		}
	} else if caddyfile, err = filepath.Abs(caddyfile); err != nil {
		return err
	}
	// The Caddyfile reads these with {$VAR} when it is adapted.
	for k, v := range map[string]string{
		"BFF_DEMO_ADDR":             o.gatewayAddr,
		"BFF_DEMO_ISSUER":           d.op.Issuer(),
		"BFF_DEMO_API":              o.apiAddr,
		"BFF_DEMO_CLIENT_SECRET":    secret,
		"BFF_DEMO_SIGNING_KEY_FILE": d.keyFile,
		"BFF_DEMO_WWW":              filepath.Join(filepath.Dir(caddyfile), "www"),
		"BFF_DEMO_APPS":             filepath.Join(filepath.Dir(caddyfile), "applications.json"),
		"BFF_DEMO_DATA":             filepath.Join(d.tmpDir, "caddy"),
	} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	if err := loadCaddy(caddyfile); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	d.caddyUp = true
	return nil
}

// loadCaddy adapts the Caddyfile and runs it in this process.
func loadCaddy(path string) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		return errors.New("caddyfile adapter not registered")
	}
	cfg, warnings, err := adapter.Adapt(body, map[string]any{"filename": path})
	if err != nil {
		return fmt.Errorf("adapting %s: %w", path, err)
	}
	for _, w := range warnings {
		slog.Warn("caddyfile", "warning", w.String())
	}
	return caddy.Load(cfg, true)
}

func (d *demo) banner() {
	w := d.o.out
	gw := "http://" + d.o.gatewayAddr + "/"
	if !d.caddyUp {
		gw = "(not started: -gateway=false)"
	}
	fmt.Fprintf(w, "\ncaddy-bff demo\n\n")
	fmt.Fprintf(w, "  open      %s\n", gw)
	fmt.Fprintf(w, "  provider  %s  (OpenID Provider; client %q)\n", d.op.Issuer(), clientID)
	fmt.Fprintf(w, "  sign out  %s%s  (the provider's front-channel logout page)\n", d.op.Issuer(), testop.FrontchannelLogoutPath)
	fmt.Fprintf(w, "  api       http://%s  (verifies JWTs for %q from the gateway's JWKS)\n", d.o.apiAddr, apiAudience)
	fmt.Fprintf(w, "  key       %s  (bff_token's signing key)\n\n", d.keyFile)
	fmt.Fprintf(w, "  users:\n")
	for _, u := range testop.Users() {
		fmt.Fprintf(w, "    %-22s password %-14s scopes %s\n", u.Username, u.Password, strings.Join(u.Scopes, " "))
	}
	fmt.Fprintf(w, "\n  Ctrl+C stops.\n")
}

// close stops everything that started, in reverse order.
func (d *demo) close() error {
	var errs []error
	if d.caddyUp {
		errs = append(errs, caddy.Stop())
		d.caddyUp = false
	}
	if d.apiSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, d.apiSrv.Shutdown(ctx))
		cancel()
	}
	if d.api != nil {
		d.api.Close()
	}
	if d.op != nil {
		errs = append(errs, d.op.Close())
	}
	if d.tmpDir != "" {
		errs = append(errs, os.RemoveAll(d.tmpDir))
	}
	return errors.Join(errs...)
}
