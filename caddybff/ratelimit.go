package caddybff

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bff/caddy-bff/internal/health"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/redisconf"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// Rate limit stores and failure modes.
const (
	storeMemory = "memory"
	storeRedis  = "redis"
	failOpen    = "open"
	failClosed  = "closed"
)

const (
	// defaultZone names the budget and the policy in the RateLimit
	// headers.
	defaultZone = "default"
	// maxRateCount bounds n in `rate` and burst: the emission interval
	// stays at least 1µs (Redis keeps microseconds) and the bucket's
	// theoretical arrival time fits a float64 integer in Lua and an int64
	// of nanoseconds in Go.
	maxRateCount = 1_000_000
	maxZoneLen   = 64
	// storeRetryAfter is the Retry-After, in seconds, of a 503 when the
	// store is unavailable.
	storeRetryAfter = 5
	// warnEvery bounds how often a failing store is logged.
	warnEvery = 10 * time.Second
	// ipv6PrefixBits is the prefix an anonymous IPv6 client is limited
	// by: one subscriber usually holds a whole /64 (RFC 6177, RFC 7934),
	// so limiting single addresses would let it rotate freely.
	ipv6PrefixBits = 64
	// keyBufSize is the stack buffer keys are built in.
	keyBufSize = 128
)

// RateLimit limits how often each user (or, for anonymous requests, each
// client IP) may call the routes it guards, with a token bucket per key:
// `burst` requests at once, refilled at `rate`. It must run after
// oidc_auth, which identifies the user.
//
// Every response carries the policy and the caller's remaining budget in
// the `RateLimit-Policy` and `RateLimit` header fields of
// draft-ietf-httpapi-ratelimit-headers-09, such as
// `RateLimit-Policy: "default";q=40;w=2` and
// `RateLimit: "default";r=39;t=1` (t: seconds until the bucket is full
// again; RateLimit is left out when the store could not answer). Over the
// limit, it answers 429 with a problem body and `Retry-After`, and the
// request goes no further.
//
// With store redis, every gateway with the same configuration and Redis
// shares one budget per key. If Redis cannot be reached within its
// timeout, requests are refused with 503 (fail closed) unless `fail open`
// lets them through; after 3 failures in a row, Redis is tried again once
// a second while the other requests fail (or pass) at once.
type RateLimit struct {
	// Rate is the sustained rate, as `<n>r/<unit>` with unit s, m or h:
	// `20r/s`, `600r/m`. n is from 1 to 1000000. Required.
	Rate string `json:"rate,omitempty"`

	// Burst is how many requests a key may make at once, from 1 to
	// 1000000. Default: n of rate. The RateLimit-Policy header announces
	// it as the quota q, over the window w in which an empty bucket fills
	// up again (rounded up to whole seconds).
	Burst int `json:"burst,omitempty"`

	// Key is what a budget belongs to: a placeholder such as
	// `{http.request.header.X-API-Key}` or `{http.auth.user.id}`. Requests
	// for which it is empty are limited by client IP. Default: the user
	// oidc_auth identified, and the client IP for anonymous requests. The
	// client IP is the one Caddy determines, honouring the server's
	// `trusted_proxies`; IPv6 clients are limited by their /64. A key the
	// client chooses freely (a header it sends) lets it pick a fresh
	// budget per request: key by something authenticated.
	Key string `json:"key,omitempty"`

	// Zone names the budget: rate limits with the same zone, rate, burst
	// and key share their budgets (within a process with store memory,
	// across gateways with store redis). It is also the policy's name in
	// the RateLimit headers. Letters, digits, `.`, `_` and `-`. Default:
	// "default".
	Zone string `json:"zone,omitempty"`

	// Store keeps the buckets: "memory" (default; this process only,
	// kept across config reloads) or "redis" (shared by every gateway).
	Store string `json:"store,omitempty"`

	// Fail says what happens to requests when Redis is down or slow:
	// "closed" (default) refuses them with 503, "open" lets them through
	// unlimited and logs a warning (at most every 10s). Store redis only.
	Fail string `json:"fail,omitempty"`

	// Redis configures the connection of store redis. Default: a server
	// on 127.0.0.1:6379, keys prefixed with "bff:". Buckets are the keys
	// `<key_prefix>rl:<SHA-256 of zone, policy and key>`: user ids and IP
	// addresses are not stored. Each expires once its bucket is full
	// again.
	Redis *redisconf.Config `json:"redis,omitempty"`

	logger   *zap.Logger
	zone     string
	interval time.Duration
	burst    int
	window   int64
	// policy is the RateLimit-Policy value, the same on every response.
	policy  string
	store   limiter
	release func()
	fail    string
	// rejected counts a 429 in zone.
	rejected func()

	// Failing-store log throttle: when the last message was logged, and
	// how many were held back since.
	lastWarn   atomic.Int64
	suppressed atomic.Int64

	// now is the clock; tests replace it after Provision. Store redis
	// uses the Redis server's clock instead, the same for every gateway.
	now func() time.Time
}

