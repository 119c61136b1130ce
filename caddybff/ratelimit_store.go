package caddybff

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/internal/redisconf"
)

// limiter keeps token buckets. take spends one token of key's bucket if it
// has one; an error means the store could not decide.
type limiter interface {
	take(ctx context.Context, key []byte, now time.Time) (decision, error)
}

// decision is the outcome of one take.
type decision struct {
	allowed bool
	// remaining is how many more requests the bucket allows now.
	remaining int64
	// retryAfter is how long until the next request would be allowed
	// (when not allowed).
	retryAfter time.Duration
	// reset is how long until the bucket is full again.
	reset time.Duration
}

// gcra is the generic cell rate algorithm (ITU-T I.371), a token bucket
// kept as one number: the theoretical arrival time tat of the next
// request when requests come at the sustained rate, one per interval. A
// request at now is allowed if it comes no earlier than tolerance
// (burst × interval) before the tat it would set. A tat in the past is a
// full bucket, the same as no bucket at all, so buckets need no refill
// and expire when full. The Redis script below is the same algorithm.
func gcra(tat, now, interval, tolerance int64) (int64, decision) {
	tat = max(tat, now)
	next := tat + interval
	if allowAt := next - tolerance; now < allowAt {
		return tat, decision{retryAfter: time.Duration(allowAt - now), reset: time.Duration(tat - now)}
	}
	return next, decision{
		allowed:   true,
		remaining: (tolerance - (next - now)) / interval,
		reset:     time.Duration(next - now),
	}
}

const (
	// maxMemoryBuckets bounds the buckets of one memory store: at about
	// 150 bytes each, 15 MB. Beyond it, the fullest buckets are dropped,
	// which only ever grants their keys a full budget early.
	maxMemoryBuckets = 100_000
	memoryShards     = 32
	// memorySweepEvery is how often a shard drops its full buckets.
	memorySweepEvery = time.Minute
	// maxMemoryKeyLen bounds the bytes a bucket's key holds; longer keys
	// (a custom key from a header) are kept as their SHA-256.
	maxMemoryKeyLen = 96
	// evictSample is how many buckets are compared to pick one to drop
	// when a shard is full.
	evictSample = 8
)

// memoryStore keeps buckets in this process, sharded to spread lock
// contention. It lives in memoryBuckets across config reloads.
type memoryStore struct {
	interval  int64 // ns
	tolerance int64 // ns
	shardCap  int
	seed      maphash.Seed
	shards    [memoryShards]memoryShard
}

type memoryShard struct {
	mu      sync.Mutex
	buckets map[string]*memoryBucket
	// peak is the most buckets held since the map was last rebuilt: Go
	// maps do not shrink.
	peak      int
	nextSweep int64
}

// memoryBucket is a pointer target so that a request of a known key
// updates it in place, without allocating.
type memoryBucket struct{ tat int64 }

func newMemoryStore(interval time.Duration, burst, capacity int) *memoryStore {
	ms := &memoryStore{
		interval:  int64(interval),
		tolerance: int64(burst) * int64(interval),
		shardCap:  max(capacity/memoryShards, 1),
		seed:      maphash.MakeSeed(),
	}
	for i := range ms.shards {
		ms.shards[i].buckets = make(map[string]*memoryBucket)
	}
	return ms
}

