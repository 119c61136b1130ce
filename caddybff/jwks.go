package caddybff

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/internal/signkey"
)

const (
	// defaultJWKSMaxAge is how long clients may cache the key set.
	defaultJWKSMaxAge = 5 * time.Minute
	// maxJWKSMaxAge bounds max_age: services must see a new key well
	// before tokens signed with it are common.
	maxJWKSMaxAge = 24 * time.Hour
)

// JWKS answers with the public keys of the tokens bff_token mints, as a
// JSON Web Key Set (RFC 7517 §5), so services verify tokens offline. Each
// key carries `kid` (its RFC 7638 thumbprint, the `kid` of the tokens it
// signed), `alg` and `use: sig`. It answers GET and HEAD; other methods get
// 405. It ends the request.
//
// To rotate keys: publish the new key as a previous_key, wait max_age, then
// sign with it (make it signing_key in both directives) and keep the old
// key as a previous_key until the tokens it signed have expired.
type JWKS struct {
	// SigningKey is the key bff_token signs with, in any form bff_token's
	// signing_key accepts (PEM text or a file path, placeholders resolved
	// when the config loads); a public key ("PUBLIC KEY" PEM) will do too.
	SigningKey string `json:"signing_key,omitempty"`

	// PreviousKeys are published as well, such as the keys of a rotation.
	// Same forms as SigningKey.
	PreviousKeys []string `json:"previous_keys,omitempty"`

	// MaxAge is how long clients may cache the key set
	// (`Cache-Control: public, max-age=N`), up to 24h. Default: 5m.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	kids         []string
	body         []byte
	cacheControl string
}

// CaddyModule returns the Caddy module information.
func (*JWKS) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bff_jwks",
		New: func() caddy.Module { return new(JWKS) },
	}
}

// Provision loads the keys and builds the response once.
func (j *JWKS) Provision(caddy.Context) error {
	if j.SigningKey == "" {
		return nil // Validate reports it
	}
	maxAge := time.Duration(j.MaxAge)
	if maxAge == 0 {
		maxAge = defaultJWKSMaxAge
	}
	j.cacheControl = "public, max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)

	set := jose.JSONWebKeySet{}
	j.kids = j.kids[:0]
	add := func(name, v string) error {
		k, err := signkey.Load(v, true)
		if err != nil {
			return fmt.Errorf("bff_jwks: %s: %w", name, err)
		}
		for _, kid := range j.kids {
			if kid == k.KID {
				return fmt.Errorf("bff_jwks: %s is a key listed before (kid %s)", name, kid)
			}
		}
		j.kids = append(j.kids, k.KID)
		set.Keys = append(set.Keys, k.JWK())
		return nil
	}
	if err := add("signing_key", j.SigningKey); err != nil {
		return err
	}
	for i, v := range j.PreviousKeys {
		if err := add(fmt.Sprintf("previous_key %d", i+1), v); err != nil {
			return err
		}
	}
	body, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("bff_jwks: encoding key set: %w", err)
	}
	j.body = append(body, '\n')
	return nil
}

// Validate checks the configuration.
func (j *JWKS) Validate() error {
	if j.SigningKey == "" {
		return errors.New("bff_jwks: signing_key is required")
	}
	if m := time.Duration(j.MaxAge); m < 0 || m > maxJWKSMaxAge {
		return fmt.Errorf("bff_jwks: max_age %s is out of range: need 0 to %s", m, maxJWKSMaxAge)
	}
	return nil
}

// ServeHTTP writes the key set.
func (j *JWKS) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	requestid.Ensure(w, r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Error(w, r, http.StatusMethodNotAllowed, "the key set answers GET and HEAD only")
		return nil
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(j.body)))
	h.Set("Cache-Control", j.cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(j.body)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*JWKS)(nil)
	_ caddy.Validator             = (*JWKS)(nil)
	_ caddyhttp.MiddlewareHandler = (*JWKS)(nil)
	_ caddyfile.Unmarshaler       = (*JWKS)(nil)
)
