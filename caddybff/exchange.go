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

// exchangedHeader returns the Authorization value with a token the provider
// issued for Audience by RFC 8693 token exchange, from the cache while it
// is fresh. Racing first requests of a session make one provider call. On
// failure it returns the status to answer: 401 (no access token), 403
// (refused), 503 (provider unavailable or unusable answer).
func (t *Token) exchangedHeader(r *http.Request, id *oidcauth.Identity) (string, int) {
	k := cacheKey{session: id.SessionKey(), subject: id.Subject}
	if k.session != "" {
		if e := t.cache.get(k); e != nil && t.now().Before(e.refreshAt) {
			metrics.TokenCache(metrics.ModeExchange, true)
			return e.header, 0
		}
	}
	metrics.TokenCache(metrics.ModeExchange, false)
	flight := k.session + "\x00" + k.subject
	v, _, _ := t.group.Do(flight, func() (any, error) {
		if k.session != "" {
			if e := t.cache.get(k); e != nil && t.now().Before(e.refreshAt) {
				return mintResult{entry: e}, nil
			}
		}
		// One client disconnecting must not fail the others waiting on
		// this flight; the timeout still bounds it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), exchangeTimeout)
		defer cancel()
		tok, exp, err := id.Exchange(ctx, t.Audience, t.Scopes)
		if err != nil {
			status := http.StatusServiceUnavailable
			switch {
			case errors.Is(err, oidcauth.ErrNoSession):
				status = http.StatusUnauthorized
			case errors.Is(err, oidcauth.ErrExchangeRefused):
				status = http.StatusForbidden
				metrics.TokenExchange(metrics.ExchangeRefused)
			default:
				metrics.TokenExchange(metrics.ExchangeUnavailable)
			}
			t.logger.Warn("token exchange failed",
				zap.String("request_id", requestid.From(r)), zap.String("sub", id.Subject),
				zap.String("audience", t.Audience), zap.Int("status", status), zap.Error(err))
			return mintResult{status: status}, nil
		}
		now := t.now()
		life := exp.Sub(now)
		if life <= time.Second {
			metrics.TokenExchange(metrics.ExchangeUnavailable)
			t.logger.Warn("token exchange returned an expired token",
				zap.String("request_id", requestid.From(r)), zap.String("audience", t.Audience))
			return mintResult{status: http.StatusServiceUnavailable}, nil
		}
		metrics.TokenExchange(metrics.ExchangeSuccess)
		e := &cachedToken{
			header:    "Bearer " + tok,
			subject:   id.Subject,
			expiresAt: exp,
			refreshAt: exp.Add(-refreshSkew(life)),
		}
		if k.session != "" {
			t.cache.put(k, e, now)
		}
		return mintResult{entry: e}, nil
	})
	res := v.(mintResult)
	if res.status != 0 {
		return "", res.status
	}
	return res.entry.header, 0
}
