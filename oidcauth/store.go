package oidcauth

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/background"
)

var (
	// errNoSession: the cookie names no live session (absent, unreadable,
	// expired, ended). The user is anonymous.
	errNoSession = errors.New("no session")
	// errSessionEnded: the session was ended (logout, back-channel) while a
	// request was working on it; nothing may revive it.
	errSessionEnded = errors.New("session ended")
	// errStoreDown wraps failures of the session store or Redis.
	errStoreDown = errors.New("session store unavailable")
)

// store keeps sessions. Errors other than errNoSession/errSessionEnded mean
// the store is unavailable: the request fails closed with 503.
type store interface {
	// load returns the live session a cookie value refers to.
	load(ctx context.Context, value string) (*session, error)
	// save persists s until `until` and returns the cookie value that
	// refers to it. For an existing session (create false) it fails with
	// errSessionEnded when the session was ended meanwhile.
	save(ctx context.Context, s *session, create bool, until time.Time) (string, error)
	// remove ends s everywhere; a copy of its cookie must not work again
	// before `until`, the session's absolute end (Handler.endSession):
	// a copy may have been used after the cookie that ended it, so its
	// idle end says nothing.
	remove(ctx context.Context, s *session, until time.Time) error
}

// revocations remembers ended sessions until they would have expired
// anyway; the stateless cookie store needs it because a copy of an old
// cookie stays cryptographically valid. Sessions end one by one (logout:
// by hashed id) or in bulk (back-channel logout: by the provider's sid, or
// every session of a subject logged in before the logout).
type revocations struct {
	mu       sync.RWMutex
	sessions map[string]time.Time // hashed id -> until
	sids     map[string]time.Time // provider session id -> until
	subs     map[string]subRevocation
	jtis     map[string]time.Time // logout tokens seen (replay) -> until
	// issued are the provider session ids of this gateway's logins (->
	// until those sessions end): an unsigned front-channel logout may name
	// only these, so forged sids cannot grow the endings.
	issued map[string]time.Time
}

type subRevocation struct {
	at    time.Time // sessions created before this are dead
	until time.Time
}

func newRevocations() *revocations {
	return &revocations{
		sessions: make(map[string]time.Time),
		sids:     make(map[string]time.Time),
		subs:     make(map[string]subRevocation),
		jtis:     make(map[string]time.Time),
		issued:   make(map[string]time.Time),
	}
}

func extend(m map[string]time.Time, key string, until time.Time) {
	if old, ok := m[key]; !ok || until.After(old) {
		m[key] = until
	}
}

func (rv *revocations) add(key string, until time.Time) {
	rv.mu.Lock()
	extend(rv.sessions, key, until)
	rv.mu.Unlock()
}

func (rv *revocations) addSID(sid string, until time.Time) {
	rv.mu.Lock()
	extend(rv.sids, sid, until)
	rv.mu.Unlock()
}

func (rv *revocations) addSub(sub string, at, until time.Time) {
	rv.mu.Lock()
	old := rv.subs[sub]
	rv.subs[sub] = subRevocation{at: maxTime(old.at, at), until: maxTime(old.until, until)}
	rv.mu.Unlock()
}

func (rv *revocations) issue(sid string, until time.Time) {
	rv.mu.Lock()
	extend(rv.issued, sid, until)
	rv.mu.Unlock()
}

func (rv *revocations) wasIssued(sid string, now time.Time) bool {
	rv.mu.RLock()
	until, ok := rv.issued[sid]
	rv.mu.RUnlock()
	return ok && now.Before(until)
}

// jtiSeen reports whether a logout token's jti was recorded (a replay).
func (rv *revocations) jtiSeen(jti string, now time.Time) bool {
	rv.mu.RLock()
	until, ok := rv.jtis[jti]
	rv.mu.RUnlock()
	return ok && now.Before(until)
}

// recordJTI remembers a logout token's jti until it would expire.
func (rv *revocations) recordJTI(jti string, until time.Time) {
	rv.mu.Lock()
	extend(rv.jtis, jti, until)
	rv.mu.Unlock()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// has reports whether the session with this hashed id was ended.
func (rv *revocations) has(key string, now time.Time) bool {
	rv.mu.RLock()
	until, ok := rv.sessions[key]
	rv.mu.RUnlock()
	return ok && now.Before(until)
}

// ended reports whether s was ended by any route: its id, its provider
// session, or a logout of all its subject's earlier sessions.
func (rv *revocations) ended(s *session, now time.Time) bool {
	rv.mu.RLock()
	defer rv.mu.RUnlock()
	if until, ok := rv.sessions[s.hkey()]; ok && now.Before(until) {
		return true
	}
	if s.SID != "" {
		if until, ok := rv.sids[s.SID]; ok && now.Before(until) {
			return true
		}
	}
	if r, ok := rv.subs[s.Subject]; ok && now.Before(r.until) && s.Created <= r.at.UnixMilli() {
		return true
	}
	return false
}

func (rv *revocations) sweep(now time.Time) {
	rv.mu.Lock()
	// A panic below must not leave the lock held: Safely recovers it and
	// every request would then wait forever.
	defer rv.mu.Unlock()
	for _, m := range []map[string]time.Time{rv.sessions, rv.sids, rv.jtis, rv.issued} {
		for k, until := range m {
			if !now.Before(until) {
				delete(m, k)
			}
		}
	}
	for k, r := range rv.subs {
		if !now.Before(r.until) {
			delete(rv.subs, k)
		}
	}
}

// sharedState outlives config reloads (it lives in a caddy.UsagePool keyed by
// issuer, client and store), so a reload keeps memory sessions, revocations
// and refreshes in flight.
type sharedState struct {
	revoked  *revocations
	memory   *memoryStore
	refresh  *refreshState
	cancel   context.CancelFunc
	sweeping sync.WaitGroup
}

// sweepInterval is how often expired revocations, memory sessions and
// refresh results are dropped.
const sweepInterval = time.Minute

func newSharedState(now func() time.Time, logger *zap.Logger) *sharedState {
	ctx, cancel := context.WithCancel(context.Background())
	st := &sharedState{
		revoked: newRevocations(),
		memory:  newMemoryStore(now),
		refresh: newRefreshState(),
		cancel:  cancel,
	}
	sweepers := []struct {
		name  string
		sweep func(time.Time)
	}{
		{"ended sessions sweeper", st.revoked.sweep},
		{"memory sessions sweeper", st.memory.sweep},
		{"refresh results sweeper", st.refresh.sweep},
	}
	st.sweeping.Go(func() {
		background.Every(ctx, sweepInterval, logger, "session sweeper", func() {
			n := now()
			// Each under its own recover: a bug in one never stops another.
			for _, sw := range sweepers {
				background.Safely(logger, sw.name, func() { sw.sweep(n) })
			}
		})
	})
	return st
}

// Destruct implements caddy.Destructor: the last config using this state is
// gone.
func (st *sharedState) Destruct() error {
	st.cancel()
	st.sweeping.Wait()
	return nil
}
