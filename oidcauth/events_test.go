package oidcauth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// eventsGW is an oidc_auth on a real HTTP server, with one logged-in
// session in its store and a clock the test moves.
type eventsGW struct {
	h       *Handler
	srv     *httptest.Server
	cancel  context.CancelFunc // the config's end: runs Cleanup
	s       *session
	cookie  string // the Cookie header of the session
	clock   atomic.Int64
	touches atomic.Int32 // requests that reached next
}

func startEventsGW(t *testing.T, store string) *eventsGW {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{
		"issuer": "https://id.example/" + url.PathEscape(t.Name()), "client_id": "bff",
		"session": map[string]any{"store": store, "keys": []string{goodKey}, "idle_timeout": "10m", "lifetime": "1h"},
	})
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	m, err := ctx.LoadModuleByID("http.handlers.oidc_auth", raw)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	g := &eventsGW{h: m.(*Handler), cancel: func() { once.Do(cancel) }}
	g.clock.Store(time.Now().UnixMilli())
	now := func() time.Time { return time.UnixMilli(g.clock.Load()) }
	g.h.now = now
	g.h.logger, g.h.audit = zap.NewNop(), zap.NewNop()
	g.h.events.interval = 20 * time.Millisecond
	if cs, ok := g.h.store.(*cookieStore); ok {
		cs.now = now
	}
	g.h.state.memory.now = now

	g.s = &session{ID: newSessionID(), Subject: "alice", AccessToken: "eyJaccess", RefreshToken: "refresh-secret",
		Created: g.clock.Load(), LastSeen: g.clock.Load()}
	value, err := g.h.store.save(context.Background(), g.s, true, now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	g.s.key = hashID(g.s.ID)
	g.cookie = sessionCookieName(httptest.NewRequest("GET", "/", nil)) + "=" + value

	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		g.touches.Add(1)
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, &caddyhttp.Server{})
		if err := g.h.ServeHTTP(w, r, next); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(func() { g.srv.Close(); g.cancel() })
	return g
}

func (g *eventsGW) advance(d time.Duration) { g.clock.Add(d.Milliseconds()) }

// request sends GET path with the session cookie (unless cookie is "")
// and accept.
func (g *eventsGW) request(t *testing.T, method, cookie, accept string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, g.srv.URL+"/auth/session", nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := g.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// lastSeen is the session's LastSeen as the store has it.
func (g *eventsGW) lastSeen(t *testing.T) int64 {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", g.cookie)
	value, _ := readSessionCookie(r)
	s, err := g.h.store.load(context.Background(), value)
	if err != nil {
		t.Fatalf("session gone: %v", err)
	}
	return s.LastSeen
}

// sseReader reads a stream's events (comments as name ":").
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

type sseMsg struct {
	name, data string
	retry      string
}

// next reads one block up to its blank line; io.EOF when the stream ended.
func (sr sseReader) next() (sseMsg, error) {
	var m sseMsg
	for {
		line, err := sr.br.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			return m, nil
		case strings.HasPrefix(line, ":"):
			m.name = ":"
			m.data = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			m.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			m.data = line[len("data: "):]
		case strings.HasPrefix(line, "retry: "):
			m.retry = line[len("retry: "):]
		default:
			sr.t.Fatalf("unexpected line %q", line)
		}
	}
}

// until reads events until one named name comes, failing on EOF.
func (sr sseReader) until(name string) sseMsg {
	sr.t.Helper()
	for {
		m, err := sr.next()
		if err != nil {
			sr.t.Fatalf("stream ended (%v) before event %q", err, name)
		}
		if m.name == name {
			return m
		}
	}
}

// rest reads to the end and returns the event names it saw.
func (sr sseReader) rest() []string {
	var names []string
	for {
		m, err := sr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				sr.t.Fatalf("stream: %v", err)
			}
			return names
		}
		names = append(names, m.name)
	}
}

func openStream(t *testing.T, g *eventsGW) (*http.Response, sseReader) {
	t.Helper()
	resp := g.request(t, "GET", g.cookie, "text/event-stream")
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Fatalf("%s %q, want %q", k, got, v)
		}
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Fatalf("stream sets cookies: %v", sc)
	}
	return resp, sseReader{t: t, br: bufio.NewReader(resp.Body)}
}

func wantStatus(t *testing.T, data string, s *session, h *Handler) {
	t.Helper()
	var got map[string]any
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatalf("data %q: %v", data, err)
	}
	want := map[string]any{"active": true,
		"expires_at":      s.expiresAt(h.lifetime).UTC().Format(time.RFC3339),
		"idle_expires_at": s.idleExpiresAt(h.idle).UTC().Format(time.RFC3339)}
	if len(got) != len(want) {
		t.Fatalf("data %s, want exactly %v", data, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("data %s: %s %v, want %v", data, k, got[k], v)
		}
	}
}

