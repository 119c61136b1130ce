package oidcauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/signkey"
)

// Client authentication methods at the provider's endpoints, as discovery
// names them (OpenID Connect Core §9, RFC 7523), and the client_auth
// values that choose them.
const (
	authBasic         = "client_secret_basic"
	authPost          = "client_secret_post"
	authPrivateKeyJWT = "private_key_jwt"
	authNone          = "none"
)

// clientAuthNames maps client_auth's values to the methods.
var clientAuthNames = map[string]string{
	"basic": authBasic, "post": authPost, "private_key_jwt": authPrivateKeyJWT, "none": authNone,
}

const (
	// maxProviderBody bounds every answer of the provider we read.
	maxProviderBody = 1 << 20
	// assertionLifetime is how long a client assertion is valid.
	assertionLifetime   = time.Minute
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// providerClient is the one way the gateway calls the provider's
// endpoints with a form (token, refresh, token exchange, revocation): it
// authenticates the client the way discovery and the config agreed on,
// bounds the call (providerTimeout) and the answer (maxProviderBody),
// records its latency and classifies its errors. Discovery, JWKS and
// UserInfo are GETs through the same *http.Client (see discovery).
type providerClient struct {
	http     *http.Client
	issuer   string
	clientID string
	secret   string
	key      *signkey.Key // client_key, for private_key_jwt; nil otherwise
}

// chooseAuth picks the client authentication: the configured method, when
// the provider allows it (advertised is its
// token_endpoint_auth_methods_supported; empty means the default,
// client_secret_basic, Discovery §3); else the first method the provider
// advertises that the config can do. The error names what is missing.
func (c *providerClient) chooseAuth(configured string, advertised []string) (string, error) {
	if len(advertised) == 0 {
		advertised = []string{authBasic}
	}
	can := func(m string) bool {
		switch m {
		case authBasic, authPost:
			return c.secret != ""
		case authPrivateKeyJWT:
			return c.key != nil
		case authNone:
			// A confidential client never falls back to sending no proof.
			return c.secret == "" && c.key == nil
		}
		return false
	}
	if configured != "" {
		if !slices.Contains(advertised, configured) {
			return "", fmt.Errorf("client_auth %s: the provider accepts only %s at its token endpoint", configured, strings.Join(advertised, ", "))
		}
		return configured, nil
	}
	for _, m := range advertised {
		if can(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("the provider accepts %s at its token endpoint and the config can do none of them "+
		"(client_secret for basic and post, client_key for private_key_jwt)", strings.Join(advertised, ", "))
}

// authenticate adds the client authentication of method to a request to
// endpoint carrying form.
func (c *providerClient) authenticate(req *http.Request, form url.Values, method, endpoint string) error {
	switch method {
	case authBasic:
		// RFC 6749 §2.3.1: client id and secret form-urlencoded, then Basic.
		req.SetBasicAuth(url.QueryEscape(c.clientID), url.QueryEscape(c.secret))
	case authPost:
		form.Set("client_id", c.clientID)
		form.Set("client_secret", c.secret)
	case authPrivateKeyJWT:
		assertion, err := c.assertion(endpoint)
		if err != nil {
			return err
		}
		form.Set("client_id", c.clientID)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
	default: // none: a public client names itself (PKCE proves the rest)
		form.Set("client_id", c.clientID)
	}
	return nil
}

// assertion is an RFC 7523 client assertion: iss and sub the client id,
// aud the issuer alone (as draft-ietf-oauth-rfc7523bis asks, so an
// assertion for one provider is never good at another's endpoint), a fresh
// jti and a short exp.
func (c *providerClient) assertion(string) (string, error) {
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": c.clientID,
		"sub": c.clientID,
		"aud": c.issuer,
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	tok := jwt.NewWithClaims(c.key.Method, claims)
	tok.Header["kid"] = c.key.KID
	s, err := tok.SignedString(c.key.Private)
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return s, nil
}

// post sends form to endpoint, authenticated with method, and returns the
// status and the body (at most maxProviderBody). ctx bounds it, and so
// does providerTimeout. call labels the latency histogram. A transport
// failure wraps errProviderDown.
func (c *providerClient) post(ctx context.Context, call, endpoint, method string, form url.Values) (status int, answer []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	ctx, span := providerSpan(ctx, call)
	defer func() {
		if err != nil {
			endProviderSpan(span, "unavailable", status)
			return
		}
		endProviderSpan(span, outcomeOf(status), status)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s: %w", errProviderDown, call, err)
	}
	if err := c.authenticate(req, form, method, endpoint); err != nil {
		return 0, nil, fmt.Errorf("%w: %s: %w", errProviderDown, call, err)
	}
	body := form.Encode()
	req.Body = io.NopCloser(strings.NewReader(body))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		metrics.ProviderCall(call, start, err)
		return 0, nil, fmt.Errorf("%w: %s: %w", errProviderDown, call, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody))
	if err != nil {
		metrics.ProviderCall(call, start, err)
		return 0, nil, fmt.Errorf("%w: %s: %w", errProviderDown, call, err)
	}
	var callErr error
	if resp.StatusCode != http.StatusOK {
		callErr = errors.New(resp.Status)
	}
	metrics.ProviderCall(call, start, callErr)
	return resp.StatusCode, b, nil
}

// token makes a token request (code, refresh; RFC 6749 §4.1.3, §6) and
// reads the answer (§5.1) into an *oauth2.Token whose Extra holds the
// answer's other fields (id_token, scope). A refusal is an
// *oauth2.RetrieveError holding the status and the error code only,
// never the body, which may echo what was sent.
func (c *providerClient) token(ctx context.Context, call, endpoint, method string, form url.Values) (*oauth2.Token, error) {
	status, body, err := c.post(ctx, call, endpoint, method, form)
	if err != nil {
		return nil, err
	}
	var out struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Error        string          `json:"error"`
	}
	jsonErr := json.Unmarshal(body, &out)
	if status != http.StatusOK {
		return nil, &oauth2.RetrieveError{Response: &http.Response{StatusCode: status, Status: strconv.Itoa(status)}, ErrorCode: safeCode(out.Error)}
	}
	var extra map[string]any
	if jsonErr != nil || json.Unmarshal(body, &extra) != nil || out.AccessToken == "" {
		return nil, fmt.Errorf("%w: %s: the answer is not a token", errProviderDown, call)
	}
	tok := &oauth2.Token{AccessToken: out.AccessToken, TokenType: out.TokenType, RefreshToken: out.RefreshToken}
	if secs := seconds(out.ExpiresIn); secs > 0 {
		tok.ExpiresIn = int64(secs)
		tok.Expiry = time.Now().Add(time.Duration(secs * float64(time.Second)))
	}
	return tok.WithExtra(extra), nil
}

// maxExpiresIn caps a token lifetime the provider states: a larger (or
// infinite) expires_in would overflow the expiry, or keep a token cached
// for good.
const maxExpiresIn = 24 * 60 * 60

// seconds reads expires_in: a JSON number, or a string holding one (some
// providers send that), at most maxExpiresIn; 0 when absent, unreadable,
// negative or not finite.
func seconds(raw json.RawMessage) float64 {
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0
		}
		if secs, err = strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
			return 0
		}
	}
	if math.IsNaN(secs) || math.IsInf(secs, 0) || secs <= 0 {
		return 0
	}
	return min(secs, maxExpiresIn)
}

// addResources adds the resource indicators (RFC 8707) to a request's
// parameters.
func (h *Handler) addResources(form url.Values) {
	for _, r := range h.Resource {
		form.Add("resource", r)
	}
}
