package oidcauth

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// chunksOf is how many session cookies writeSessionCookie splits a sealed
// value into.
func chunksOf(sealed string) int { return (len(sealed) + chunkSize - 1) / chunkSize }

// sizedCookieSession grows testSession with an incompressible claim until
// its sealed cookie spans want chunks, and returns it with its sealed value.
func sizedCookieSession(tb testing.TB, cs *cookieStore, want int) (*session, string) {
	tb.Helper()
	var pool strings.Builder
	for pool.Len() < maxCookieValue {
		pool.WriteString(newSessionID()) // random base64url: DEFLATE barely shrinks it
	}
	s := testSession()
	for n := 0; n <= pool.Len(); n += 256 {
		if n > 0 {
			s.Claims["blob"] = pool.String()[:n]
		}
		sealed, err := cs.save(context.Background(), s, true, time.Time{})
		if err != nil {
			break
		}
		if got := chunksOf(sealed); got == want {
			return s, sealed
		} else if got > want {
			break
		}
	}
	tb.Fatalf("no session seals to %d chunks", want)
	return nil, ""
}

func benchCookieStore(tb testing.TB) *cookieStore {
	return newCookieStore(mustKeyring(tb, key1), memoryEndings{rv: newRevocations(), now: time.Now}, time.Now)
}

// BenchmarkCookieStoreLoad measures opening a sealed session cookie of 1,
// 3 and 8 chunks. cached: the same cookie again, served by the store's
// opened-cookie cache (the busy user's hot path). cold: the cache entry
// is dropped after each load, so every load opens the AEAD, inflates and
// decodes JSON (a first request, or a cache evicted by other users).
func BenchmarkCookieStoreLoad(b *testing.B) {
	ctx := context.Background()
	for _, chunks := range []int{1, 3, 8} {
		cs := benchCookieStore(b)
		_, sealed := sizedCookieSession(b, cs, chunks)
		b.Run(fmt.Sprintf("chunks=%d/cached", chunks), func(b *testing.B) {
			if _, err := cs.load(ctx, sealed); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(sealed)))
			for b.Loop() {
				if _, err := cs.load(ctx, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("chunks=%d/cold", chunks), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(sealed)))
			for b.Loop() {
				cs.opened.Delete(sealed)
				if _, err := cs.load(ctx, sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCookieStoreTouch measures a request that moves the session's
// last-seen time: a cached load, then a save that seals a new cookie of 1,
// 3 or 8 chunks (JSON, DEFLATE, AEAD).
func BenchmarkCookieStoreTouch(b *testing.B) {
	ctx := context.Background()
	for _, chunks := range []int{1, 3, 8} {
		cs := benchCookieStore(b)
		_, sealed := sizedCookieSession(b, cs, chunks)
		b.Run(fmt.Sprintf("chunks=%d", chunks), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(sealed)))
			for b.Loop() {
				s, err := cs.load(ctx, sealed)
				if err != nil {
					b.Fatal(err)
				}
				t := *s
				t.LastSeen++
				if _, err := cs.save(ctx, &t, false, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

const sizingSessions = 100_000

// fillMemoryStore saves n sessions like testSession's into a fresh memory
// store, each alive until the given time.
func fillMemoryStore(tb testing.TB, n int, until time.Time) *memoryStore {
	tb.Helper()
	ms := newMemoryStore(time.Now)
	v := memoryView{ms: ms, keys: mustKeyring(tb, key1)}
	ctx := context.Background()
	for i := range n {
		s := testSession()
		s.Subject = fmt.Sprintf("user-%d", i)
		if _, err := v.save(ctx, s, true, until); err != nil {
			tb.Fatal(err)
		}
	}
	return ms
}

// BenchmarkMemoryStoreSize measures the heap a memory store holds per
// session at 100,000 sessions (sealed record, meta, map entry), for
// sizing a gateway's memory; each iteration fills a fresh store.
func BenchmarkMemoryStoreSize(b *testing.B) {
	until := time.Now().Add(time.Hour)
	var perSession float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		ms := fillMemoryStore(b, sizingSessions, until)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(ms)
		perSession = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / sizingSessions
	}
	b.ReportMetric(perSession, "B/session")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sizingSessions), "ns/save")
}

// BenchmarkMemoryStoreSweep measures one sweep over 100,000 live sessions
// (none expired: the scan the sweeper pays every interval, under the
// store's write lock).
func BenchmarkMemoryStoreSweep(b *testing.B) {
	ms := fillMemoryStore(b, sizingSessions, time.Now().Add(time.Hour))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ms.sweep(now)
	}
	if len(ms.m) != sizingSessions {
		b.Fatalf("sweep removed live sessions: %d left", len(ms.m))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/sweep")
}
