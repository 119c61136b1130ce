package caddybff

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/internal/secret"
)

func init() {
	caddy.RegisterModule(new(Token))
	caddy.RegisterModule(new(JWKS))
	httpcaddyfile.RegisterHandlerDirective("bff_token", parseToken)
	httpcaddyfile.RegisterHandlerDirective("bff_jwks", parseJWKS)
	// bff_token sets Authorization just before the request is proxied,
	// after authentication and authorisation; request_header follows so
	// that operators can still adjust other headers.
	httpcaddyfile.RegisterDirectiveOrder("bff_token", httpcaddyfile.Before, "request_header")
	// bff_jwks answers requests, like respond.
	httpcaddyfile.RegisterDirectiveOrder("bff_jwks", httpcaddyfile.After, "respond")
}

func parseToken(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	t := new(Token)
	if err := t.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return t, nil
}

func parseJWKS(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	j := new(JWKS)
	if err := j.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return j, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	bff_token [<matcher>] {
//		mode        access_token|exchange|mint
//		audience    <aud>
//		scopes      <scope...>
//		ttl         <duration>
//		issuer      <iss>
//		claims      <name...>
//		signing_key <pem|path|placeholder>
//	}
//
// The block may be omitted for mode access_token. scopes and claims may be
// repeated and add up; the other subdirectives may be given once.
func (t *Token) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		if d.Nesting() > n+1 {
			return d.Err("subdirectives take no block")
		}
		switch name {
		case "mode", "audience", "ttl", "issuer", "signing_key":
			if seen[name] {
				return d.Errf("subdirective %q given more than once", name)
			}
			seen[name] = true
		}
		switch name {
		case "mode":
			if !d.AllArgs(&t.Mode) {
				return d.ArgErr()
			}
			switch t.Mode {
			case modeAccessToken, modeExchange, modeMint:
			default:
				return d.Errf("unknown mode %q: want access_token, exchange or mint", t.Mode)
			}
		case "audience":
			if !d.AllArgs(&t.Audience) {
				return d.ArgErr()
			}
		case "issuer":
			if !d.AllArgs(&t.Issuer) {
				return d.ArgErr()
			}
		case "signing_key":
			if !d.AllArgs(&t.SigningKey) {
				return secret.ArgErr(d, "signing_key")
			}
		case "ttl":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("parsing ttl %q: %v", s, err)
			}
			t.TTL = caddy.Duration(dur)
		case "scopes":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			t.Scopes = append(t.Scopes, args...)
		case "claims":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			t.Claims = append(t.Claims, args...)
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	bff_jwks [<matcher>] {
//		signing_key  <pem|path|placeholder>
//		previous_key <pem|path|placeholder>
//		max_age      <duration>
//	}
//
// previous_key may be repeated; the other subdirectives may be given once.
func (j *JWKS) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		if d.Nesting() > n+1 {
			return d.Err("subdirectives take no block")
		}
		switch name {
		case "signing_key", "max_age":
			if seen[name] {
				return d.Errf("subdirective %q given more than once", name)
			}
			seen[name] = true
		}
		switch name {
		case "signing_key":
			if !d.AllArgs(&j.SigningKey) {
				return secret.ArgErr(d, "signing_key")
			}
		case "previous_key":
			var k string
			if !d.AllArgs(&k) {
				return secret.ArgErr(d, "previous_key")
			}
			j.PreviousKeys = append(j.PreviousKeys, k)
		case "max_age":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("parsing max_age %q: %v", s, err)
			}
			j.MaxAge = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}
