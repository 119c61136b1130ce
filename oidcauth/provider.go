package oidcauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
)

// errProviderDown: discovery or a provider call failed for reasons that are
// not the user's (network, 5xx, bad document). Requests answer 503.
var errProviderDown = errors.New("identity provider unavailable")

const (
	providerTimeout   = 10 * time.Second
	discoveryMinRetry = 500 * time.Millisecond
	discoveryMaxRetry = 10 * time.Second
)

// providerInfo is what discovery yields; immutable once built.
type providerInfo struct {
	oidc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	// keys verifies every token from the provider (ID and logout tokens),
	// algs are the signature algorithms it may use.
	keys     *keySet
	algs     []string
	oauth    oauth2.Config // for the authorization URL; token calls go through client
	tokenURL string
	// auth is the client authentication every form call uses (token,
	// refresh, exchange, revocation), chosen from discovery and config.
	auth       string
	revocation string
	endSession string
	// parEndpoint is the RFC 9126 pushed authorization request endpoint
	// ("" without one); requirePAR: the provider takes no other request.
	parEndpoint string
	requirePAR  bool
	userinfo    string
	introspect  string // the RFC 7662 introspection endpoint; "" without one
	// issParameter: the provider always sends iss in authorization
	// responses (RFC 9207 authorization_response_iss_parameter_supported).
	issParameter bool
}

// discovery finds the provider lazily, on first need, and retries with
// capped exponential backoff, so that Caddy starts (and `caddy validate`
// passes) while the provider is down, and a down provider is not hammered.
type discovery struct {
	issuer   string
	clientID string
	scopes   []string
	client   *http.Client
	pc       *providerClient
	auth     string          // the configured client authentication; "" chooses
	par      string          // the par setting
	ctx      context.Context // long-lived: go-oidc fetches JWKS with it
	now      func() time.Time

	group singleflight.Group

	// userinfoRefused: with userinfo auto, the UserInfo endpoint refused
	// the access token once, so it is not called again (providers that
	// bind access tokens to another resource do that on every call).
	userinfoRefused atomic.Bool

	mu      sync.Mutex
	info    *providerInfo
	lastErr error
	retryAt time.Time
	backoff time.Duration
}

func (d *discovery) get(ctx context.Context) (*providerInfo, error) {
	d.mu.Lock()
	if d.info != nil {
		info := d.info
		d.mu.Unlock()
		return info, nil
	}
	if d.lastErr != nil && d.now().Before(d.retryAt) {
		err := d.lastErr
		d.mu.Unlock()
		return nil, err
	}
	d.mu.Unlock()

	ch := d.group.DoChan("discover", func() (any, error) {
		info, err := d.discover(trace.SpanFromContext(ctx))
		d.mu.Lock()
		defer d.mu.Unlock()
		if err != nil {
			if d.backoff == 0 {
				d.backoff = discoveryMinRetry
			} else {
				d.backoff = min(2*d.backoff, discoveryMaxRetry)
			}
			d.lastErr = err
			d.retryAt = d.now().Add(d.backoff)
			metrics.ProviderUp(d.issuer, false)
			return nil, err
		}
		d.info, d.lastErr, d.backoff = info, nil, 0
		metrics.ProviderUp(d.issuer, true)
		return info, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", errProviderDown, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*providerInfo), nil
	}
}

// discover runs under the long-lived d.ctx (go-oidc keeps it); parent,
// the span of the request that needed it, parents its span.
func (d *discovery) discover(parent trace.Span) (*providerInfo, error) {
	ctx, cancel := context.WithTimeout(trace.ContextWithSpan(d.ctx, parent), providerTimeout)
	defer cancel()
	start := time.Now()
	sctx, span := providerSpan(ctx, metrics.CallDiscovery)
	p, err := oidc.NewProvider(oidc.ClientContext(sctx, d.client), d.issuer)
	metrics.ProviderCall(metrics.CallDiscovery, start, err)
	if err != nil {
		endProviderSpan(span, "unavailable", 0)
	} else {
		endProviderSpan(span, "ok", 0)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: discovery: %w", errProviderDown, err)
	}
	// NewProvider bound the key set to the short ctx's client only, not to
	// its deadline (go-oidc detaches it); our client's Timeout bounds
	// every JWKS fetch.
	var extra struct {
		Revocation  string   `json:"revocation_endpoint"`
		EndSession  string   `json:"end_session_endpoint"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		ISSParam    bool     `json:"authorization_response_iss_parameter_supported"`
		JWKSURI     string   `json:"jwks_uri"`
		Algs        []string `json:"id_token_signing_alg_values_supported"`
		PAR         string   `json:"pushed_authorization_request_endpoint"`
		Introspect  string   `json:"introspection_endpoint"`
		RequirePAR  bool     `json:"require_pushed_authorization_requests"`
	}
	if err := p.Claims(&extra); err != nil {
		return nil, fmt.Errorf("%w: discovery document: %w", errProviderDown, err)
	}
	// One client authentication for every form call, named rather than
	// guessed (oauth2's guessing retries a failed call with the other
	// method, which spends a rotating refresh token twice).
	auth, err := d.pc.chooseAuth(d.auth, extra.AuthMethods)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errProviderDown, err)
	}
	if d.par == "required" && extra.PAR == "" {
		return nil, fmt.Errorf("%w: par required, and the provider has no pushed_authorization_request_endpoint", errProviderDown)
	}
	endpoint := p.Endpoint()
	if extra.JWKSURI == "" {
		return nil, fmt.Errorf("%w: discovery document has no jwks_uri", errProviderDown)
	}
	// Our key set, not go-oidc's: it refetches for an unknown key id at
	// most every keysRefetchInterval (forged logout tokens cannot make us
	// hammer the provider), through our bounded client.
	keys := newKeySet(extra.JWKSURI, d.client, d.now)
	algs := signingAlgs(extra.Algs)
	return &providerInfo{
		oidc:     p,
		verifier: oidc.NewVerifier(d.issuer, keys, &oidc.Config{ClientID: d.clientID, SupportedSigningAlgs: algs, Now: d.now}),
		keys:     keys,
		algs:     algs,
		oauth: oauth2.Config{
			ClientID: d.clientID,
			Endpoint: endpoint,
			Scopes:   d.scopes,
		},
		tokenURL:     endpoint.TokenURL,
		auth:         auth,
		revocation:   extra.Revocation,
		parEndpoint:  extra.PAR,
		requirePAR:   extra.RequirePAR,
		endSession:   extra.EndSession,
		userinfo:     p.UserInfoEndpoint(),
		introspect:   extra.Introspect,
		issParameter: extra.ISSParam,
	}, nil
}

// clientCtx returns ctx carrying our bounded HTTP client for oauth2 and
// go-oidc calls.
func (d *discovery) clientCtx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, d.client)
}
