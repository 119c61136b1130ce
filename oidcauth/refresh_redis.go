package oidcauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/caddybff/redisconf"
)

const (
	purposeRefresh = "bff refresh v1"
	// refreshPoll is how often an instance that lost the refresh lock looks
	// for the winner's result.
	refreshPoll = 50 * time.Millisecond
)

// redisCoord coordinates refreshes across instances: one instance holds a
// lock per session and spent refresh token while it calls the provider,
// and leaves the sealed result for the others, so that rotating refresh
// tokens never log a user out however many gateways race.
type redisCoord struct {
	c   redis.UniversalClient
	cfg *redisconf.Resolved
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// coordinatedRefresh is doRefresh under a cross-instance lock.
func (h *Handler) coordinatedRefresh(r *http.Request, s *session, key string) (refreshResult, error) {
	rc := h.redis
	lockKey := rc.cfg.KeyPrefix + "lock:" + key
	resKey := rc.cfg.KeyPrefix + "rr:" + key
	owner := randomToken()
	deadline := h.now().Add(providerTimeout + 5*time.Second)
	for {
		ctx, cancel := rc.cfg.Ctx(r.Context())
		raw, err := rc.c.Get(ctx, resKey).Result()
		cancel()
		switch {
		case err == nil:
			return h.adoptRefresh(r, raw)
		case !errors.Is(err, redis.Nil):
			return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
		}

		ctx, cancel = rc.cfg.Ctx(r.Context())
		won, err := rc.c.SetNX(ctx, lockKey, owner, providerTimeout+5*time.Second).Result()
		cancel()
		if err != nil {
			return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
		}
		if won {
			// The previous holder may have finished between our GET and
			// SETNX: its result wins over a second refresh.
			ctx, cancel = rc.cfg.Ctx(r.Context())
			raw, err := rc.c.Get(ctx, resKey).Result()
			cancel()
			if err == nil {
				ctx, cancel = rc.cfg.Ctx(r.Context())
				_ = unlockScript.Run(ctx, rc.c, []string{lockKey}, owner).Err()
				cancel()
				return h.adoptRefresh(r, raw)
			}
			res, err := h.doRefresh(r, s)
			ctx, cancel = rc.cfg.Ctx(r.Context())
			defer cancel()
			if err == nil && !res.until.IsZero() {
				sealed, merr := json.Marshal(res.s)
				if merr == nil {
					_ = rc.c.Set(ctx, resKey, h.keys.seal(purposeRefresh, sealed), recentTTL).Err()
				}
			}
			_ = unlockScript.Run(ctx, rc.c, []string{lockKey}, owner).Err()
			return res, err
		}
		if h.now().After(deadline) {
			return refreshResult{}, fmt.Errorf("%w: waited too long for another instance's refresh", errProviderDown)
		}
		select {
		case <-r.Context().Done():
			return refreshResult{}, fmt.Errorf("%w: %w", errProviderDown, r.Context().Err())
		case <-time.After(refreshPoll):
		}
	}
}

// adoptRefresh takes another instance's refresh result. Saving it again
// checks the session was not ended meanwhile (logout wins) and yields this
// store's cookie value.
func (h *Handler) adoptRefresh(r *http.Request, sealed string) (refreshResult, error) {
	pt, err := h.keys.open(purposeRefresh, sealed)
	if err != nil {
		return refreshResult{}, fmt.Errorf("%w: unreadable refresh result", errProviderDown)
	}
	ns := new(session)
	if err := json.Unmarshal(pt, ns); err != nil {
		return refreshResult{}, fmt.Errorf("%w: unreadable refresh result", errProviderDown)
	}
	ns.key = hashID(ns.ID)
	cookie, err := h.store.save(r.Context(), ns, false, ns.end(h.idle, h.lifetime))
	if err != nil {
		return refreshResult{}, err
	}
	return refreshResult{s: ns, cookie: cookie, until: h.now().Add(recentTTL)}, nil
}
