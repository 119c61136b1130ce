package caddybff

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/internal/redisconf"
)

func init() {
	caddy.RegisterModule(new(RateLimit))
	httpcaddyfile.RegisterHandlerDirective("bff_rate_limit", parseRateLimit)
	// Limits run once the user is known (oidc_auth, scope_authz) and
	// before a token is minted or the request proxied.
	httpcaddyfile.RegisterDirectiveOrder("bff_rate_limit", httpcaddyfile.After, "forward_auth")
}

func parseRateLimit(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	rl := new(RateLimit)
	if err := rl.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return rl, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	bff_rate_limit [<matcher>] {
//		rate  <n>r/<s|m|h>
//		burst <n>
//		key   <placeholder>
//		zone  <name>
//		store memory|redis
//		fail  open|closed
//		redis {
//			address    <host:port...>
//			password   <password>
//			key_prefix <prefix>
//			...
//		}
//	}
//
// rate is required; each subdirective may be given once. The redis block
// has the grammar of the session store's (see redisconf) and needs
// store redis, as does fail.
func (rl *RateLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		if name == "{" {
			return d.Err("only redis takes a block")
		}
		if seen[name] {
			return d.Errf("subdirective %q given more than once", name)
		}
		seen[name] = true
		if name == "redis" {
			rl.Redis = new(redisconf.Config)
			if err := rl.Redis.UnmarshalCaddyfile(d); err != nil {
				return err
			}
			continue
		}

		var v string
		switch name {
		case "rate", "burst", "key", "zone", "store", "fail":
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
		switch name {
		case "rate":
			if _, _, err := parseRate(v); err != nil {
				return d.Errf("rate: %v", err)
			}
			rl.Rate = v
		case "burst":
			b, err := strconv.Atoi(v)
			if err != nil || b < 1 || b > maxRateCount {
				return d.Errf("burst %q is not a number from 1 to %d", v, maxRateCount)
			}
			rl.Burst = b
		case "key":
			if strings.TrimSpace(v) == "" {
				return d.Err("key is blank")
			}
			rl.Key = v
		case "zone":
			if !validZone(v) {
				return d.Errf("zone %q: want up to %d letters, digits, '.', '_' or '-'", v, maxZoneLen)
			}
			rl.Zone = v
		case "store":
			if v != storeMemory && v != storeRedis {
				return d.Errf("unknown store %q: want memory or redis", v)
			}
			rl.Store = v
		case "fail":
			if v != failOpen && v != failClosed {
				return d.Errf("fail %q: want open or closed", v)
			}
			rl.Fail = v
		}
	}
	return nil
}
