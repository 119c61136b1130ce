package scopeauthz

import (
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(new(Handler))
	httpcaddyfile.RegisterHandlerDirective("scope_authz", parseCaddyfile)
	// Authorisation needs the identity (oidc_auth, after basic_auth) and
	// must decide before anything forwards the request. Anchored to
	// forward_auth, a standard directive, so no `order` option is needed.
	httpcaddyfile.RegisterDirectiveOrder("scope_authz", httpcaddyfile.Before, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	if err := m.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return m, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	scope_authz [<matcher>] {
//		claim   <name>
//		allow   <methods...|*> <path patterns...> <requirements...>
//		default deny|allow
//	}
//
// An allow line lists one or more upper-case methods (or `*` for every
// method), then one or more path patterns (they start with `/`), then one
// or more requirements. allow may be repeated and its rules are read in
// order; claim and default may be given once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
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
		case "claim", "default":
			if seen[name] {
				return d.Errf("subdirective %q given more than once", name)
			}
			seen[name] = true
		}
		switch name {
		case "claim":
			if !d.AllArgs(&h.Claim) {
				return d.ArgErr()
			}
			if err := CheckClaim(h.Claim); err != nil {
				return d.Errf("claim %q: %v", h.Claim, err)
			}
		case "default":
			if !d.AllArgs(&h.Default) {
				return d.ArgErr()
			}
			if h.Default != "deny" && h.Default != "allow" {
				return d.Errf("default %q: want deny or allow", h.Default)
			}
		case "allow":
			r, err := parseAllow(d)
			if err != nil {
				return err
			}
			h.Allow = append(h.Allow, r)
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}

// parseAllow reads the arguments of one allow line and checks the rule,
// so that errors carry the Caddyfile line.
func parseAllow(d *caddyfile.Dispenser) (Rule, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return Rule{}, d.ArgErr()
	}
	first := -1
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			first = i
			break
		}
	}
	if first < 0 {
		return Rule{}, d.Err("allow: no path pattern (patterns start with /)")
	}
	if first == 0 {
		return Rule{}, d.Errf("allow %s: methods or * must come before the path patterns", args[0])
	}
	var r Rule
	if !(first == 1 && args[0] == "*") {
		r.Methods = args[:first]
	}
	end := first
	for end < len(args) && strings.HasPrefix(args[end], "/") {
		end++
	}
	r.Paths = args[first:end]
	r.Require = args[end:]
	for _, a := range r.Require {
		if strings.HasPrefix(a, "/") {
			return Rule{}, d.Errf("allow: path pattern %q after the requirements", a)
		}
	}
	if _, _, err := compileRule(0, r); err != nil {
		return Rule{}, d.Errf("allow: %v", err)
	}
	return r, nil
}