func (ms *memoryStore) take(_ context.Context, key []byte, now time.Time) (decision, error) {
	if len(key) > maxMemoryKeyLen {
		sum := sha256.Sum256(key)
		var b [2 + 43]byte // "h:" and sha256's 32 bytes in base64url
		key = base64.RawURLEncoding.AppendEncode(append(b[:0], "h:"...), sum[:])
	}
	t := now.UnixNano()
	s := &ms.shards[maphash.Bytes(ms.seed, key)%memoryShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[string(key)] // no allocation for a lookup
	tat := t
	if b != nil {
		tat = b.tat
	}
	next, d := gcra(tat, t, ms.interval, ms.tolerance)
	if d.allowed {
		if b != nil {
			b.tat = next
		} else {
			s.insert(string(key), next, t, ms.shardCap)
		}
	}
	return d, nil
}

// insert adds a bucket, first dropping full buckets once per
// memorySweepEvery and, when the shard is at capacity, the fullest of a
// sample of buckets (map iteration starts at random).
func (s *memoryShard) insert(key string, tat, now int64, capacity int) {
	if now >= s.nextSweep {
		s.sweep(now)
		s.nextSweep = now + int64(memorySweepEvery)
	}
	if len(s.buckets) >= capacity {
		var (
			victim string
			least  int64
			n      int
		)
		for k, b := range s.buckets {
			if n == 0 || b.tat < least {
				victim, least = k, b.tat
			}
			if n++; n == evictSample {
				break
			}
		}
		delete(s.buckets, victim)
	}
	s.buckets[key] = &memoryBucket{tat: tat}
	s.peak = max(s.peak, len(s.buckets))
}

// sweep drops full buckets, and rebuilds the map when it holds far fewer
// than it once did.
func (s *memoryShard) sweep(now int64) {
	for k, b := range s.buckets {
		if b.tat <= now {
			delete(s.buckets, k)
		}
	}
	if s.peak > 1024 && len(s.buckets) < s.peak/4 {
		m := make(map[string]*memoryBucket, len(s.buckets))
		for k, b := range s.buckets {
			m[k] = b
		}
		s.buckets = m
		s.peak = len(m)
	}
}

// len is the number of buckets held.
func (ms *memoryStore) len() int {
	n := 0
	for i := range ms.shards {
		s := &ms.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// Destruct implements caddy.Destructor: the buckets are garbage once the
// last config using them is gone.
func (*memoryStore) Destruct() error { return nil }

// gcraScript is gcra in Lua, atomic in Redis, on the Redis server's clock
// (the same for every gateway), in microseconds: the largest theoretical
// arrival time stays below 2^53, exact in Lua's numbers.
//
// KEYS[1] is the bucket; ARGV[1] the interval in µs; ARGV[2] the burst.
// It returns {allowed (0 or 1), remaining, retry after µs, reset µs}.
var gcraScript = redis.NewScript(`
pcall(redis.replicate_commands) -- Redis < 5: write after TIME
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local next = tat + interval
local allow_at = next - tolerance
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local ttl = next - now
-- %.0f: tostring would round to 14 significant digits.
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil(ttl / 1000))
return {1, math.floor((tolerance - ttl) / interval), 0, ttl}
`)

// redisStore keeps buckets in Redis, one key each, shared by every
// gateway: one EVALSHA per request (EVAL once after a Redis restart).
type redisStore struct {
	client  redis.UniversalClient
	res     *redisconf.Resolved
	breaker breaker
	// prefix is `<key_prefix>rl:`; salt is hashed before the bucket key
	// so that limits with other settings never share a bucket.
	prefix     string
	salt       string
	intervalUs int64
	burst      int64
}

func newRedisStore(c redis.UniversalClient, res *redisconf.Resolved, salt string, interval time.Duration, burst int) *redisStore {
	return &redisStore{
		client:     c,
		res:        res,
		prefix:     res.KeyPrefix + "rl:",
		salt:       salt,
		intervalUs: interval.Microseconds(),
		burst:      int64(burst),
	}
}

// redisKey is the Redis key of a bucket: user ids and addresses appear
// only hashed.
func (rs *redisStore) redisKey(key []byte) string {
	// A copy, not hash.Hash.Write: the caller's key stays on its stack.
	sum := sha256.Sum256(append([]byte(rs.salt), key...))
	return rs.prefix + hex.EncodeToString(sum[:])
}

// take runs the script; now only drives the breaker (the buckets use the
// Redis server's clock).
func (rs *redisStore) take(ctx context.Context, key []byte, now time.Time) (decision, error) {
	t := now.UnixNano()
	if !rs.breaker.allow(t) {
		return decision{}, errBreakerOpen
	}
	ctx, cancel := rs.res.Ctx(ctx)
	defer cancel()
	v, err := gcraScript.Run(ctx, rs.client, []string{rs.redisKey(key)}, rs.intervalUs, rs.burst).Int64Slice()
	rs.breaker.record(t, err)
	if err != nil {
		return decision{}, fmt.Errorf("redis: %w", err)
	}
	if len(v) != 4 {
		return decision{}, fmt.Errorf("redis: rate limit script returned %d values, want 4", len(v))
	}
	return decision{
		allowed:    v[0] == 1,
		remaining:  v[1],
		retryAfter: time.Duration(v[2]) * time.Microsecond,
		reset:      time.Duration(v[3]) * time.Microsecond,
	}, nil
}

const (
	// breakerThreshold is how many Redis failures in a row open the
	// breaker: one slow reply should not refuse a second of traffic.
	breakerThreshold = 3
	// breakerCooldown is how long an open breaker fails requests at once
	// before one request probes Redis again.
	breakerCooldown = time.Second
)

var errBreakerOpen = errors.New("redis: unavailable, not called for 1s after repeated failures")

// breaker stops a gateway from waiting on a Redis that is down: each
// call would spend its dial retries (close to a second) before failing
// open or closed. After breakerThreshold failures in a row, requests fail
// at once, and one request per breakerCooldown probes Redis; the first
// success closes the breaker.
type breaker struct {
	failures  atomic.Int32
	openUntil atomic.Int64 // unix ns; 0 while closed
}

// allow reports whether a request at now may call Redis.
func (b *breaker) allow(now int64) bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	if now < until {
		return false
	}
	// The request that moves the deadline is the one probe.
	return b.openUntil.CompareAndSwap(until, now+int64(breakerCooldown))
}

// record counts the outcome of a call made at now.
func (b *breaker) record(now int64, err error) {
	if err == nil {
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		if b.openUntil.Load() != 0 {
			b.openUntil.Store(0)
		}
		return
	}
	if b.failures.Add(1) >= breakerThreshold {
		b.openUntil.Store(now + int64(breakerCooldown))
	}
}

// Interface guards
var (
	_ limiter          = (*memoryStore)(nil)
	_ limiter          = (*redisStore)(nil)
	_ caddy.Destructor = (*memoryStore)(nil)
)
