package oidcauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// DefaultSessionEventsPath is where the shell learns that its session
// ended (session_events_path).
const DefaultSessionEventsPath = "/auth/session"

const (
	// sessionCheckInterval is how often an open stream asks the store
	// whether its session still lives: an ending elsewhere (another tab,
	// another instance, the provider, the admin API, expiry) shows within
	// this long.
	sessionCheckInterval = 2 * time.Second
	// maxSessionStreams caps the open streams of one handler; beyond it
	// a client gets 503 and falls back to polling or retries.
	maxSessionStreams = 10_000
	// maxStreamsPerUser caps one subject's open streams (tabs, across
	// sessions) on a handler; beyond it 429, so one user cannot take the
	// rest's share.
	maxStreamsPerUser = 32
	// maxCheckFailures is how many checks in a row the store may fail
	// before the stream closes without an answer (the client reconnects):
	// an outage is not an ending.
	maxCheckFailures = 3
	// sseRetry is the reconnection delay the stream asks of EventSource.
	sseRetry = 3 * time.Second
	// sseWriteTimeout bounds each write to a stream, so a client that stops
	// reading cannot hold a handler goroutine.
	sseWriteTimeout = 10 * time.Second
)

// errIdleSnapshot: the session the request's cookie holds has passed its
// idle timeout. With the cookie store that is only this cookie's view: a
// request from another tab may have moved the idle end on in a newer
// cookie, which a stream opened before it cannot see.
var errIdleSnapshot = errors.New("idle timeout passed")

// sessionEvents is one handler's open streams: how many, and the signal
// that ends them when the config stops.
type sessionEvents struct {
	open      atomic.Int64
	closing   chan struct{}
	closeOnce sync.Once
	hooked    sync.Map // *http.Server -> struct{}: shutdown hook registered
	interval  time.Duration
	max       int64
	perUser   int // streams one subject may hold (maxStreamsPerUser)

	mu       sync.Mutex
	watching map[string]map[chan struct{}]struct{} // subject -> its streams' wake-ups
}

func newSessionEvents() *sessionEvents {
	return &sessionEvents{closing: make(chan struct{}), interval: sessionCheckInterval, max: maxSessionStreams, perUser: maxStreamsPerUser,
		watching: make(map[string]map[chan struct{}]struct{})}
}

// watch registers a stream of sub's session for wake-ups; the returned
// func unregisters it.
func (ev *sessionEvents) watch(sub string) (<-chan struct{}, func(), bool) {
	ch := make(chan struct{}, 1)
	ev.mu.Lock()
	set := ev.watching[sub]
	if set == nil {
		set = make(map[chan struct{}]struct{})
		ev.watching[sub] = set
	}
	if len(set) >= ev.perUser {
		// One user (anyone who can sign up at the provider) must not hold
		// every stream this handler may serve.
		ev.mu.Unlock()
		return nil, nil, false
	}
	set[ch] = struct{}{}
	ev.mu.Unlock()
	return ch, func() {
		ev.mu.Lock()
		delete(set, ch)
		if len(set) == 0 {
			delete(ev.watching, sub)
		}
		ev.mu.Unlock()
	}, true
}

// wake has the streams of sub's sessions check now rather than at their
// next tick: this instance just ended one of them. Only that user's
// streams check, not every stream.
func (ev *sessionEvents) wake(sub string) {
	if ev == nil {
		return
	}
	ev.mu.Lock()
	for ch := range ev.watching[sub] {
		select {
		case ch <- struct{}{}:
		default: // a check is pending already
		}
	}
	ev.mu.Unlock()
}

// close ends every open stream; idempotent.
func (ev *sessionEvents) close() {
	ev.closeOnce.Do(func() { close(ev.closing) })
}

// hookShutdown ends the streams when the server that carries r begins to
// shut down. Caddy stops its servers (and, when exiting, waits for their
// requests) before it cleans up the handlers, so Cleanup alone would come
// too late: an open stream would hold the shutdown for the whole grace
// period, or forever without one.
func (ev *sessionEvents) hookShutdown(r *http.Request) {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return // HTTP/3: Cleanup ends them
	}
	if _, loaded := ev.hooked.LoadOrStore(srv, struct{}{}); !loaded {
		srv.RegisterOnShutdown(ev.close)
	}
}

// sessionStatus is the answer of the session events endpoint, as event
// data and as the polling body. Never an id or a token.
type sessionStatus struct {
	Active        bool   `json:"active"`
	ExpiresAt     string `json:"expires_at,omitempty"`
	IdleExpiresAt string `json:"idle_expires_at,omitempty"`
}

func (h *Handler) statusOf(s *session) sessionStatus {
	return sessionStatus{
		Active:        true,
		ExpiresAt:     s.expiresAt(h.lifetime).UTC().Format(time.RFC3339),
		IdleExpiresAt: s.idleExpiresAt(h.idle).UTC().Format(time.RFC3339),
	}
}

// peekSession reads the session value names as the store has it now: no
// touch, no refresh, no cookie. errNoSession when it ended or expired,
// errIdleSnapshot past the idle end, another error when the store failed.
func (h *Handler) peekSession(r *http.Request, value string) (*session, error) {
	s, err := h.store.load(r.Context(), value)
	if err != nil {
		return nil, err
	}
	now := h.now()
	if !now.Before(s.expiresAt(h.lifetime)) {
		return nil, errNoSession
	}
	if !now.Before(s.idleExpiresAt(h.idle)) {
		return nil, errIdleSnapshot
	}
	return s, nil
}

