package caddybff

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGetOrFill: concurrent misses of one key fill once and share the
// token; a failed fill is not cached; another variant is another flight;
// a key without a session is never cached.
func TestGetOrFill(t *testing.T) {
	c := newTokenCache(10, time.Now)
	k := cacheKey{session: "s1", subject: "alice"}
	fresh := func(e *cachedToken) bool { return time.Now().Before(e.refreshAt) }
	var fills atomic.Int32
	release := make(chan struct{})
	fill := func() (*cachedToken, error) {
		fills.Add(1)
		<-release
		return &cachedToken{header: "Bearer one", refreshAt: time.Now().Add(time.Hour)}, nil
	}

	const n = 20
	var wg sync.WaitGroup
	var hits atomic.Int32
	got := make([]*cachedToken, n)
	for i := range n {
		wg.Go(func() {
			e, hit, err := c.getOrFill(k, fresh, nil, fill)
			if err != nil {
				t.Error(err)
			}
			if hit {
				hits.Add(1)
			}
			got[i] = e
		})
	}
	time.Sleep(50 * time.Millisecond) // let them all queue on the flight
	close(release)
	wg.Wait()
	if fills.Load() != 1 {
		t.Fatalf("%d fills for %d concurrent misses, want 1", fills.Load(), n)
	}
	for i, e := range got {
		if e != got[0] {
			t.Fatalf("caller %d got another token", i)
		}
	}
	if e, hit, _ := c.getOrFill(k, fresh, nil, fill); !hit || e != got[0] {
		t.Fatal("the filled token was not cached")
	}

	// A failure reaches the caller and leaves nothing behind.
	k2 := cacheKey{session: "s2", subject: "bob"}
	if _, _, err := c.getOrFill(k2, fresh, nil, func() (*cachedToken, error) { return nil, errUnavailable }); err != errUnavailable {
		t.Fatalf("error %v, want errUnavailable", err)
	}
	if c.get(k2) != nil {
		t.Fatal("a failed fill was cached")
	}

	// A token reuse refuses is filled again.
	stale := func(*cachedToken) bool { return false }
	before := fills.Load()
	if _, hit, _ := c.getOrFill(k, stale, func() string { return "v2" }, fill); hit || fills.Load() != before+1 {
		t.Fatalf("refused token: hit %v, %d fills", hit, fills.Load()-before)
	}

	// No session, no cache.
	anon := cacheKey{subject: "carol"}
	for range 2 {
		if _, hit, _ := c.getOrFill(anon, fresh, nil, fill); hit {
			t.Fatal("a token without a session came from the cache")
		}
	}
	if c.get(anon) != nil {
		t.Fatal("a token without a session was cached")
	}
}
