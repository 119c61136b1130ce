// Package metrics holds caddy-bff's Prometheus collectors, under the
// namespace caddy_bff, and the helpers the modules count with. The
// collectors are built once per process and registered into each config's
// metrics registry by Register; Caddy's `metrics` handler or admin
// endpoint serves them.
//
// Every label value comes from a small fixed set (or, for the rate limit
// zone, from the config): never a user, a token or a path.
package metrics

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-bff/caddy-bff/internal/audit"
)

const namespace = "caddy_bff"

// other is the label value of anything outside a fixed set, so that a
// caller's mistake cannot grow the label space.
const other = "other"

// Provider calls: the call label of ProviderCall.
const (
	CallDiscovery     = "discovery"
	CallCodeExchange  = "code_exchange"
	CallRefresh       = "refresh"
	CallUserInfo      = "userinfo"
	CallRevocation    = "revocation"
	CallTokenExchange = "token_exchange"
	CallJWKS          = "jwks"
	CallPAR           = "par"
	CallIntrospection = "introspection"
)

// Reasons a session ends: the reason label of SessionsEnded.
const (
	EndLogout       = "logout"
	EndBackchannel  = "backchannel"
	EndFrontchannel = "frontchannel" // the provider's logout page framed ours with the sid
	EndExpired      = "expired"
	EndInvalidGrant = "invalid_grant"
	// EndReplaced: a new login in the same browser replaced the session.
	EndReplaced = "replaced"
	// EndAdmin: the session admin API ended it.
	EndAdmin = "admin"
	// EndLimit: a newer login beyond max_sessions_per_user ended it.
	EndLimit = "limit"
)

// Results of a token exchange: the result label of TokenExchange.
const (
	ExchangeSuccess     = "success"
	ExchangeRefused     = "refused"
	ExchangeUnavailable = "unavailable"
)

// Token cache modes: the mode label of TokenCache.
const (
	ModeMint     = "mint"
	ModeExchange = "exchange"
)

// What decided an authorisation: the reason label of Authz.
const (
	ReasonRule    = "rule"
	ReasonDefault = "default"
	ReasonPath    = "path"
)

var (
	endReasons      = []string{EndLogout, EndBackchannel, EndFrontchannel, EndExpired, EndInvalidGrant, EndReplaced, EndAdmin, EndLimit}
	exchangeResults = []string{ExchangeSuccess, ExchangeRefused, ExchangeUnavailable}
	cacheModes      = [...]string{ModeMint, ModeExchange}
	authzReasons    = [...]string{ReasonRule, ReasonDefault, ReasonPath}
	providerCalls   = []string{CallDiscovery, CallCodeExchange, CallRefresh, CallUserInfo,
		CallRevocation, CallTokenExchange, CallJWKS, CallPAR, CallIntrospection}
)

// durationBuckets are the provider latency histogram's buckets, in
// seconds: 1ms to 10s, the provider call timeout.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// The collectors, built once; only the helpers below change them.
var (
	sessionsCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "sessions_created_total",
		Help: "Sessions created by a successful login.",
	})
	sessionsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sessions_ended_total",
		Help: "Sessions ended, by reason (logout, backchannel, expired, invalid_grant).",
	}, []string{"reason"})
	tokenExchanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "token_exchanges_total",
		Help: "RFC 8693 token exchanges for bff_token, by result (success, refused, unavailable).",
	}, []string{"result"})
	tokenCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "token_cache_total",
		Help: "bff_token cache lookups, by mode (mint, exchange) and result (hit, miss).",
	}, []string{"mode", "result"})
	authzDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "authz_decisions_total",
		Help: "scope_authz decisions, by outcome (allow, deny) and reason (rule, default, path).",
	}, []string{"outcome", "reason"})
	rateLimitRejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "rate_limit_rejections_total",
		Help: "Requests bff_rate_limit answered with 429, by zone.",
	}, []string{"zone"})
	providerDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "provider_request_duration_seconds",
		Help:    "Latency of calls to the identity provider, by call and result (ok, error).",
		Buckets: durationBuckets,
	}, []string{"call", "result"})

	// The login and refresh counters belong to internal/audit, which counts
	// its entries.
	providerUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "provider_up",
		Help: "1 when the identity provider's discovery succeeded at its last check, by issuer.",
	}, []string{"issuer"})
	redisUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "redis_up",
		Help: "1 when Redis answered its last check, by address.",
	}, []string{"address"})

	collectors = append(audit.Collectors(), sessionsCreated, sessionsEnded,
		tokenExchanges, tokenCache, authzDecisions, rateLimitRejections, providerDuration, providerUp, redisUp)
)