// CaddyModule returns the Caddy module information.
func (*RateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bff_rate_limit",
		New: func() caddy.Module { return new(RateLimit) },
	}
}

// Provision applies defaults and takes the store: the memory buckets
// shared with the previous config when its settings are the same, or a
// Redis client (connections are made on first use).
func (rl *RateLimit) Provision(ctx caddy.Context) error {
	rl.logger = ctx.Logger()
	rl.now = time.Now
	n, per, err := rl.check()
	if err != nil {
		return err
	}
	// The same interval, in whole microseconds, in both stores.
	rl.interval = time.Duration(per.Microseconds()/int64(n)) * time.Microsecond
	rl.burst = rl.Burst
	if rl.burst == 0 {
		rl.burst = n
	}
	tolerance := time.Duration(rl.burst) * rl.interval
	rl.window = ceilSeconds(tolerance)
	rl.zone = rl.Zone
	if rl.zone == "" {
		rl.zone = defaultZone
	}
	if err := metrics.Register(ctx); err != nil {
		return fmt.Errorf("bff_rate_limit: %w", err)
	}
	rl.rejected = metrics.RateLimitRejection(rl.zone)
	rl.policy = `"` + rl.zone + `";q=` + strconv.Itoa(rl.burst) + ";w=" + strconv.FormatInt(rl.window, 10)
	rl.fail = rl.Fail
	if rl.fail == "" {
		rl.fail = failClosed
	}

	// Buckets are shared only between limits that mean the same thing by
	// them; the key's kind ("u:", "ip:", "k:") keeps users, addresses and
	// custom keys apart within one.
	identity := fmt.Sprintf("bff_rate_limit\x00v1\x00%s\x00%d\x00%d\x00%s\x00",
		rl.zone, rl.interval.Microseconds(), rl.burst, rl.Key)

	if rl.Store == storeRedis {
		cfg := rl.Redis
		if cfg == nil {
			cfg = new(redisconf.Config)
		}
		res, err := cfg.Resolve()
		if err != nil {
			return fmt.Errorf("bff_rate_limit: %w", err)
		}
		client, release, err := res.Client()
		if err != nil {
			return fmt.Errorf("bff_rate_limit: redis: %w", err)
		}
		unregister := health.Register("redis "+res.Name(), res.Probe(client))
		rl.release = func() { unregister(); release() }
		rl.store = newRedisStore(client, res, identity, rl.interval, rl.burst)
		return nil
	}

	poolKey := "memory\x00" + identity
	v, _, err := memoryBuckets.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return newMemoryStore(rl.interval, rl.burst, maxMemoryBuckets), nil
	})
	if err != nil {
		return fmt.Errorf("bff_rate_limit: %w", err)
	}
	rl.release = func() { _, _ = memoryBuckets.Delete(poolKey) }
	rl.store = v.(*memoryStore)
	return nil
}

