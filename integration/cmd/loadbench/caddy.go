package main

import (
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// transport is the reverse_proxy transport both sites use, word for word.
const transport = `transport http {
			keepalive 2m
			keepalive_idle_conns 1024
			keepalive_idle_conns_per_host 1024
		}`

// caddyfileTemplate is the benchmark's Caddyfile: site A is the bare
// reverse proxy, site B the full chain, both with the same transport.
var caddyfileTemplate = template.Must(template.New("Caddyfile").Parse(`{
	{{.Admin}}
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log {
		level ERROR
		output stderr
		format json
	}
}

# A: the bare reverse proxy.
http://{{.AddrA}} {
	reverse_proxy {{.Upstream}} {
		{{.Transport}}
	}
}

{{if .AddrB -}}
# B: the full chain.
http://{{.AddrB}} {
	oidc_auth {
		issuer {{.Issuer}}
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid profile email offline_access
		session {
			store {{.Store}}
			{{- if .RedisAddr}}
			redis {
				address {{.RedisAddr}}
			}
			{{- end}}
			keys {env.SESSION_KEY}
		}
	}
	handle /api/* {
		# SPEC §9's chain: a realistic policy of 20 rules, the benchmarked
		# path matched by the last; a rate limit the run never exhausts.
		scope_authz {
{{- range .Rules}}
			allow {{.}}
{{- end}}
			allow GET /api/bench authenticated
			default deny
		}
		bff_rate_limit {
			rate 1000000r/s
			burst 1000000
		}
		bff_token {
			mode mint
			audience {{.Audience}}
			issuer http://{{.AddrB}}
			signing_key {{.KeyFile}}
		}
		reverse_proxy {{.Upstream}} {
			{{.Transport}}
		}
	}
}
{{- end}}
`))

// caddyConfig fills caddyfileTemplate.
type caddyConfig struct {
	Admin                  string // "admin ADDR" for profiles, else ""
	AddrA, AddrB, Upstream string
	Issuer, KeyFile        string
	Store, RedisAddr       string
	Audience, Transport    string
	Rules                  []string // scope_authz rules before the benchmarked one
}

func caddyfile(c caddyConfig) string {
	c.Audience, c.Transport = audience, transport
	for i := range 19 {
		c.Rules = append(c.Rules, fmt.Sprintf("GET POST /api/svc%02d/* svc%02d:read", i, i))
	}
	var b strings.Builder
	if err := caddyfileTemplate.Execute(&b, c); err != nil {
		panic(err) // the template and its fields are fixed
	}
	return b.String()
}

// waitReady polls until fn succeeds, the site's process exits, or the
// timeout passes.
func waitReady(ctx context.Context, c *harness.Process, what string, fn func() error) error {
	deadline := time.Now().Add(readyTimeout)
	var err error
	for {
		if err = fn(); err == nil {
			return nil
		}
		if c.Exited() {
			return fmt.Errorf("%s's process exited (%v) before it was ready:\n%s", what, c.Err(), c.Logs())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready: %v\n%s", what, err, c.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
