package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
)

const (
	// keysRefetchInterval is the least time between two fetches of the
	// provider's key set for a key id we do not know. Unknown ids come from
	// tokens anyone can send (back-channel logout tokens): go-oidc's own
	// key set fetches once per such token, so 50 forged tokens made 50
	// fetches at the provider. A provider that rotates its keys publishes
	// the new key before signing with it (OpenID Connect Core §10.1.1),
	// so a genuine token waits at most this long for it.
	keysRefetchInterval = 30 * time.Second
	// keysRetryAfterError is the wait after a failed fetch: short, so a
	// provider's blip does not fail logins for long, yet no hammering.
	keysRetryAfterError = 5 * time.Second
	// maxKeySetBytes bounds the key set document we read.
	maxKeySetBytes = 1 << 20
)

var errUnknownKeyID = errors.New("token signed with an unknown key; the key set was fetched too recently to fetch again")

// keySet verifies JWS signatures with the provider's JWKS (implementing
// go-oidc's KeySet) for every verifier of a handler: ID tokens at login
// and refresh, logout tokens. It fetches jwks_uri with the handler's
// bounded client, keeps the keys, and refetches for an unknown key id at
// most once per keysRefetchInterval, concurrent fetches collapsed.
type keySet struct {
	url    string
	client *http.Client
	now    func() time.Time

	group singleflight.Group

	mu        sync.RWMutex
	keys      []jose.JSONWebKey
	fetchedAt time.Time // last attempt
	lastErr   error
}

func newKeySet(url string, client *http.Client, now func() time.Time) *keySet {
	return &keySet{url: url, client: client, now: now}
}

// VerifySignature implements oidc.KeySet: it returns the payload of a
// compact JWS signed by one of the provider's keys. go-oidc's verifier has
// checked the algorithm against the allowed ones before calling it.
func (ks *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, allowedJWSAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	ks.mu.RLock()
	keys, fetched := ks.keys, !ks.fetchedAt.IsZero()
	ks.mu.RUnlock()
	if payload, ok, err := verifyWith(jws, keys, kid); ok || err != nil {
		return payload, err
	}
	if fetched && !ks.mayFetch() {
		return nil, errUnknownKeyID
	}
	keys, err = ks.fetch(ctx)
	if err != nil {
		return nil, err
	}
	if payload, ok, err := verifyWith(jws, keys, kid); ok || err != nil {
		return payload, err
	}
	return nil, errors.New("no key of the provider's key set verifies the token")
}

// verifyWith tries the keys named kid (all keys when kid is empty). ok
// reports a key with that id was found; err that one was, but the
// signature is bad.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) ([]byte, bool, error) {
	found := false
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		found = true
		if payload, err := jws.Verify(&keys[i]); err == nil {
			return payload, true, nil
		}
	}
	if found && kid != "" {
		return nil, true, errors.New("the token's signature does not verify")
	}
	return nil, false, nil
}

// mayFetch reports whether enough time passed since the last fetch.
func (ks *keySet) mayFetch() bool {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	wait := keysRefetchInterval
	if ks.lastErr != nil {
		wait = keysRetryAfterError
	}
	return !ks.now().Before(ks.fetchedAt.Add(wait))
}

// fetch gets the key set once for all concurrent callers. The fetch runs
// under the client's timeout, not a caller's context: others wait on it.
func (ks *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ch := ks.group.DoChan("jwks", func() (any, error) {
		// Another caller may have fetched while this one waited.
		ks.mu.RLock()
		recent := !ks.fetchedAt.IsZero() && ks.now().Sub(ks.fetchedAt) < time.Second && ks.lastErr == nil
		keys := ks.keys
		ks.mu.RUnlock()
		if recent {
			return keys, nil
		}
		start := time.Now()
		// The span of the caller that started the fetch parents it (a
		// trace, not a deadline: others wait on it too).
		keys, err := ks.download(trace.SpanFromContext(ctx))
		metrics.ProviderCall(metrics.CallJWKS, start, err)
		ks.mu.Lock()
		ks.fetchedAt, ks.lastErr = ks.now(), err
		if err == nil {
			ks.keys = keys
		}
		ks.mu.Unlock()
		return keys, err
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: fetching the key set: %w", errProviderDown, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]jose.JSONWebKey), nil
	}
}

func (ks *keySet) download(parent trace.Span) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(trace.ContextWithSpan(context.Background(), parent), providerTimeout)
	defer cancel()
	ctx, span := providerSpan(ctx, metrics.CallJWKS)
	status := 0
	defer func() { endProviderSpan(span, outcomeOf(status), status) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %w", errProviderDown, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %w", errProviderDown, err)
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: key set: status %d", errProviderDown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySetBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %w", errProviderDown, err)
	}
	if len(body) > maxKeySetBytes {
		return nil, fmt.Errorf("%w: key set larger than %d bytes", errProviderDown, maxKeySetBytes)
	}
	return parseKeySet(body)
}

// parseKeySet reads a JWKS (RFC 7517 §5), keeping the signing keys go-jose
// understands: keys for encryption, of unknown types or with algorithms we
// do not verify are skipped, not fatal (§5: implementations SHOULD ignore
// them).
func parseKeySet(body []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%w: key set is not a JWKS: %w", errProviderDown, err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var meta struct {
			Use string `json:"use"`
			Alg string `json:"alg"`
		}
		if json.Unmarshal(raw, &meta) != nil || meta.Use == "enc" {
			continue
		}
		if meta.Alg != "" && !supportedJWSAlg(meta.Alg) {
			continue
		}
		var k jose.JSONWebKey
		if err := json.Unmarshal(raw, &k); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// allowedJWSAlgs are the signature algorithms go-oidc verifies; HMAC and
// "none" are never among them.
var allowedJWSAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

func supportedJWSAlg(alg string) bool {
	for _, a := range allowedJWSAlgs {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// signingAlgs filters the provider's id_token_signing_alg_values_supported
// to those we verify; none advertised means RS256 only, the one OpenID
// Connect makes mandatory (as go-oidc does).
func signingAlgs(advertised []string) []string {
	var out []string
	for _, a := range advertised {
		if supportedJWSAlg(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		out = []string{string(jose.RS256)}
	}
	return out
}