// The polling contract: one JSON answer, never a touch.
func TestSessionEventsPolling(t *testing.T) {
	g := startEventsGW(t, storeMemory)
	seen := g.lastSeen(t)
	g.advance(5 * time.Minute) // well past the touch interval

	resp := g.request(t, "GET", g.cookie, "application/json")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("active: %d %q %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), body)
	}
	wantStatus(t, string(body), g.s, g.h)
	if len(resp.Header.Values("Set-Cookie")) != 0 || g.lastSeen(t) != seen {
		t.Fatal("polling touched the session")
	}
	if strings.Contains(string(body), g.s.ID) || strings.Contains(string(body), "eyJ") || strings.Contains(string(body), "refresh-secret") {
		t.Fatalf("answer carries an id or a token: %s", body)
	}

	for _, tc := range []struct {
		name, method, cookie string
		status               int
	}{
		{"no cookie", "GET", "", 401},
		{"forged cookie", "GET", sessionCookieName(httptest.NewRequest("GET", "/", nil)) + "=" + newSessionID(), 401},
		{"garbage cookie", "GET", sessionCookieName(httptest.NewRequest("GET", "/", nil)) + "=%%%", 401},
		{"POST", "POST", g.cookie, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := g.request(t, tc.method, tc.cookie, "")
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %q %s, want %d problem", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status)
			}
			if tc.status == 401 && !strings.Contains(string(body), `"login_url":"/auth/login"`) {
				t.Fatalf("401 without login_url: %s", body)
			}
		})
	}

	// Ended: 401, and the dead cookie is cleared.
	if err := g.h.endSession(context.Background(), g.s, "logout"); err != nil {
		t.Fatal(err)
	}
	resp = g.request(t, "GET", g.cookie, "")
	resp.Body.Close()
	if resp.StatusCode != 401 || len(resp.Header.Values("Set-Cookie")) == 0 {
		t.Fatalf("ended session: %d, Set-Cookie %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
}

// The stream answers `session` at once, pings without touching, tells a
// touch elsewhere, and answers `ended` when the session is removed.
func TestSessionEventsStream(t *testing.T) {
	for _, store := range []string{storeMemory, storeCookie} {
		t.Run(store, func(t *testing.T) {
			g := startEventsGW(t, store)
			seen := g.lastSeen(t)
			_, sr := openStream(t, g)
			first, err := sr.next()
			if err != nil || first.retry != "3000" {
				t.Fatalf("first block %+v %v, want retry: 3000", first, err)
			}
			m := sr.until("session")
			wantStatus(t, m.data, g.s, g.h)

			g.advance(5 * time.Minute) // past the touch interval, before the idle end
			for range 3 {
				if m, _ := sr.next(); m.name != ":" || m.data != "ping" {
					t.Fatalf("got %+v, want : ping", m)
				}
			}
			if g.lastSeen(t) != seen {
				t.Fatal("the stream touched the session")
			}

			if store == storeMemory {
				// Another request touches the session: the stream tells
				// the new idle end.
				ns := *g.s
				ns.LastSeen = g.clock.Load()
				if _, err := g.h.store.save(context.Background(), &ns, false, time.UnixMilli(ns.LastSeen).Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				wantStatus(t, sr.until("session").data, &ns, g.h)
			}

			if err := g.h.endSession(context.Background(), g.s, "logout"); err != nil {
				t.Fatal(err)
			}
			if m := sr.until("ended"); m.data != `{"active":false}` {
				t.Fatalf("ended data %q", m.data)
			}
			if names := sr.rest(); len(names) != 0 {
				t.Fatalf("events after ended: %v", names)
			}
		})
	}
}

// Expiry ends the stream on every store; a cookie's idle end only closes
// it (a newer cookie may carry the session on), for a reconnect.
func TestSessionEventsExpiry(t *testing.T) {
	for _, tc := range []struct {
		store   string
		advance time.Duration
		ended   bool
	}{
		{storeMemory, 11 * time.Minute, true},
		{storeMemory, 61 * time.Minute, true},
		{storeCookie, 61 * time.Minute, true},
		{storeCookie, 11 * time.Minute, false},
	} {
		t.Run(tc.store+" "+tc.advance.String(), func(t *testing.T) {
			g := startEventsGW(t, tc.store)
			_, sr := openStream(t, g)
			sr.until("session")
			g.advance(tc.advance)
			names := sr.rest()
			if ended := len(names) > 0 && names[len(names)-1] == "ended"; ended != tc.ended {
				t.Fatalf("events %v, want ended %v", names, tc.ended)
			}
		})
	}
}

// failingStore is the real store with an outage switch.
type failingStore struct {
	store
	down atomic.Bool
}

func (f *failingStore) load(ctx context.Context, value string) (*session, error) {
	if f.down.Load() {
		return nil, errStoreDown
	}
	return f.store.load(ctx, value)
}

// A store outage is not an ending: the stream keeps pinging, then closes
// without `ended` so the client reconnects.
func TestSessionEventsStoreDown(t *testing.T) {
	g := startEventsGW(t, storeMemory)
	fs := &failingStore{store: g.h.store}
	g.h.store = fs
	_, sr := openStream(t, g)
	sr.until("session")
	fs.down.Store(true)
	names := sr.rest()
	if len(names) != maxCheckFailures-1 {
		t.Fatalf("events during the outage %v, want %d pings then the end", names, maxCheckFailures-1)
	}
	for _, n := range names {
		if n != ":" {
			t.Fatalf("events during the outage %v, want pings only", names)
		}
	}
	resp := g.request(t, "GET", g.cookie, "text/event-stream")
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("opening with the store down: %d, want 503", resp.StatusCode)
	}
}

// Streams are capped, and end when the config stops (Cleanup) or the
// server shuts down, without `ended`: the session lives on.
func TestSessionEventsLifecycle(t *testing.T) {
	t.Run("cap", func(t *testing.T) {
		g := startEventsGW(t, storeMemory)
		g.h.events.max = 1
		_, sr := openStream(t, g)
		sr.until("session")
		resp := g.request(t, "GET", g.cookie, "text/event-stream")
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("stream beyond the cap: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		resp = g.request(t, "GET", g.cookie, "")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("polling beyond the stream cap: %d", resp.StatusCode)
		}
	})
	t.Run("per user", func(t *testing.T) {
		g := startEventsGW(t, storeMemory)
		g.h.events.perUser = 1
		_, sr := openStream(t, g)
		sr.until("session")
		resp := g.request(t, "GET", g.cookie, "text/event-stream")
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("a second stream of the same user beyond its cap: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	})
	t.Run("cleanup", func(t *testing.T) {
		g := startEventsGW(t, storeMemory)
		_, sr := openStream(t, g)
		sr.until("session")
		g.cancel()
		if names := sr.rest(); len(names) > 0 && names[len(names)-1] == "ended" {
			t.Fatalf("cleanup answered ended: %v", names)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		g := startEventsGW(t, storeMemory)
		_, sr := openStream(t, g)
		sr.until("session")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- g.srv.Config.Shutdown(ctx) }()
		if names := sr.rest(); len(names) > 0 && names[len(names)-1] == "ended" {
			t.Fatalf("shutdown answered ended: %v", names)
		}
		if err := <-done; err != nil {
			t.Fatalf("shutdown waited on the stream: %v", err)
		}
	})
}

func TestWantsEventStream(t *testing.T) {
	for _, tc := range []struct {
		accept string
		want   bool
	}{
		{"text/event-stream", true},
		{"Text/Event-Stream", true},
		{"application/json, text/event-stream;q=0.5", true},
		{"text/event-stream; q=0.0", false},
		{"text/event-stream;q=0", false},
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"text/event-streamer", false},
	} {
		r := httptest.NewRequest("GET", "/auth/session", nil)
		r.Header.Set("Accept", tc.accept)
		if got := wantsEventStream(r); got != tc.want {
			t.Errorf("Accept %q: %v, want %v", tc.accept, got, tc.want)
		}
	}
}

// An ending on this instance wakes the user's streams at once, not at
// their next check; another user's stream stays.
func TestSessionEventsWake(t *testing.T) {
	g := startEventsGW(t, storeMemory)
	g.h.events.interval = time.Hour // only a wake-up can answer in time
	resp, sr := openStream(t, g)
	sr.until("session")

	other := &session{ID: newSessionID(), Subject: "bob", Created: g.clock.Load(), LastSeen: g.clock.Load()}
	if _, err := g.h.store.save(context.Background(), other, true, time.UnixMilli(g.clock.Load()).Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	otherResp := g.request(t, "GET", sessionCookieName(httptest.NewRequest("GET", "/", nil))+"="+other.ID, "text/event-stream")
	defer otherResp.Body.Close()
	osr := sseReader{t: t, br: bufio.NewReader(otherResp.Body)}
	osr.until("session")

	stop := time.AfterFunc(5*time.Second, func() { resp.Body.Close(); otherResp.Body.Close() })
	defer stop.Stop()
	if err := g.h.endSession(context.Background(), g.s, "logout"); err != nil {
		t.Fatal(err)
	}
	if m := sr.until("ended"); m.data != `{"active":false}` {
		t.Fatalf("ended data %q", m.data)
	}
	if names := sr.rest(); len(names) != 0 { // to the end: the handler returned
		t.Fatalf("after ended: %v", names)
	}
	g.h.events.mu.Lock()
	watched := len(g.h.events.watching)
	g.h.events.mu.Unlock()
	if watched != 1 {
		t.Fatalf("%d subjects watched after alice's stream ended, want bob's only", watched)
	}
}
