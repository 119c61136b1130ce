package caddybff

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-bff/caddy-bff/internal/background"
	"github.com/caddy-bff/caddy-bff/internal/bounded"
)

const (
	// maxCachedTokens caps a bff_token handler's cache: about 1 KiB a
	// token, so at most ~100 MiB however many sessions there are.
	maxCachedTokens = 100_000
	// sweepInterval is how often tokens too old to reuse are dropped.
	sweepInterval = time.Minute
)

// cacheKey identifies what a cached token was minted for. Audience, ttl,
// claims and key are the handler's own, so each handler has its own cache.
// Strings of the request and identity are used as they are, so a lookup
// allocates nothing.
type cacheKey struct {
	session string
	subject string
	// host and tls make up the default issuer; empty when issuer is set.
	host string
	tls  bool
}

// cachedToken is a minted token and what it was minted for. It is never
// modified once cached.
type cachedToken struct {
	// header is "Bearer <jwt>", ready for the Authorization header.
	header    string
	subject   string
	scopes    []string
	expiresAt time.Time
	// refreshAt is when the token is too close to expiry to send.
	refreshAt time.Time
}

// tokenCache holds tokens (minted or exchanged), bounded: when full, the
// ones too old to reuse go first. getOrFill is the way in: cache, then one
// flight per key, then the cache again, then fill and store.
type tokenCache struct {
	m     *bounded.Map[cacheKey, *cachedToken]
	now   func() time.Time
	group singleflight.Group
}

func newTokenCache(max int, now func() time.Time) *tokenCache {
	c := &tokenCache{now: now}
	c.m = bounded.New[cacheKey, *cachedToken](max, func(e *cachedToken) bool { return !c.now().Before(e.refreshAt) })
	return c
}

func (c *tokenCache) get(k cacheKey) *cachedToken {
	e, _ := c.m.Get(k)
	return e
}

func (c *tokenCache) put(k cacheKey, e *cachedToken) { c.m.Put(k, e) }

func (c *tokenCache) len() int { return c.m.Len() }

// sweep drops the tokens too old to reuse and reports how many it dropped.
func (c *tokenCache) sweep() int { return c.m.Sweep() }

// getOrFill returns the token cached for k when reuse accepts it (hit),
// else the one fill makes, which it stores. Concurrent misses fill once:
// their flight is k plus what variant returns (what else the token depends
// on; nil: nothing), so they all get the same token. A k without a session
// is never cached, since the session is what keeps users apart: fill runs
// every time rather than risk handing out another user's token. The hit
// path does not allocate.
func (c *tokenCache) getOrFill(k cacheKey, reuse func(*cachedToken) bool, variant func() string, fill func() (*cachedToken, error)) (e *cachedToken, hit bool, err error) {
	if k.session == "" {
		e, err = fill()
		return e, false, err
	}
	if e := c.get(k); e != nil && reuse(e) {
		return e, true, nil
	}
	flight := k.session + "\x00" + k.subject + "\x00" + k.host + "\x00" + strconv.FormatBool(k.tls)
	if variant != nil {
		flight += "\x00" + variant()
	}
	v, err, _ := c.group.Do(flight, func() (any, error) {
		// A flight that ended between our miss and Do has stored its token.
		if e := c.get(k); e != nil && reuse(e) {
			return e, nil
		}
		e, err := fill()
		if err != nil {
			return nil, err
		}
		c.put(k, e)
		return e, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*cachedToken), false, nil
}

// sweepEvery sweeps the cache every sweepInterval until ctx is done; a
// panicking sweep is logged and the next one still runs.
func (c *tokenCache) sweepEvery(ctx context.Context, logger *zap.Logger) {
	go background.Every(ctx, sweepInterval, logger, "token cache sweeper", func() { c.sweep() })
}