// memoryBuckets keeps the memory store's buckets across config reloads:
// a reload must not hand every client a fresh budget.
var memoryBuckets = caddy.NewUsagePool()

// Validate checks the configuration.
func (rl *RateLimit) Validate() error {
	_, _, err := rl.check()
	return err
}

// check validates the configuration and returns the parsed rate.
func (rl *RateLimit) check() (int, time.Duration, error) {
	if rl.Rate == "" {
		return 0, 0, errors.New("bff_rate_limit: rate is required")
	}
	n, per, err := parseRate(rl.Rate)
	if err != nil {
		return 0, 0, fmt.Errorf("bff_rate_limit: rate: %w", err)
	}
	if rl.Burst < 0 || rl.Burst > maxRateCount {
		return 0, 0, fmt.Errorf("bff_rate_limit: burst %d is out of range: need 1 to %d", rl.Burst, maxRateCount)
	}
	if rl.Zone != "" && !validZone(rl.Zone) {
		return 0, 0, fmt.Errorf("bff_rate_limit: zone %q: want up to %d letters, digits, '.', '_' or '-'", rl.Zone, maxZoneLen)
	}
	if rl.Key != "" && strings.TrimSpace(rl.Key) == "" {
		return 0, 0, errors.New("bff_rate_limit: key is blank")
	}
	switch rl.Store {
	case "", storeMemory:
		if rl.Fail != "" {
			return 0, 0, errors.New("bff_rate_limit: fail does not apply to store memory (it cannot fail)")
		}
		if rl.Redis != nil {
			return 0, 0, errors.New("bff_rate_limit: redis does not apply to store memory: set store redis")
		}
	case storeRedis:
		switch rl.Fail {
		case "", failOpen, failClosed:
		default:
			return 0, 0, fmt.Errorf("bff_rate_limit: fail %q: want open or closed", rl.Fail)
		}
	default:
		return 0, 0, fmt.Errorf("bff_rate_limit: unknown store %q: want memory or redis", rl.Store)
	}
	return n, per, nil
}

// parseRate parses `<n>r/<s|m|h>`.
func parseRate(s string) (int, time.Duration, error) {
	num, unit, ok := strings.Cut(s, "r/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not <n>r/<s|m|h>, such as 20r/s", s)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return 0, 0, fmt.Errorf("%q: unit %q is not s, m or h", s, unit)
	}
	// Digits only: no sign, no spaces, no "0x".
	if num == "" || len(num) > 7 || strings.Trim(num, "0123456789") != "" {
		return 0, 0, fmt.Errorf("%q: count %q is not a number from 1 to %d", s, num, maxRateCount)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > maxRateCount {
		return 0, 0, fmt.Errorf("%q: count %q is not a number from 1 to %d", s, num, maxRateCount)
	}
	return n, per, nil
}

func validZone(z string) bool {
	if z == "" || len(z) > maxZoneLen {
		return false
	}
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Cleanup releases the store.
func (rl *RateLimit) Cleanup() error {
	if rl.release != nil {
		rl.release()
		rl.release = nil
	}
	return nil
}

// ServeHTTP takes one token from the caller's bucket and calls next, or
// answers 429 when the bucket is empty.
func (rl *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Both header values share one allocation; each slice is capped so
	// that appending to one cannot write into the other. The keys are in
	// canonical form: Set would allocate to canonicalize them.
	h := w.Header()
	vals := make([]string, 2)
	vals[0] = rl.policy
	h["Ratelimit-Policy"] = vals[0:1:1]

	var buf [keyBufSize]byte
	key := rl.appendKey(buf[:0], r)
	// The stores we ship are called concretely: through the interface the
	// key would escape to the heap (one more allocation per request). Any
	// other limiter goes through the interface.
	var (
		d   decision
		err error
	)
	switch s := rl.store.(type) {
	case *memoryStore:
		d, err = s.take(r.Context(), key, rl.now())
	case *redisStore:
		d, err = s.take(r.Context(), key, rl.now())
	default:
		d, err = rl.store.take(r.Context(), key, rl.now())
	}
	if err != nil {
		rl.storeFailed(err)
		if rl.fail == failOpen {
			return next.ServeHTTP(w, r)
		}
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "rate limiting is unavailable; try again shortly", RetryAfter: storeRetryAfter})
		return nil
	}

	vals[1] = rl.limitHeader(d)
	h["Ratelimit"] = vals[1:2:2]
	if d.allowed {
		return next.ServeHTTP(w, r)
	}
	rl.rejected()
	wait := max(ceilSeconds(d.retryAfter), 1)
	if ce := rl.logger.Check(zapcore.DebugLevel, "rate limited"); ce != nil {
		ce.Write(zap.String("zone", rl.zone), zap.Int64("retry_after", wait))
	}
	problem.Write(w, r, problem.Details{Status: http.StatusTooManyRequests,
		Detail: "rate limit exceeded; retry in " + strconv.FormatInt(wait, 10) + "s", RetryAfter: int(wait)})
	return nil
}

