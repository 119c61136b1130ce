package oidcauth

import (
	"context"
	"sync"
	"time"
)

// memoryStore keeps sessions in this process; the cookie carries only the
// random session id, and the map is keyed by its hash.
type memoryStore struct {
	now func() time.Time
	mu  sync.RWMutex
	m   map[string]memoryEntry
}

type memoryEntry struct {
	s     *session
	until time.Time
}

func newMemoryStore(now func() time.Time) *memoryStore {
	return &memoryStore{now: now, m: make(map[string]memoryEntry)}
}

func (ms *memoryStore) load(_ context.Context, value string) (*session, error) {
	if len(value) != 43 { // base64url of 32 bytes
		return nil, errNoSession
	}
	key := hashID(value)
	ms.mu.RLock()
	e, ok := ms.m[key]
	ms.mu.RUnlock()
	if !ok || !ms.now().Before(e.until) || e.s.ID != value {
		return nil, errNoSession
	}
	return e.s, nil
}

func (ms *memoryStore) save(_ context.Context, s *session, create bool, until time.Time) (string, error) {
	key := hashID(s.ID)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if _, ok := ms.m[key]; !ok && !create {
		return "", errSessionEnded
	}
	ms.m[key] = memoryEntry{s: s, until: until}
	return s.ID, nil
}

func (ms *memoryStore) remove(_ context.Context, s *session, _ time.Time) error {
	ms.mu.Lock()
	delete(ms.m, hashID(s.ID))
	ms.mu.Unlock()
	return nil
}

func (ms *memoryStore) sweep(now time.Time) {
	ms.mu.Lock()
	for k, e := range ms.m {
		if !now.Before(e.until) {
			delete(ms.m, k)
		}
	}
	ms.mu.Unlock()
}

// removeWhere ends every session matching f (back-channel logout by sub or
// sid); it returns how many ended.
func (ms *memoryStore) removeWhere(f func(*session) bool) int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	n := 0
	for k, e := range ms.m {
		if f(e.s) {
			delete(ms.m, k)
			n++
		}
	}
	return n
}
