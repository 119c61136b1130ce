package oidcauth

import (
	"context"
	"errors"
	"sync"
	"time"
)

var (
	// errNoSession: the cookie names no live session (absent, unreadable,
	// expired, ended). The user is anonymous.
	errNoSession = errors.New("no session")
	// errSessionEnded: the session was ended (logout, back-channel) while a
	// request was working on it; nothing may revive it.
	errSessionEnded = errors.New("session ended")
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
	// before `until`.
	remove(ctx context.Context, s *session, until time.Time) error
}

// revocations remembers ended session ids (hashed) until the sessions would
// have expired anyway; the stateless cookie store needs it because a copy of
// an old cookie stays cryptographically valid.
type revocations struct {
	mu sync.RWMutex
	m  map[string]time.Time
}

func newRevocations() *revocations { return &revocations{m: make(map[string]time.Time)} }

func (rv *revocations) add(key string, until time.Time) {
	rv.mu.Lock()
	if old, ok := rv.m[key]; !ok || until.After(old) {
		rv.m[key] = until
	}
	rv.mu.Unlock()
}

func (rv *revocations) has(key string, now time.Time) bool {
	rv.mu.RLock()
	until, ok := rv.m[key]
	rv.mu.RUnlock()
	return ok && now.Before(until)
}

func (rv *revocations) sweep(now time.Time) {
	rv.mu.Lock()
	for k, until := range rv.m {
		if !now.Before(until) {
			delete(rv.m, k)
		}
	}
	rv.mu.Unlock()
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

func newSharedState(now func() time.Time) *sharedState {
	ctx, cancel := context.WithCancel(context.Background())
	st := &sharedState{
		revoked: newRevocations(),
		memory:  newMemoryStore(now),
		refresh: newRefreshState(),
		cancel:  cancel,
	}
	st.sweeping.Add(1)
	go st.sweepLoop(ctx, now)
	return st
}

func (st *sharedState) sweepLoop(ctx context.Context, now func() time.Time) {
	defer st.sweeping.Done()
	defer func() { _ = recover() }() // a sweep bug must not crash the server
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n := now()
			st.revoked.sweep(n)
			st.memory.sweep(n)
			st.refresh.sweep(n)
		}
	}
}

// Destruct implements caddy.Destructor: the last config using this state is
// gone.
func (st *sharedState) Destruct() error {
	st.cancel()
	st.sweeping.Wait()
	return nil
}
