package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/internal/redisconf"
)

const (
	purposeRefresh = "bff refresh v2"
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

// coordinatedRefresh is work (doRefresh, or a revalidation's check) under a
// cross-instance lock. ctx bounds the whole of it, waiting included; it is
// not the request's context (see refresh).
func (h *Handler) coordinatedRefresh(ctx context.Context, r *http.Request, s *session, key string, work renewWork) (refreshResult, error) {
	rc := h.redis
	lockKey := rc.cfg.KeyPrefix + "lock:" + key
	resKey := rc.cfg.KeyPrefix + "rr:" + key
	owner := randomToken()
	for {
		cctx, cancel := rc.cfg.Ctx(ctx)
		raw, err := rc.c.Get(cctx, resKey).Result()
		cancel()
		switch {
		case err == nil:
			return h.adoptRefresh(ctx, s, raw)
		case !errors.Is(err, redis.Nil):
			return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
		}

		cctx, cancel = rc.cfg.Ctx(ctx)
		won, err := rc.c.SetNX(cctx, lockKey, owner, refreshTimeout).Result()
		cancel()
		if err != nil {
			return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
		}
		if won {
			return h.refreshLocked(ctx, r, s, lockKey, resKey, owner, work)
		}
		select {
		case <-ctx.Done():
			return refreshResult{}, fmt.Errorf("%w: waited too long for another instance's refresh", errProviderDown)
		case <-time.After(refreshPoll):
		}
	}
}

// refreshLocked refreshes while holding the lock, leaves the result for
// the other instances, and releases the lock.
func (h *Handler) refreshLocked(ctx context.Context, r *http.Request, s *session, lockKey, resKey, owner string, work renewWork) (refreshResult, error) {
	rc := h.redis
	defer func() {
		cctx, cancel := rc.cfg.Ctx(ctx)
		_ = unlockScript.Run(cctx, rc.c, []string{lockKey}, owner).Err()
		cancel()
	}()
	// The previous holder may have finished between our GET and SETNX: its
	// result wins over a second refresh.
	cctx, cancel := rc.cfg.Ctx(ctx)
	raw, err := rc.c.Get(cctx, resKey).Result()
	cancel()
	if err == nil {
		return h.adoptRefresh(ctx, s, raw)
	}
	res, err := work(ctx, r, s)
	if err != nil {
		return res, err
	}
	// Sealed under a key bound to the session id, which the other
	// instances' requests carry in their cookies and Redis never holds.
	pt, err := marshalWithoutID(res.s)
	if err == nil {
		var sealed string
		if sealed, err = h.keys.sealBound(purposeRefresh, s.ID, nil, pt); err == nil {
			cctx, cancel := rc.cfg.Ctx(ctx)
			_ = rc.c.Set(cctx, resKey, sealed, recentTTL).Err()
			cancel()
		}
	}
	return res, nil
}

// adoptRefresh takes another instance's refresh result for the session s
// (whose cookie this request carries). Saving it again checks the session
// was not ended meanwhile (logout wins) and yields this store's cookie
// value.
func (h *Handler) adoptRefresh(ctx context.Context, s *session, sealed string) (refreshResult, error) {
	pt, err := h.keys.openBound(purposeRefresh, s.ID, nil, sealed)
	if err != nil {
		return refreshResult{}, fmt.Errorf("%w: unreadable refresh result", errProviderDown)
	}
	ns := new(session)
	if err := json.Unmarshal(pt, ns); err != nil || ns.Subject != s.Subject {
		return refreshResult{}, fmt.Errorf("%w: unreadable refresh result", errProviderDown)
	}
	ns.ID, ns.key = s.ID, s.hkey()
	cookie, err := h.store.save(ctx, ns, false, ns.end(h.idle, h.lifetime))
	if err != nil {
		// As doRefresh: an ended session stays ended, a session too large
		// says so, anything else is the store's failure (503 naming it),
		// not the provider's.
		if errors.Is(err, errSessionEnded) {
			return refreshResult{}, errSessionEnded
		}
		if _, ok := errors.AsType[*sessionTooLargeError](err); ok {
			return refreshResult{}, err
		}
		return refreshResult{}, fmt.Errorf("%w: %w", errStoreDown, err)
	}
	return refreshResult{s: ns, cookie: cookie, until: h.now().Add(recentTTL)}, nil
}
