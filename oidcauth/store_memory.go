package oidcauth

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/caddy-bff/caddy-bff/internal/bounded"
)

// memoryStore keeps sessions in this process; the cookie carries only the
// random session id. The map is keyed by the id's hash and holds sealed
// records (see record), as the Redis store does: the id is not in it, and
// the tokens open only with the id a cookie carries. It outlives config
// reloads (sharedState); each config reaches it through a memoryView with
// its own keys.
type memoryStore struct {
	now func() time.Time
	mu  sync.RWMutex
	m   map[string]memoryEntry
}

type memoryEntry struct {
	raw   []byte
	meta  recordMeta
	until time.Time
}

func newMemoryStore(now func() time.Time) *memoryStore {
	return &memoryStore{now: now, m: make(map[string]memoryEntry)}
}

// memoryView is one config's store over the shared memoryStore.
type memoryView struct {
	ms   *memoryStore
	keys *keyring

	// decoded caches the session last opened per key with the record it
	// came from, as the Redis store's does: every request still looks the
	// entry up (an ending shows at once), but an unchanged record skips
	// the HKDF, the AEAD open and the JSON decode. It belongs to this view,
	// so a reload with other keys never serves what the old keys opened.
	decoded *bounded.Map[string, decodedMemory]
}

type decodedMemory struct {
	raw []byte // the entry's record; records are never modified, only replaced
	s   *session
}

func (v memoryView) load(_ context.Context, value string) (*session, error) {
	if len(value) != sessionIDLen {
		return nil, errNoSession
	}
	key := hashID(value)
	v.ms.mu.RLock()
	e, ok := v.ms.m[key]
	v.ms.mu.RUnlock()
	if !ok || !v.ms.now().Before(e.until) {
		return nil, errNoSession
	}
	if v.decoded != nil && len(e.raw) > 0 {
		if d, ok := v.decoded.Get(key); ok && len(d.raw) == len(e.raw) && &d.raw[0] == &e.raw[0] {
			return d.s, nil
		}
	}
	s, err := decodeRecord(v.keys, e.raw, value)
	if err != nil {
		return nil, errNoSession
	}
	if v.decoded != nil && len(e.raw) > 0 {
		v.decoded.Put(key, decodedMemory{raw: e.raw, s: s})
	}
	return s, nil
}

func (v memoryView) save(_ context.Context, s *session, create bool, until time.Time) (string, error) {
	raw, err := encodeRecord(v.keys, s)
	if err != nil {
		return "", err
	}
	key := s.hkey()
	v.ms.mu.Lock()
	defer v.ms.mu.Unlock()
	if _, ok := v.ms.m[key]; !ok && !create {
		return "", errSessionEnded
	}
	v.ms.m[key] = memoryEntry{raw: raw, meta: metaOf(s), until: until}
	return s.ID, nil
}

func (v memoryView) remove(_ context.Context, s *session, _ time.Time) error {
	v.ms.mu.Lock()
	delete(v.ms.m, s.hkey())
	v.ms.mu.Unlock()
	return nil
}

func (ms *memoryStore) sweep(now time.Time) {
	ms.mu.Lock()
	// A panic below must not leave the lock held: Safely recovers it and
	// every request would then wait forever.
	defer ms.mu.Unlock()
	for k, e := range ms.m {
		if !now.Before(e.until) {
			delete(ms.m, k)
		}
	}
}

// removeSessions ends every session of a subject, or of a provider session
// when sid is set (back-channel logout); it returns how many ended.
func (ms *memoryStore) removeSessions(sub, sid string) int {
	want, byMeta := digest("sub", sub), func(m recordMeta, w string) bool { return m.Sub == w }
	if sid != "" {
		want, byMeta = digest("sid", sid), func(m recordMeta, w string) bool { return m.SID == w }
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	n := 0
	for k, e := range ms.m {
		if byMeta(e.meta, want) {
			delete(ms.m, k)
			n++
		}
	}
	return n
}

// sessionsOf lists the sessions of a subject (their meta: no id, no token).
func (ms *memoryStore) sessionsOf(sub string) []recordMeta {
	want := digest("sub", sub)
	now := ms.now()
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	var out []recordMeta
	for _, e := range ms.m {
		if e.meta.Sub == want && now.Before(e.until) {
			out = append(out, e.meta)
		}
	}
	return out
}

// trimSessions ends a subject's oldest sessions beyond max and reports how
// many it ended.
func (ms *memoryStore) trimSessions(sub string, max int) int {
	want := digest("sub", sub)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var keys []string
	for k, e := range ms.m {
		if e.meta.Sub == want {
			keys = append(keys, k)
		}
	}
	if len(keys) <= max {
		return 0
	}
	// Newest first; the oldest beyond max go.
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(ms.m[b].meta.Created, ms.m[a].meta.Created) })
	for _, k := range keys[max:] {
		delete(ms.m, k)
	}
	return len(keys) - max
}
