// Package secret resolves and reports secret-bearing config values (client
// secrets, session keys, signing keys, Redis passwords) so that no error
// ever repeats one: Caddy writes errors to its log and to `caddy validate`'s
// output, which land in CI logs and terminals.
package secret

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Resolve resolves the placeholders ({env.X}, {file.X}) of a secret
// setting, failing on unknown or empty ones. Caddy's error names the
// offending placeholder, which is config, not secret, when the value is
// exactly one placeholder; otherwise the placeholder it names is text of
// the value itself (a secret holding braces), so the error says what is
// wrong without it.
func Resolve(repl *caddy.Replacer, setting, v string) (string, error) {
	out, err := repl.ReplaceOrErr(v, true, true)
	if err == nil {
		return out, nil
	}
	prefix := ""
	if setting != "" {
		prefix = setting + ": "
	}
	if IsPlaceholder(v) {
		return "", fmt.Errorf("%s%w", prefix, err)
	}
	return "", fmt.Errorf("%sthe value holds braces that are no known placeholder "+
		"(the value is not shown; write literal braces as \\{ and \\}, or use {env.NAME})", prefix)
}

// IsPlaceholder reports whether v is a single placeholder and nothing
// else, such as {env.OIDC_CLIENT_SECRET} or {file./run/secrets/key}: a
// namespace, a dot, and a name without spaces, quotes, commas or braces.
// A key in braces (base64 has no dot, JSON has quotes) is not one.
func IsPlaceholder(v string) bool {
	inner, ok := strings.CutPrefix(v, "{")
	if inner, ok = strings.CutSuffix(inner, "}"); !ok {
		return false
	}
	ns, name, ok := strings.Cut(inner, ".")
	if !ok || ns == "" || name == "" || strings.ContainsAny(name, " \t\r\n{}\"',") {
		return false
	}
	for i, c := range ns {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '_')) {
			return false
		}
	}
	return true
}

// ArgErr is Dispenser.ArgErr for a secret subdirective: Caddy's repeats
// the token it stopped at, which may be part of the secret (an unquoted
// passphrase with a space).
func ArgErr(d *caddyfile.Dispenser, setting string) error {
	return d.Errf("%s takes exactly one value (quote it if it holds spaces; the value is not shown)", setting)
}
