// Package audit writes caddy-bff's audit entries, one shape for every
// event, and counts each by its outcome: the outcomes are constants here,
// and the counters' label sets are the same lists, so an outcome is never
// logged under one name and counted under another.
//
// Every entry is written at Info on the module's `audit` logger with the
// event as its message and request_id, sub, method, path and outcome
// fields (plus the event's own). Never a token, a cookie or a session id.
package audit

import (
	"cmp"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// Outcome is the outcome field of an audit entry, and the label value it
// is counted under.
type Outcome string

// Outcomes. A login or refresh outcome must be in LoginOutcomes or
// RefreshOutcomes to be counted under its name (TestEveryOutcomeCounted).
const (
	Success Outcome = "success"

	// Login callbacks.
	UnknownState  Outcome = "unknown_state"
	BadState      Outcome = "bad_state"
	Expired       Outcome = "expired"
	BadIss        Outcome = "bad_iss"
	ProviderError Outcome = "provider_error" // also a refresh outcome
	CodeRejected  Outcome = "code_rejected"
	NoIDToken     Outcome = "no_id_token"
	BadIDToken    Outcome = "bad_id_token" // also a refresh outcome
	BadNonce      Outcome = "bad_nonce"
	BadAtHash     Outcome = "bad_at_hash"
	StepUpNotMet  Outcome = "step_up_not_met" // the provider ignored acr_values or max_age

	// Refreshes.
	InvalidGrant    Outcome = "invalid_grant"
	SessionTooLarge Outcome = "session_too_large"

	// Back-channel logout.
	Rejected Outcome = "rejected"

	// scope_authz decisions.
	Allow Outcome = "allow"
	Deny  Outcome = "deny"

	// Session admin API.
	StoreDown Outcome = "store_down"
)

// Event is a kind of audited action: its entry's message and, for the
// counted ones, its counter.
type Event struct {
	name    string
	counter map[Outcome]prometheus.Counter // nil: not counted here
	vec     *prometheus.CounterVec
}

// Label sets of the counted events.
var (
	LoginOutcomes = []Outcome{Success, UnknownState, BadState, Expired, ProviderError,
		CodeRejected, NoIDToken, BadIDToken, BadNonce, BadAtHash, BadIss, StepUpNotMet}
	RefreshOutcomes = []Outcome{Success, InvalidGrant, ProviderError, BadIDToken, SessionTooLarge}
)

// namespace is internal/metrics' namespace, which registers Collectors.
const namespace = "caddy_bff"

var (
	logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "logins_total",
		Help: "Completed login callbacks, by outcome (success or the failure class).",
	}, []string{"outcome"})
	refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "refreshes_total",
		Help: "Token refreshes with the provider, by result.",
	}, []string{"result"})
)

// The events.
var (
	Login       = Event{name: "login", counter: resolve(logins, LoginOutcomes), vec: logins}
	Refresh     = Event{name: "refresh", counter: resolve(refreshes, RefreshOutcomes), vec: refreshes}
	Logout      = Event{name: "logout"}
	Backchannel = Event{name: "backchannel_logout"}
	// Revalidate is a session's periodic check with the provider without
	// a refresh token (introspection or UserInfo): Success, Rejected (the
	// provider no longer knows it) or ProviderError.
	Revalidate = Event{name: "revalidate"}
	// Frontchannel is a front-channel logout request (by sid; unsigned,
	// as OpenID Connect Front-Channel Logout 1.0 has it).
	Frontchannel = Event{name: "frontchannel_logout"}
	// Authz is counted by metrics.Authz, whose labels are the decision
	// and its reason.
	Authz = Event{name: "authz"}
	// AdminList and AdminEnd are calls of the session admin API.
	AdminList = Event{name: "admin_list_sessions"}
	AdminEnd  = Event{name: "admin_end_sessions"}
)

// Collectors are the counters of this package, for internal/metrics to
// register.
func Collectors() []prometheus.Collector { return []prometheus.Collector{logins, refreshes} }

func resolve(v *prometheus.CounterVec, outcomes []Outcome) map[Outcome]prometheus.Counter {
	m := make(map[Outcome]prometheus.Counter, len(outcomes))
	for _, o := range outcomes {
		m[o] = v.WithLabelValues(string(o))
	}
	return m
}

// Entry is one audit entry.
type Entry struct {
	// Sub is the user's subject, when known.
	Sub     string
	Outcome Outcome
	// Detail qualifies the outcome in the log ("provider_error:access_denied"),
	// not in the count: a provider's error code, never its description.
	Detail string
	// Path is the path the entry names; empty: the request's.
	Path string
}

// Write counts e under ev and, when logger takes Info entries, writes it
// with r's request id, method and path and the extra fields.
func Write(logger *zap.Logger, ev Event, r *http.Request, e Entry, extra ...zap.Field) {
	if ev.counter != nil {
		c, ok := ev.counter[e.Outcome]
		if !ok {
			c = ev.vec.WithLabelValues("other")
		}
		c.Inc()
	}
	ce := logger.Check(zapcore.InfoLevel, ev.name)
	if ce == nil {
		return
	}
	outcome := string(e.Outcome)
	if e.Detail != "" {
		outcome += ":" + e.Detail
	}
	fields := make([]zap.Field, 0, 5+len(extra))
	fields = append(fields,
		zap.String("request_id", requestid.From(r)),
		zap.String("sub", e.Sub),
		zap.String("method", r.Method),
		zap.String("path", cmp.Or(e.Path, r.URL.Path)),
		zap.String("outcome", outcome))
	ce.Write(append(fields, extra...)...)
}
