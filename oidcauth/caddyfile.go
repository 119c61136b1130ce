package oidcauth

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/internal/redisconf"
	"github.com/caddy-bff/caddy-bff/internal/secret"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("oidc_auth", parseCaddyfile)
	// Authentication runs before anything that reads the identity. Anchored
	// to basic_auth (a standard directive) so no `order` option is needed.
	httpcaddyfile.RegisterDirectiveOrder("oidc_auth", httpcaddyfile.After, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	oidc_auth {
//		issuer        <url>
//		client_id     <id>
//		client_secret <secret>
//		scopes        <scope...>
//		public        <path pattern...>
//		login_path    <path>
//		callback_path <path>
//		logout_path   <path>
//		user_path     <path>
//		session_events_path <path>
//		backchannel_logout_path <path>
//		frontchannel_logout_path <path>
//		post_logout_redirect    <path>
//		trusted_origins <origin...>
//		refresh_skew  <duration>
//		revalidate    <duration>
//		prompt        <value>
//		auth_params   <name> <value>
//		acr_levels    <strongest> > <weaker> > ...
//		client_auth   basic|post|private_key_jwt|none
//		client_key    <pem or path>
//		resource      <uri...>
//		userinfo      auto|on|off
//		par           auto|off|required
//		external_url  <origin>
//		forwarded_hosts <host...>
//		session {
//			store        cookie|memory|redis
//			keys         <secret...>
//			idle_timeout <duration>
//			lifetime     <duration>
//			redis {
//				address <host:port...>
//				...       (see internal/redisconf)
//			}
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		repeatable := name == "public" || name == "auth_params" || name == "trusted_origins" || name == "resource" || name == "forwarded_hosts"
		if seen[name] && !repeatable {
			return d.Errf("subdirective %q given more than once", name)
		}
		seen[name] = true
		switch name {
		case "issuer", "client_id", "client_secret", "login_path", "callback_path", "logout_path",
			"user_path", "session_events_path", "backchannel_logout_path", "frontchannel_logout_path", "post_logout_redirect", "prompt",
			"client_auth", "client_key", "userinfo", "par", "external_url":
			var v string
			if !d.Args(&v) || d.NextArg() {
				if name == "client_secret" || name == "client_key" {
					return secret.ArgErr(d, name)
				}
				return d.ArgErr()
			}
			switch name {
			case "issuer":
				h.Issuer = v
			case "client_id":
				h.ClientID = v
			case "client_secret":
				h.ClientSecret = v
			case "login_path":
				h.LoginPath = v
			case "callback_path":
				h.CallbackPath = v
			case "logout_path":
				h.LogoutPath = v
			case "user_path":
				h.UserPath = v
			case "session_events_path":
				h.SessionEventsPath = v
			case "backchannel_logout_path":
				h.BackchannelLogoutPath = v
			case "frontchannel_logout_path":
				h.FrontchannelLogoutPath = v
			case "post_logout_redirect":
				h.PostLogoutRedirect = v
			case "prompt":
				h.Prompt = v
			case "client_auth":
				h.ClientAuth = v
			case "client_key":
				h.ClientKey = v
			case "userinfo":
				h.UserInfo = v
			case "par":
				h.PAR = v
			case "external_url":
				h.ExternalURL = v
			}
		case "resource":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Resource = append(h.Resource, args...)
		case "forwarded_hosts":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.ForwardedHosts = append(h.ForwardedHosts, args...)
		case "scopes":
			h.Scopes = d.RemainingArgs()
			if len(h.Scopes) == 0 {
				return d.ArgErr()
			}
		case "public":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Public = append(h.Public, args...)
		case "trusted_origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.TrustedOrigins = append(h.TrustedOrigins, args...)
		case "refresh_skew":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			h.RefreshSkew = dur
		case "acr_levels":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			// `mfa > pwd`: values alternate with `>`, strongest first.
			for i, a := range args {
				if (i%2 == 1) != (a == ">") {
					return d.Errf("acr_levels: write the values strongest first, separated by >: acr_levels mfa > pwd")
				}
				if i%2 == 0 {
					h.ACRLevels = append(h.ACRLevels, a)
				}
			}
			if len(args)%2 == 0 {
				return d.Errf("acr_levels: a value must follow the last >")
			}
		case "revalidate":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			h.Revalidate = dur
		case "auth_params":
			var k, v string
			if !d.Args(&k, &v) || d.NextArg() {
				return d.ArgErr()
			}
			if h.AuthParams == nil {
				h.AuthParams = map[string]string{}
			}
			if _, dup := h.AuthParams[k]; dup {
				return d.Errf("auth_params %q given more than once", k)
			}
			h.AuthParams[k] = v
		case "session":
			if d.NextArg() {
				return d.ArgErr()
			}
			if err := h.unmarshalSession(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	return nil
}

func (h *Handler) unmarshalSession(d *caddyfile.Dispenser) error {
	h.Session = new(SessionConfig)
	seen := map[string]bool{}
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		if seen[name] {
			return d.Errf("session: subdirective %q given more than once", name)
		}
		seen[name] = true
		switch name {
		case "store":
			if !d.Args(&h.Session.Store) || d.NextArg() {
				return d.ArgErr()
			}
		case "redis":
			h.Session.Redis = new(redisconf.Config)
			if err := h.Session.Redis.UnmarshalCaddyfile(d); err != nil {
				return err
			}
		case "keys":
			h.Session.Keys = d.RemainingArgs()
			if len(h.Session.Keys) == 0 {
				return d.ArgErr()
			}
		case "max_sessions_per_user":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("session: max_sessions_per_user %q is not a positive number", v)
			}
			h.Session.MaxPerUser = n
		case "idle_timeout", "lifetime":
			dur, err := parseDuration(d)
			if err != nil {
				return err
			}
			if name == "idle_timeout" {
				h.Session.IdleTimeout = dur
			} else {
				h.Session.Lifetime = dur
			}
		default:
			return d.Errf("session: unrecognized subdirective %q", name)
		}
	}
	return nil
}

func parseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: bad duration %q: %v", name, v, err)
	}
	if dur <= 0 {
		return 0, d.Errf("%s: duration %q must be positive", name, v)
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
