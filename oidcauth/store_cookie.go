package oidcauth

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// purposeSession binds sealed session cookies to their use.
const purposeSession = "bff session v1"

// cookieStore seals the whole session into the cookie: no server state but
// the list of ended sessions, so a copy of an old cookie is dead too.
type cookieStore struct {
	keys *keyring
	ends endings
	now  func() time.Time

	// opened caches recently opened cookies, so the hot path of a busy user
	// skips the AEAD and JSON work; keyed by the full sealed value, bounded.
	mu     sync.RWMutex
	opened map[string]*session
}

// maxOpenedCache bounds the opened-cookie cache (entries, not bytes; a
// sealed value is a few KiB at most, see maxCookieBytes).
const maxOpenedCache = 4096

func newCookieStore(keys *keyring, ends endings, now func() time.Time) *cookieStore {
	return &cookieStore{keys: keys, ends: ends, now: now, opened: make(map[string]*session)}
}

func (cs *cookieStore) load(ctx context.Context, value string) (*session, error) {
	cs.mu.RLock()
	s, ok := cs.opened[value]
	cs.mu.RUnlock()
	if !ok {
		pt, err := cs.keys.open(purposeSession, value)
		if err != nil {
			return nil, errNoSession
		}
		s = new(session)
		if err := json.Unmarshal(pt, s); err != nil || s.ID == "" || s.Subject == "" {
			return nil, errNoSession
		}
		s.key = hashID(s.ID)
		cs.mu.Lock()
		if len(cs.opened) >= maxOpenedCache {
			clear(cs.opened) // cheap and bounded; the next requests re-open
		}
		cs.opened[value] = s
		cs.mu.Unlock()
	}
	ended, err := cs.ends.ended(ctx, s)
	if err != nil {
		return nil, err // fail closed: 503
	}
	if ended {
		return nil, errNoSession
	}
	return s, nil
}

func (cs *cookieStore) save(ctx context.Context, s *session, create bool, _ time.Time) (string, error) {
	if !create {
		ended, err := cs.ends.ended(ctx, s)
		if err != nil {
			return "", err
		}
		if ended {
			return "", errSessionEnded
		}
	}
	pt, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return cs.keys.seal(purposeSession, pt), nil
}

func (cs *cookieStore) remove(ctx context.Context, s *session, until time.Time) error {
	return cs.ends.endSession(ctx, s, until)
}
