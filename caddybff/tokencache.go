package caddybff

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/background"
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

// tokenCache is a bounded map of minted tokens, read far more often than
// written.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[cacheKey]*cachedToken
	max int
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{m: make(map[cacheKey]*cachedToken), max: max}
}

func (c *tokenCache) get(k cacheKey) *cachedToken {
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
	return e
}

// put stores e, making room when the cache is full: first by dropping
// tokens too old to reuse, then arbitrary ones (Go's map order is
// randomised), a tenth of the cache at a time so a full cache does not pay
// for a sweep on every insert.
func (c *tokenCache) put(k cacheKey, e *cachedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		c.sweepLocked(now)
		if len(c.m) >= c.max {
			drop := max(c.max/10, 1)
			for k := range c.m {
				delete(c.m, k)
				if drop--; drop == 0 {
					break
				}
			}
		}
	}
	c.m[k] = e
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// sweep drops the tokens too old to reuse and reports how many it dropped.
func (c *tokenCache) sweep(now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sweepLocked(now)
}

func (c *tokenCache) sweepLocked(now time.Time) int {
	n := 0
	for k, e := range c.m {
		if !now.Before(e.refreshAt) {
			delete(c.m, k)
			n++
		}
	}
	return n
}

// sweepEvery sweeps the cache every sweepInterval until ctx is done; a
// panicking sweep is logged and the next one still runs.
func (c *tokenCache) sweepEvery(ctx context.Context, logger *zap.Logger, now func() time.Time) {
	go background.Every(ctx, sweepInterval, logger, "token cache sweeper", func() { c.sweep(now()) })
}
