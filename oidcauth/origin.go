package oidcauth

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// originVarKey is the caddyhttp var holding the request's external origin
// when it differs from what the request itself says (external_url, or a
// trusted proxy's forwarded headers); absent, the request is its origin.
const originVarKey = "bff.origin"

// origin is a site's external origin: the scheme and host the browser uses.
type origin struct {
	https bool
	host  string
}

// setOrigin decides r's external origin, in order: external_url; else
// the request's Host with the scheme of X-Forwarded-Proto, but only when
// the request comes from one of Caddy's trusted_proxies (server option)
// and never from anyone else; else the request. X-Forwarded-Host is
// honoured only for a host listed in forwarded_hosts: load balancers such
// as AWS ALB and GCP pass a client's X-Forwarded-Host through unchanged,
// and a redirect_uri built from it would send the code to the attacker's
// host. It decides the cookie variant (__Host- and Secure on HTTPS), the
// redirect and post-logout URIs, the CSRF origin check and the
// same-origin Referer of login_url.
func (h *Handler) setOrigin(r *http.Request) {
	if h.external != nil {
		caddyhttp.SetVar(r.Context(), originVarKey, h.external)
		return
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return
	}
	o := origin{https: r.TLS != nil, host: r.Host}
	changed := false
	// The nearest proxy's value: a proxy appends to (or replaces) what
	// the client sent.
	if p := lastValue(r.Header.Values("X-Forwarded-Proto")); p == "https" || p == "http" {
		o.https, changed = p == "https", true
	}
	if fh := lastValue(r.Header.Values("X-Forwarded-Host")); fh != "" && slices.Contains(h.forwardedHosts, fh) {
		o.host, changed = fh, true
	}
	if changed {
		caddyhttp.SetVar(r.Context(), originVarKey, &o)
	}
}

// lastValue is the last (proxy-most) entry of a forwarded header, over
// all its lines and comma-separated values, trimmed and lower-cased.
func lastValue(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	v := lines[len(lines)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// validHost accepts host or host:port, nothing that could carry a path,
// credentials or white space.
func validHost(h string) bool {
	if h == "" || len(h) > 255 || strings.ContainsAny(h, "/\\@?# \t") {
		return false
	}
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.Hostname() != ""
}

func originOf(r *http.Request) (https bool, host string) {
	if o, ok := caddyhttp.GetVar(r.Context(), originVarKey).(*origin); ok && o != nil {
		return o.https, o.host
	}
	return r.TLS != nil, r.Host
}

// ExternalOrigin returns the site's origin as the browser sees it (see
// external_url and forwarded_hosts): whether it is HTTPS, and its host.
// For handlers after oidc_auth, such as bff_token's default issuer; without
// an oidc_auth in front it is the request's own.
func ExternalOrigin(r *http.Request) (https bool, host string) { return originOf(r) }

// isHTTPS reports whether the browser reaches the site over HTTPS.
func isHTTPS(r *http.Request) bool {
	https, _ := originOf(r)
	return https
}

// externalHost is the host (and port) the browser uses.
func externalHost(r *http.Request) string {
	_, host := originOf(r)
	return host
}

// parseExternalURL reads external_url: an http(s) origin, no path beyond
// "/", no query, no credentials.
func parseExternalURL(v string) (*origin, bool) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || !validHost(u.Host) ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, false
	}
	return &origin{https: u.Scheme == "https", host: u.Host}, true
}
