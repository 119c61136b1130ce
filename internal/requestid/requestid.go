// Package requestid gives every request one correlation id: a well-formed
// incoming X-Request-ID is kept, anything else is replaced by a fresh random
// id. The id is sent upstream, returned to the client, added to Caddy's
// access log and available as the {http.request_id} placeholder.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Header is the request and response header that carries the id.
const Header = "X-Request-ID"

// MaxLen bounds an incoming id; longer ones are replaced, not truncated.
const MaxLen = 128

const varKey = "bff.request_id"

// Valid reports whether an incoming id may be kept: 1 to MaxLen characters
// from [A-Za-z0-9._:-], so it is safe in logs, headers and JSON.
func Valid(id string) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// New returns a fresh random id (128 bits, hex).
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Ensure returns the request's id, establishing it on first call: it keeps
// a valid incoming X-Request-ID or generates one, sets it on the request (for
// the upstream) and on the response, and records it for the access log and
// placeholders. Later calls for the same request return the same id.
func Ensure(w http.ResponseWriter, r *http.Request) string {
	if id, ok := caddyhttp.GetVar(r.Context(), varKey).(string); ok && id != "" {
		return id
	}
	id := r.Header.Get(Header)
	if len(r.Header.Values(Header)) != 1 || !Valid(id) {
		id = New()
	}
	r.Header.Set(Header, id)
	if w != nil {
		w.Header().Set(Header, id)
	}
	caddyhttp.SetVar(r.Context(), varKey, id)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.request_id", id)
	}
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		// Add, not Set: Ensure runs once per request (the var above), and
		// Set rebuilds Caddy's field index on every call.
		extra.Add(zap.String("request_id", id))
	}
	return id
}

// From returns the id Ensure established, or "" when none was.
func From(r *http.Request) string {
	id, _ := caddyhttp.GetVar(r.Context(), varKey).(string)
	return id
}
