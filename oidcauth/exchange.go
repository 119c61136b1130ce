package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
)

// Errors of Identity.Exchange, for handlers to classify with errors.Is.
var (
	// ErrExchangeRefused: the provider refused the exchange for this user
	// or audience (RFC 8693 §2.2.2: invalid_target, invalid_scope,
	// invalid_grant, unauthorized_client, access_denied, ...). Answer 403.
	ErrExchangeRefused = errors.New("token exchange refused")
	// ErrProviderUnavailable: the provider could not be reached or gave an
	// unusable answer (5xx, not a token, no expiry). Answer 503.
	ErrProviderUnavailable = errProviderDown
	// ErrNoSession: the identity has no session able to exchange (no
	// access token). Answer 401.
	ErrNoSession = errNoSession
)

// RFC 8693 token type and grant identifiers.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// Exchange trades the session's access token for a token for audience,
// narrowed to scopes when given, with an RFC 8693 token exchange at the
// provider's token endpoint. It makes one provider call per invocation:
// callers cache (bff_token does, per session, audience and scopes). The
// returned token is a secret: never log it or send it to the browser.
func (id *Identity) Exchange(ctx context.Context, audience string, scopes []string) (string, time.Time, error) {
	if id.handler == nil || id.accessToken == "" {
		return "", time.Time{}, ErrNoSession
	}
	return id.handler.exchange(ctx, id.accessToken, audience, scopes)
}

// exchange performs one RFC 8693 exchange of subjectToken.
func (h *Handler) exchange(ctx context.Context, subjectToken, audience string, scopes []string) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	info, err := h.disc.get(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	form := url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {subjectToken},
		"subject_token_type":   {tokenTypeAccess},
		"requested_token_type": {tokenTypeAccess},
	}
	if audience != "" {
		form.Set("audience", audience)
	}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	status, body, err := h.client.post(ctx, metrics.CallTokenExchange, info.tokenURL, info.auth, form)
	if err != nil {
		return "", time.Time{}, err
	}
	return h.parseExchange(status, body)
}

// parseExchange reads a token endpoint answer (RFC 8693 §2.2). Errors
// carry the RFC 6749 error code only, never the body.
func (h *Handler) parseExchange(status int, body []byte) (string, time.Time, error) {
	var out struct {
		AccessToken     string          `json:"access_token"`
		IssuedTokenType string          `json:"issued_token_type"`
		TokenType       string          `json:"token_type"`
		ExpiresIn       json.RawMessage `json:"expires_in"`
		Error           string          `json:"error"`
	}
	jsonErr := json.Unmarshal(body, &out)
	if status >= 500 {
		return "", time.Time{}, fmt.Errorf("%w: token exchange: status %d", errProviderDown, status)
	}
	if status != http.StatusOK {
		if status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden {
			return "", time.Time{}, fmt.Errorf("%w: %s", ErrExchangeRefused, safeCode(out.Error))
		}
		return "", time.Time{}, fmt.Errorf("%w: token exchange: status %d", errProviderDown, status)
	}
	if jsonErr != nil || out.AccessToken == "" {
		return "", time.Time{}, fmt.Errorf("%w: token exchange: the answer is not a token", errProviderDown)
	}
	if out.TokenType != "" && !strings.EqualFold(out.TokenType, "bearer") && !strings.EqualFold(out.TokenType, "N_A") {
		return "", time.Time{}, fmt.Errorf("%w: token exchange: token_type %q is not Bearer", errProviderDown, safeCode(strings.ToLower(out.TokenType)))
	}
	secs := seconds(out.ExpiresIn)
	if secs <= 0 {
		// Without an expiry the token cannot be cached safely nor known to
		// be short-lived: refuse it rather than forward a token forever.
		return "", time.Time{}, fmt.Errorf("%w: token exchange: the token has no expires_in", errProviderDown)
	}
	return out.AccessToken, h.now().Add(time.Duration(secs * float64(time.Second))), nil
}