// limitHeader is the RateLimit value for d: the policy, the remaining
// quota r and the seconds t until the bucket is full again.
func (rl *RateLimit) limitHeader(d decision) string {
	var b [96]byte
	out := append(b[:0], '"')
	out = append(out, rl.zone...)
	out = append(out, `";r=`...)
	out = strconv.AppendInt(out, max(d.remaining, 0), 10)
	out = append(out, ";t="...)
	out = strconv.AppendInt(out, ceilSeconds(d.reset), 10)
	return string(out)
}

// appendKey appends the bucket key of r to buf: "u:<sub>" for the user
// oidc_auth identified (default key), "k:<value>" for a configured key,
// and "ip:<client ip>" when either is empty.
func (rl *RateLimit) appendKey(buf []byte, r *http.Request) []byte {
	if rl.Key == "" {
		if id := oidcauth.IdentityFrom(r); id != nil && id.Subject != "" {
			return append(append(buf, "u:"...), id.Subject...)
		}
	} else if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if v := repl.ReplaceAll(rl.Key, ""); v != "" {
			return append(append(buf, "k:"...), v...)
		}
	}
	return appendClientIP(append(buf, "ip:"...), r)
}

// appendClientIP appends the client IP Caddy determined (honouring
// trusted_proxies), IPv6 clients as their /64.
func appendClientIP(buf []byte, r *http.Request) []byte {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		// Not prepared by Caddy's server: the peer.
		ip = r.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return append(buf, ip...)
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(ipv6PrefixBits)
		return p.AppendTo(buf)
	}
	return addr.AppendTo(buf)
}

// storeFailed logs a store failure, at most once per warnEvery with the
// count of those held back: an outage must not flood the log.
func (rl *RateLimit) storeFailed(err error) {
	now := rl.now().UnixNano()
	last := rl.lastWarn.Load()
	if last != 0 && now-last < int64(warnEvery) || !rl.lastWarn.CompareAndSwap(last, now) {
		rl.suppressed.Add(1)
		return
	}
	fields := []zap.Field{
		zap.String("zone", rl.zone),
		zap.String("store", storeRedis),
		zap.Int64("suppressed", rl.suppressed.Swap(0)),
		zap.Error(err),
	}
	if rl.fail == failOpen {
		rl.logger.Warn("rate limit store unavailable; requests pass unlimited", append(fields, zap.String("outcome", "fail_open"))...)
		return
	}
	rl.logger.Error("rate limit store unavailable; requests refused", append(fields, zap.String("outcome", "fail_closed"))...)
}

// ceilSeconds rounds d up to whole seconds (delay-seconds, RFC 9110
// §10.2.3).
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RateLimit)(nil)
	_ caddy.Validator             = (*RateLimit)(nil)
	_ caddy.CleanerUpper          = (*RateLimit)(nil)
	_ caddyhttp.MiddlewareHandler = (*RateLimit)(nil)
	_ caddyfile.Unmarshaler       = (*RateLimit)(nil)
)
