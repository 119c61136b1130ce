package caddybff

import (
	"encoding/json"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/caddy-bff/caddy-bff/scopeauthz"
)

func init() {
	caddy.RegisterModule(new(Apps))
	// Not RegisterHandlerDirective: it would take the file of
	// `bff_apps /etc/portal/applications.json` for a path matcher.
	httpcaddyfile.RegisterDirective("bff_apps", parseApps)
	// bff_apps answers requests, like respond; it runs after the
	// authentication and authorisation directives, which come well before
	// respond. Anchored to respond's other side than bff_jwks.
	httpcaddyfile.RegisterDirectiveOrder("bff_apps", httpcaddyfile.Before, "respond")
}

// parseApps sets up a route with the handler. As with `root`, a single
// argument is the file, unless it is a named matcher (`@name`) or `*`; with
// two, the first is the matcher. A path matcher and inline apps without a
// file need a named matcher or a `handle` block.
func parseApps(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	h.Next() // consume directive name
	n, first := h.CountRemainingArgs(), ""
	if h.NextArg() {
		first = h.Val()
		h.Prev()
	}
	var matcherSet caddy.ModuleMap
	if n >= 2 || n == 1 && (first == "*" || strings.HasPrefix(first, "@")) {
		ms, err := h.ExtractMatcherSet() // resets the dispenser
		if err != nil {
			return nil, err
		}
		matcherSet = ms
	} else {
		h.Reset()
	}
	a := new(Apps)
	if err := a.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return h.NewRoute(matcherSet, a), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	bff_apps [<matcher>] [<file>] {
//		file  <path>
//		claim <name>
//		app <name> {
//			title   <title>
//			entry   <module URL>
//			route   <path>
//			require <requirements...>
//			<field> <value>
//		}
//	}
//
// The file may be given as the argument or as the file subdirective, not
// both; a single argument is the file unless it is `*` or a named matcher. app may be repeated, once per name; its other lines give extra
// fields, passed to the shell as strings. Each subdirective may be given
// once.
func (a *Apps) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		a.File = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	seenClaim := false
	names := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		if d.Nesting() > n+1 {
			return d.Err("subdirectives other than app take no block")
		}
		switch name {
		case "file":
			if a.File != "" {
				return d.Err(`subdirective "file" given more than once (or with the file as argument)`)
			}
			if !d.AllArgs(&a.File) {
				return d.ArgErr()
			}
		case "claim":
			if seenClaim {
				return d.Errf("subdirective %q given more than once", name)
			}
			seenClaim = true
			if !d.AllArgs(&a.Claim) {
				return d.ArgErr()
			}
			if err := scopeauthz.CheckClaim(a.Claim); err != nil {
				return d.Errf("claim %q: %v", a.Claim, err)
			}
		case "app":
			var appName string
			if !d.AllArgs(&appName) {
				return d.ArgErr()
			}
			if names[appName] {
				return d.Errf("app %q defined more than once", appName)
			}
			names[appName] = true
			app, err := parseApp(d, appName)
			if err != nil {
				return err
			}
			a.Applications = append(a.Applications, app)
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}

// parseApp reads the block of `app <name>`.
func parseApp(d *caddyfile.Dispenser, name string) (App, error) {
	app := App{Name: name}
	seen := make(map[string]bool)
	for n := d.Nesting(); d.NextBlock(n); {
		key := d.Val()
		if d.Nesting() > n+1 {
			return App{}, d.Errf("app %q: fields take no block", name)
		}
		if seen[key] {
			return App{}, d.Errf("app %q: %q given more than once", name, key)
		}
		seen[key] = true
		switch key {
		case fieldTitle:
			if !d.AllArgs(&app.Title) {
				return App{}, d.ArgErr()
			}
		case fieldEntry:
			if !d.AllArgs(&app.Entry) {
				return App{}, d.ArgErr()
			}
		case fieldRoute:
			if !d.AllArgs(&app.Route) {
				return App{}, d.ArgErr()
			}
		case fieldRequire:
			app.Require = d.RemainingArgs()
			if len(app.Require) == 0 {
				return App{}, d.ArgErr()
			}
		case fieldName:
			return App{}, d.Errf("app %q: the name is the app's argument, not a field", name)
		default:
			if err := checkExtraName(key); err != nil {
				return App{}, d.Errf("app %q: %v", name, err)
			}
			var v string
			if !d.AllArgs(&v) {
				return App{}, d.ArgErr()
			}
			raw, err := json.Marshal(v)
			if err != nil {
				return App{}, d.Errf("app %q: %s: %v", name, key, err)
			}
			if app.Extra == nil {
				app.Extra = make(map[string]json.RawMessage)
			}
			app.Extra[key] = raw
		}
	}
	if _, err := app.compile(); err != nil {
		return App{}, d.Errf("app %q: %v", name, err)
	}
	return app, nil
}