// Children resolved once, so the helpers do a map or array lookup instead
// of hashing label values; read-only after init.
var (
	endCounters      = resolve(sessionsEnded, endReasons)
	exchangeCounters = resolve(tokenExchanges, exchangeResults)
	cacheCounters    [len(cacheModes)][2]prometheus.Counter // [mode][hit]
	authzCounters    [2][len(authzReasons)]prometheus.Counter
	providerObs      = make(map[string][2]prometheus.Observer, len(providerCalls)) // [ok]
)

func init() {
	for i, m := range cacheModes {
		cacheCounters[i][0] = tokenCache.WithLabelValues(m, "miss")
		cacheCounters[i][1] = tokenCache.WithLabelValues(m, "hit")
	}
	for i, r := range authzReasons {
		authzCounters[0][i] = authzDecisions.WithLabelValues("deny", r)
		authzCounters[1][i] = authzDecisions.WithLabelValues("allow", r)
	}
	for _, c := range providerCalls {
		providerObs[c] = [2]prometheus.Observer{
			providerDuration.WithLabelValues(c, "error"),
			providerDuration.WithLabelValues(c, "ok"),
		}
	}
}

func resolve(v *prometheus.CounterVec, values []string) map[string]prometheus.Counter {
	m := make(map[string]prometheus.Counter, len(values))
	for _, s := range values {
		m[s] = v.WithLabelValues(s)
	}
	return m
}

// lookup is the counter of value, or of "other" outside the fixed set.
func lookup(m map[string]prometheus.Counter, v *prometheus.CounterVec, value string) prometheus.Counter {
	if c, ok := m[value]; ok {
		return c
	}
	return v.WithLabelValues(other)
}

// Register adds the collectors to the config's metrics registry. Each
// config has its own registry and every module may call Register: a
// collector already there is fine.
func Register(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return fmt.Errorf("registering caddy_bff metrics: %w", err)
			}
		}
	}
	return nil
}

// SessionCreated counts a session a login created.
func SessionCreated() { sessionsCreated.Inc() }

// SessionsEnded counts n sessions ended for reason (EndLogout, ...).
func SessionsEnded(reason string, n int) {
	if n > 0 {
		lookup(endCounters, sessionsEnded, reason).Add(float64(n))
	}
}

// TokenExchange counts a token exchange by result (ExchangeSuccess, ...).
func TokenExchange(result string) { lookup(exchangeCounters, tokenExchanges, result).Inc() }

// TokenCache counts a bff_token cache lookup in mode (ModeMint or
// ModeExchange).
func TokenCache(mode string, hit bool) {
	i := 0
	if mode == ModeExchange {
		i = 1
	}
	cacheCounters[i][b2i(hit)].Inc()
}

// Authz counts an authorisation decision; reason is ReasonRule,
// ReasonDefault or ReasonPath.
func Authz(allow bool, reason string) {
	i := 0
	switch reason {
	case ReasonDefault:
		i = 1
	case ReasonPath:
		i = 2
	}
	authzCounters[b2i(allow)][i].Inc()
}

// RateLimitRejection returns the func that counts a 429 in zone, resolved
// once, at Provision; zones are bounded by the config.
func RateLimitRejection(zone string) func() {
	return rateLimitRejections.WithLabelValues(zone).Inc
}

// ProviderUp records whether the provider of issuer (a config value)
// answered discovery at its last check.
func ProviderUp(issuer string, up bool) { providerUp.WithLabelValues(issuer).Set(float64(b2i(up))) }

// RedisUp records whether the Redis at address (a config value) answered
// its last check.
func RedisUp(address string, up bool) { redisUp.WithLabelValues(address).Set(float64(b2i(up))) }

// ProviderCall observes the latency of a provider call (CallDiscovery,
// ...) that began at start; err != nil labels it an error (network, 4xx,
// 5xx or an unusable answer).
func ProviderCall(call string, start time.Time, err error) {
	d := time.Since(start).Seconds()
	obs, ok := providerObs[call]
	if !ok {
		providerDuration.WithLabelValues(other, result(err)).Observe(d)
		return
	}
	obs[b2i(err == nil)].Observe(d)
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
