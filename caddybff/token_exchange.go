package caddybff

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// exchangeTimeout bounds one exchange, whoever waits for it.
const exchangeTimeout = 10 * time.Second

// exchangeSource is mode exchange: a token the provider issues for
// Audience by RFC 8693 token exchange, cached while it is fresh. Racing
// first requests of a session make one provider call.
type exchangeSource struct{ t *Token }

func (s exchangeSource) header(r *http.Request, id *oidcauth.Identity) (string, error) {
	t := s.t
	k := cacheKey{session: id.SessionKey(), subject: id.Subject}
	fresh := func(e *cachedToken) bool { return t.now().Before(e.refreshAt) }
	e, hit, err := t.cache.getOrFill(k, fresh, nil, func() (*cachedToken, error) {
		return s.exchange(r, id)
	})
	metrics.TokenCache(metrics.ModeExchange, hit)
	if err != nil {
		return "", err
	}
	return e.header, nil
}

// exchange asks the provider for a token: 401 without an access token to
// exchange, 403 when the provider refuses, 503 when it is unavailable or
// its answer is unusable.
func (s exchangeSource) exchange(r *http.Request, id *oidcauth.Identity) (*cachedToken, error) {
	t := s.t
	// One client disconnecting must not fail the others waiting on this
	// flight; the timeout still bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), exchangeTimeout)
	defer cancel()
	tok, exp, err := id.Exchange(ctx, t.Audience, t.Scopes)
	if err != nil {
		te := errUnavailable
		switch {
		case errors.Is(err, oidcauth.ErrNoSession):
			te = errNoAccessToken
		case errors.Is(err, oidcauth.ErrExchangeRefused):
			te = errRefused
			metrics.TokenExchange(metrics.ExchangeRefused)
		default:
			metrics.TokenExchange(metrics.ExchangeUnavailable)
		}
		t.logger.Warn("token exchange failed",
			zap.String("request_id", requestid.From(r)), zap.String("sub", id.Subject),
			zap.String("audience", t.Audience), zap.Int("status", te.status), zap.Error(err))
		return nil, te
	}
	life := exp.Sub(t.now())
	if life <= time.Second {
		metrics.TokenExchange(metrics.ExchangeUnavailable)
		t.logger.Warn("token exchange returned an expired token",
			zap.String("request_id", requestid.From(r)), zap.String("audience", t.Audience))
		return nil, errUnavailable
	}
	metrics.TokenExchange(metrics.ExchangeSuccess)
	return &cachedToken{
		header:    "Bearer " + tok,
		subject:   id.Subject,
		expiresAt: exp,
		refreshAt: exp.Add(-refreshSkew(life)),
	}, nil
}
