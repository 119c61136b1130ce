// Package bounded is the one size-bounded cache caddy-bff keeps in memory
// (opened cookies, decoded Redis sessions, minted and exchanged tokens):
// a map safe for concurrent use, read far more often than written, that
// never holds more than its limit however many clients there are.
package bounded

import "sync"

// Map is a map of at most Max entries. When a Put would exceed Max, it
// first drops the entries Stale reports (if set), then arbitrary ones (Go
// randomises map order), a tenth of Max at a time, so a full map does not
// pay for a sweep on every insert. Its zero value is not usable: use New.
type Map[K comparable, V any] struct {
	mu    sync.RWMutex
	m     map[K]V
	max   int
	stale func(V) bool
}

// New returns an empty Map of at most limit (at least 1) entries; stale,
// if not nil, tells entries that may go first.
func New[K comparable, V any](limit int, stale func(V) bool) *Map[K, V] {
	return &Map[K, V]{m: make(map[K]V), max: max(limit, 1), stale: stale}
}

// Get returns the entry of k. It does not allocate.
func (b *Map[K, V]) Get(k K) (V, bool) {
	b.mu.RLock()
	v, ok := b.m[k]
	b.mu.RUnlock()
	return v, ok
}

// Put stores v under k, making room first when the map is full.
func (b *Map[K, V]) Put(k K, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[k]; !ok && len(b.m) >= b.max {
		b.sweepLocked()
		if len(b.m) >= b.max {
			drop := max(b.max/10, 1)
			for k := range b.m {
				delete(b.m, k)
				if drop--; drop == 0 {
					break
				}
			}
		}
	}
	b.m[k] = v
}

// Delete removes the entry of k.
func (b *Map[K, V]) Delete(k K) {
	b.mu.Lock()
	delete(b.m, k)
	b.mu.Unlock()
}

// Len is the number of entries.
func (b *Map[K, V]) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.m)
}

// Sweep drops the stale entries and reports how many it dropped.
func (b *Map[K, V]) Sweep() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sweepLocked()
}

func (b *Map[K, V]) sweepLocked() int {
	if b.stale == nil {
		return 0
	}
	n := 0
	for k, v := range b.m {
		if b.stale(v) {
			delete(b.m, k)
			n++
		}
	}
	return n
}
