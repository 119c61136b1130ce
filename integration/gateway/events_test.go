package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// sseEvent is one event of a session stream; name ":" is a comment.
type sseEvent struct{ name, data string }

// eventStream is an open GET /auth/session with Accept: text/event-stream.
type eventStream struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent // closed when the stream ends
}

// openEvents opens the session stream with c's cookies at base and fails
// the test unless it is a 200 event stream.
func openEvents(t *testing.T, c *http.Client, base string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/auth/session", nil)
	req.Header.Set("Accept", "text/event-stream")
	// c's jar, without c's overall timeout: a stream outlives it.
	resp, err := (&http.Client{Jar: c.Jar}).Do(req)
	if err != nil {
		t.Fatalf("open session events: %v", err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" ||
		resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Accel-Buffering") != "no" {
		resp.Body.Close()
		t.Fatalf("session events: %d %v", resp.StatusCode, resp.Header)
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Fatalf("the stream sets cookies: %v", sc)
	}
	es := &eventStream{t: t, resp: resp, events: make(chan sseEvent, 64)}
	go func() {
		defer close(es.events)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					es.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev = sseEvent{name: ":", data: strings.TrimSpace(line[1:])}
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return es
}

// wait returns the next event named name within d; ok false when the
// stream ended first or d passed.
func (es *eventStream) wait(name string, d time.Duration) (sseEvent, bool) {
	timeout := time.After(d)
	for {
		select {
		case ev, open := <-es.events:
			if !open {
				return sseEvent{}, false
			}
			if ev.name == name {
				return ev, true
			}
		case <-timeout:
			return sseEvent{}, false
		}
	}
}

// mustWait is wait that fails the test.
func (es *eventStream) mustWait(name string, d time.Duration) sseEvent {
	es.t.Helper()
	ev, ok := es.wait(name, d)
	if !ok {
		es.t.Fatalf("no %q event within %v", name, d)
	}
	return ev
}

// closed reports whether the stream ends within d, and the events it
// sent until then.
func (es *eventStream) closed(d time.Duration) (bool, []string) {
	timeout := time.After(d)
	var names []string
	for {
		select {
		case ev, open := <-es.events:
			if !open {
				return true, names
			}
			names = append(names, ev.name)
		case <-timeout:
			return false, names
		}
	}
}

// activeStatus checks a session answer: active, with both ends in RFC
// 3339, and nothing else (no id, no token).
func activeStatus(t *testing.T, data string) map[string]any {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal([]byte(data), &st); err != nil {
		t.Fatalf("session data %q: %v", data, err)
	}
	if st["active"] != true || len(st) != 3 {
		t.Fatalf("session data %s, want active with expires_at and idle_expires_at only", data)
	}
	for _, k := range []string{"expires_at", "idle_expires_at"} {
		if s, _ := st[k].(string); s == "" {
			t.Fatalf("session data %s: no %s", data, k)
		} else if _, err := time.Parse(time.RFC3339, s); err != nil {
			t.Fatalf("session data %s: %s: %v", data, k, err)
		}
	}
	return st
}

// A tab's stream answers `session` at once and `ended` within seconds of
// a logout in another tab (the same cookie), on every store.
func TestSessionEventsLogout(t *testing.T) {
	for _, store := range []string{"cookie", "memory"} {
		t.Run(store, func(t *testing.T) {
			g := startGW(t, gwOpts{store: store})
			c := g.admin()
			es := openEvents(t, c, g.base)
			activeStatus(t, es.mustWait("session", 5*time.Second).data)

			// The polling contract answers the same.
			r := do(t, c, "GET", g.base+"/auth/session", map[string]string{"Accept": "application/json"})
			if r.StatusCode != 200 || r.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("poll: %d %q %s", r.StatusCode, r.Header.Get("Cache-Control"), r.body)
			}
			activeStatus(t, r.body)

			logout(t, g, c)
			start := time.Now()
			if ev := es.mustWait("ended", 5*time.Second); ev.data != `{"active":false}` {
				t.Fatalf("ended data %q", ev.data)
			}
			t.Logf("ended %v after the logout", time.Since(start).Round(time.Millisecond))
			if done, after := es.closed(2 * time.Second); !done || len(after) != 0 {
				t.Fatalf("after ended: closed %v, events %v", done, after)
			}
			// Now the poll says so too, with the login URL.
			if r := get(t, c, g.base+"/auth/session"); r.StatusCode != 401 || r.problem(t)["login_url"] == nil {
				t.Fatalf("poll after logout: %d %s", r.StatusCode, r.body)
			}
			// Anonymous from the start: 401 problem, no stream.
			if r := do(t, bare(), "GET", g.base+"/auth/session", map[string]string{"Accept": "text/event-stream"}); r.StatusCode != 401 || r.problem(t)["login_url"] == nil {
				t.Fatalf("anonymous stream: %d %s", r.StatusCode, r.body)
			}
			assertNoSecrets(t, g.caddy.Logs())
		})
	}
}

// Neither the stream nor polling keeps a session alive: with a 3 s idle
// timeout and nothing else in use, the session idles out while both run,
// and the stream says `ended` (server-side stores) or closes for the
// client to reconnect, which then gets 401 (the cookie store, whose
// stream cannot see a newer cookie).
func TestSessionEventsDoNotExtendIdle(t *testing.T) {
	for _, store := range []string{"memory", "cookie"} {
		t.Run(store, func(t *testing.T) {
			g := startGW(t, gwOpts{store: store, idle: "3s", life: "1h"})
			c := g.admin()
			loggedIn := time.Now()
			es := openEvents(t, c, g.base)
			activeStatus(t, es.mustWait("session", 5*time.Second).data)

			stop := make(chan struct{})
			polled := make(chan int, 1)
			go func() { // poll as a shell would, fast
				n := 0
				defer func() { polled <- n }()
				for {
					select {
					case <-stop:
						return
					case <-time.After(300 * time.Millisecond):
					}
					for _, p := range []string{"/auth/session", "/auth/user?touch=false"} {
						req, _ := http.NewRequest("GET", g.base+p, nil)
						if r, err := c.Do(req); err == nil {
							r.Body.Close()
							n++
						}
					}
				}
			}()
			done, names := es.closed(10 * time.Second)
			close(stop)
			if n := <-polled; n < 4 {
				t.Fatalf("only %d polls ran", n)
			}
			if !done {
				t.Fatalf("the stream was still open 10 s into a 3 s idle timeout: %v", names)
			}
			took := time.Since(loggedIn)
			wantEnded := store != "cookie"
			if ended := len(names) > 0 && names[len(names)-1] == "ended"; ended != wantEnded {
				t.Fatalf("stream events %v, want ended %v", names, wantEnded)
			}
			if took < 2*time.Second {
				t.Fatalf("the stream ended %v after login, before the idle timeout", took)
			}
			if r := get(t, c, g.base+"/auth/session"); r.StatusCode != 401 {
				t.Fatalf("poll after the idle timeout: %d", r.StatusCode)
			}
			if r := get(t, c, g.base+"/api/x"); r.StatusCode != 401 {
				t.Fatalf("after the idle timeout: %d, want 401", r.StatusCode)
			}
		})
	}
}

// Two gateways share Redis: a logout on A, or the provider's back-channel
// logout received by A, ends the stream open on B.
func TestSessionEventsTwoInstances(t *testing.T) {
	for _, store := range []string{"redis", "cookie"} {
		t.Run(store, func(t *testing.T) {
			rd := harness.StartRedis(t)
			a := startGW(t, gwOpts{store: store, sessionMore: redisBlock(rd.Addr())})
			b := a.sibling()

			c := a.admin() // the jar sends 127.0.0.1's cookies to both ports
			es := openEvents(t, c, b.base)
			activeStatus(t, es.mustWait("session", 5*time.Second).data)
			logout(t, a, c)
			es.mustWait("ended", 5*time.Second)

			c2 := a.admin()
			es2 := openEvents(t, c2, b.base)
			es2.mustWait("session", 5*time.Second)
			tok, err := a.op.LogoutToken(testop.AdminSubject, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := postLogoutToken(t, a, tok); r.StatusCode != 200 {
				t.Fatalf("back-channel logout: %d", r.StatusCode)
			}
			es2.mustWait("ended", 5*time.Second)
		})
	}
}

// Open streams never hold a config reload or a stop: they close without
// `ended` (the session lives on) and the client reconnects.
func TestSessionEventsReloadAndStop(t *testing.T) {
	g := startGW(t, gwOpts{store: "memory"})
	adminAddr := harness.FreeAddr(t)
	g.caddy.Stop()
	g.cfg = withAdmin(g.cfg, adminAddr)
	g.caddy = harness.StartCaddy(t, g.bin, g.cfg, g.env...)
	c := g.admin()

	es := openEvents(t, c, g.base)
	es.mustWait("session", 5*time.Second)
	req, _ := http.NewRequest("POST", "http://"+adminAddr+"/load", strings.NewReader(g.cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate") // reload even though unchanged
	start := time.Now()
	r, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("reload: %d", r.StatusCode)
	}
	done, names := es.closed(5 * time.Second)
	if !done || (len(names) > 0 && names[len(names)-1] == "ended") {
		t.Fatalf("stream at reload: closed %v, events %v", done, names)
	}
	t.Logf("stream closed %v after the reload began", time.Since(start).Round(time.Millisecond))
	// The memory session survived the reload: a new stream opens.
	es = openEvents(t, c, g.base)
	es.mustWait("session", 5*time.Second)

	start = time.Now()
	g.caddy.Stop() // SIGINT, and a kill after 10 s
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("caddy took %v to stop with a stream open", took)
	}
	if done, names := es.closed(2 * time.Second); !done || (len(names) > 0 && names[len(names)-1] == "ended") {
		t.Fatalf("stream at stop: closed %v, events %v", done, names)
	}
}