// wantsEventStream reports whether the client asked for Server-Sent
// Events (EventSource sends Accept: text/event-stream).
func wantsEventStream(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
			continue
		}
		refused := false
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(p, "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				refused = err == nil && q == 0 // RFC 9110 §12.4.2: q=0 is "not acceptable"
			}
		}
		if !refused {
			return true
		}
	}
	return false
}

// serveSessionEvents tells the shell whether its session still lives,
// without extending it: as a Server-Sent Events stream (Accept:
// text/event-stream) that answers `session` at once and `ended` when the
// session ends, or, for anything else, one JSON answer (the polling
// contract).
func (h *Handler) serveSessionEvents(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Error(w, r, http.StatusMethodNotAllowed, "session events take GET")
		return
	}
	w.Header().Add("Vary", "Accept")
	value, present := readSessionCookie(r)
	if !present {
		h.writeUnauthorized(w, r, "not logged in")
		return
	}
	if err := h.checkOrigin(r); err != nil {
		problem.Error(w, r, http.StatusForbidden, "cross-origin request refused")
		return
	}
	s, err := h.peekSession(r, value)
	switch {
	case errors.Is(err, errNoSession), errors.Is(err, errIdleSnapshot):
		// The browser's current cookie: its idle end is the session's.
		clearSessionCookie(w, r)
		h.writeUnauthorized(w, r, "not logged in")
		return
	case err != nil:
		h.logStoreFailure(r, "session check", err)
		h.storeUnavailable(w, r, err)
		return
	}
	h.attach(r, s.identity(h.idle, h.lifetime)) // the access log's user_id
	st := h.statusOf(s)

	if r.Method == http.MethodHead || !wantsEventStream(r) {
		body, _ := json.Marshal(st) // strings and a bool: cannot fail
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
		return
	}

	ev := h.events
	if ev.open.Add(1) > ev.max {
		ev.open.Add(-1)
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "too many open session streams; poll instead or retry shortly", RetryAfter: 5})
		return
	}
	defer ev.open.Add(-1)
	ev.hookShutdown(r)
	woken, unwatch, ok := ev.watch(s.Subject)
	if !ok {
		problem.Write(w, r, problem.Details{Status: http.StatusTooManyRequests,
			Detail: "too many open session streams for this user; close some tabs, or poll", RetryAfter: 30})
		return
	}
	defer unwatch()
	h.streamSession(w, r, value, st, woken)
}

// streamSession writes the event stream until the session ends, the
// client leaves, or the config stops. It checks every interval, and at
// once when woken. Headers are sent first, so nothing
// below may set a cookie.
func (h *Handler) streamSession(w http.ResponseWriter, r *http.Request, value string, st sessionStatus, woken <-chan struct{}) {
	ev := h.events
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx and its kin: do not buffer
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(frame string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) // unsupported: no deadline to move
		if _, err := w.Write([]byte(frame)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	why := "client gone"
	defer func() {
		if ce := h.logger.Check(zap.DebugLevel, "session events stream closed"); ce != nil {
			ce.Write(zap.String("request_id", requestid.From(r)), zap.String("reason", why))
		}
	}()
	if !send(sseFrame("", "retry: "+strconv.FormatInt(sseRetry.Milliseconds(), 10)) + sseEvent("session", st)) {
		why = "write failed"
		return
	}

	tick := time.NewTicker(ev.interval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ev.closing:
			// No `ended`: the session lives on; the client reconnects to
			// the new config.
			why = "config stopped"
			return
		case <-tick.C:
			if caddy.Exiting() {
				// HTTP/3 streams have no server shutdown hook, and Caddy
				// waits for its servers before Cleanup: end them here.
				why = "exiting"
				return
			}
		case <-woken: // this instance ended one of the user's sessions
		}
		s, err := h.peekSession(r, value)
		frame := ": ping\n\n"
		switch {
		case errors.Is(err, errNoSession),
			errors.Is(err, errIdleSnapshot) && h.Session.Store != storeCookie:
			why = "session ended"
			send(sseEvent("ended", sessionStatus{Active: false}))
			return
		case errors.Is(err, errIdleSnapshot):
			// The cookie store: this cookie's idle end passed, but a newer
			// cookie may carry the session on. Close without an answer;
			// EventSource reconnects with the browser's current cookie and
			// gets 401 if the session really idled out.
			why = "cookie idle end"
			return
		case err != nil:
			failures++
			if ce := h.logger.Check(zap.DebugLevel, "session events check failed"); ce != nil {
				ce.Write(zap.String("request_id", requestid.From(r)), zap.Int("failures", failures), zap.Error(err))
			}
			if failures >= maxCheckFailures {
				why = "session store unavailable"
				return
			}
		default:
			failures = 0
			if now := h.statusOf(s); now != st {
				st = now // touched by another request: the shell's countdown moves
				frame = sseEvent("session", st)
			}
		}
		if !send(frame) {
			why = "write failed"
			return
		}
	}
}

// sseEvent is one Server-Sent Event (HTML Living Standard §9.2): the
// event's name and its data, JSON on one line.
func sseEvent(name string, data sessionStatus) string {
	b, _ := json.Marshal(data) // strings and a bool: cannot fail
	return sseFrame(name, "data: "+string(b))
}

// sseFrame is an event block: an optional `event:` line, the given
// field lines, and the blank line that dispatches it.
func sseFrame(name, fields string) string {
	if name == "" {
		return fields + "\n\n"
	}
	return "event: " + name + "\n" + fields + "\n\n"
}
