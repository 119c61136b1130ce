package caddybff

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

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

// tokenCache is a bounded map of tokens (minted or exchanged), read far
// more often than written. getOrFill is the way in: cache, then one
// flight per key, then the cache again, then fill and store.
type tokenCache struct {
	mu    sync.RWMutex
	m     map[cacheKey]*cachedToken
	max   int
	now   func() time.Time
	group singleflight.Group
}

func newTokenCache(max int, now func() time.Time) *tokenCache {
	return &tokenCache{m: make(map[cacheKey]*cachedToken), max: max, now: now}
}

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
		c.put(k, e, c.now())
		return e, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*cachedToken), false, nil
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
func (c *tokenCache) sweepEvery(ctx context.Context, logger *zap.Logger) {
	go background.Every(ctx, sweepInterval, logger, "token cache sweeper", func() { c.sweep(c.now()) })
}
