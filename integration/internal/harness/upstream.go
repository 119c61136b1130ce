package harness

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// Request is what the upstream recorded of one request.
type Request struct {
	Method     string
	Path       string // decoded
	RawPath    string // as sent when it differs from Path's encoding, else ""
	RequestURI string // the request target exactly as received
	Query      string
	Host       string
	Header     http.Header
	Cookies    []*http.Cookie
	Body       []byte // at most 1 MiB
}

// Authorization returns the request's Authorization header.
func (r Request) Authorization() string { return r.Header.Get("Authorization") }

// BearerToken returns the token of an "Authorization: Bearer" header, or "".
func (r Request) BearerToken() string {
	scheme, tok, ok := strings.Cut(r.Authorization(), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Upstream is a backend on 127.0.0.1 that records every request. By
// default it answers 200 with JSON {"method", "path", "authorization"
// (whether an Authorization header came)}; a WebSocket handshake (any
// path) is accepted, whatever its Origin, and echoes what it receives.
type Upstream struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []Request
	handler  http.Handler
	// websockets counts the echo connections still open.
	websockets atomic.Int32
}

// WaitWebSocketsClosed waits until every WebSocket echo connection has
// ended, at most timeout, and reports whether they had.
func (u *Upstream) WaitWebSocketsClosed(timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if u.websockets.Load() == 0 {
			return true
		}
	}
	return u.websockets.Load() == 0
}

// NewUpstream starts an upstream, closed on t.Cleanup.
func NewUpstream(t testing.TB) *Upstream {
	t.Helper()
	u := &Upstream{}
	// httptest binds 127.0.0.1:0.
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec := Request{
		Method:     r.Method,
		Path:       r.URL.Path,
		RawPath:    r.URL.RawPath,
		RequestURI: r.RequestURI,
		Query:      r.URL.RawQuery,
		Host:       r.Host,
		Header:     r.Header.Clone(),
		Cookies:    r.Cookies(),
		Body:       body,
	}
	u.mu.Lock()
	u.requests = append(u.requests, rec)
	h := u.handler
	u.mu.Unlock()
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		// A WebSocket echo: what the client sends comes back.
		u.websockets.Add(1)
		defer u.websockets.Add(-1)
		websocket.Server{Handler: func(ws *websocket.Conn) { _, _ = io.Copy(ws, ws) }}.ServeHTTP(w, r)
		return
	}
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"method":        r.Method,
		"path":          r.URL.Path,
		"authorization": r.Header.Get("Authorization") != "",
	})
}

// SetHandler replaces the default JSON echo (nil restores it); requests
// are recorded either way, before the handler runs (which can still read
// the first MiB of the body).
func (u *Upstream) SetHandler(h http.Handler) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

// Requests returns a copy of the requests recorded so far, oldest first.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Request, len(u.requests))
	copy(out, u.requests)
	return out
}

// Last returns the latest request, and false when there was none.
func (u *Upstream) Last() (Request, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.requests) == 0 {
		return Request{}, false
	}
	return u.requests[len(u.requests)-1], true
}

// Reset forgets the recorded requests.
func (u *Upstream) Reset() {
	u.mu.Lock()
	u.requests = nil
	u.mu.Unlock()
}

// Addr is the upstream's "127.0.0.1:PORT", as reverse_proxy takes it.
func (u *Upstream) Addr() string { return u.srv.Listener.Addr().String() }

// URL is "http://127.0.0.1:PORT".
func (u *Upstream) URL() string { return u.srv.URL }
