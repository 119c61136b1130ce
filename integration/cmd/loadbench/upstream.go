package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The upstream both sites proxy to.

// upstream answers every request with the same small JSON body and counts
// requests by whether they carry "Authorization: Bearer <JWT>".
type upstream struct {
	srv    *http.Server
	addr   string
	body   []byte
	bearer atomic.Int64 // Authorization: Bearer x.y.z
	other  atomic.Int64 // any other Authorization header
	none   atomic.Int64 // no Authorization header
	user   atomic.Int64 // X-Forwarded-User (a peer's identity header), whatever the above

	record atomic.Bool // keep the tokens seen (verification only)
	mu     sync.Mutex
	tokens []string
	users  []string
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{addr: ln.Addr().String(), body: []byte(upstreamBody)}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v := r.Header.Get(userHeader); v != "" {
		u.user.Add(1)
		if u.record.Load() {
			u.mu.Lock()
			u.users = append(u.users, v)
			u.mu.Unlock()
		}
	}
	switch a := r.Header.Get("Authorization"); {
	case a == "":
		u.none.Add(1)
	case isBearerJWT(a):
		u.bearer.Add(1)
		if u.record.Load() {
			u.mu.Lock()
			u.tokens = append(u.tokens, a[len("Bearer "):])
			u.mu.Unlock()
		}
	default:
		u.other.Add(1)
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(u.body))}
	_, _ = w.Write(u.body)
}

func isBearerJWT(a string) bool {
	tok, ok := strings.CutPrefix(a, "Bearer ")
	return ok && strings.Count(tok, ".") == 2 && !strings.Contains(tok, "..")
}

type counts struct{ bearer, other, none, user int64 }

func (u *upstream) counts() counts {
	return counts{u.bearer.Load(), u.other.Load(), u.none.Load(), u.user.Load()}
}

func (c counts) sub(d counts) counts {
	return counts{c.bearer - d.bearer, c.other - d.other, c.none - d.none, c.user - d.user}
}

func (u *upstream) takeTokens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.tokens
	u.tokens = nil
	return t
}

func (u *upstream) takeUsers() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	v := u.users
	u.users = nil
	return v
}

func (u *upstream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = u.srv.Shutdown(ctx)
}
