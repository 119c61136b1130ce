package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/internal/redistest"
)

// Issue 13, item 3: sessions in a Redis behind Sentinel survive a
// failover. During the switch requests may get 503 (the store is
// unavailable), never a 500, never a pass without a session, and never a
// 401 (the session is on the replica); within the documented pause they
// are served again.
func TestSentinelFailover(t *testing.T) {
	s := redistest.StartSentinel(t)
	block := fmt.Sprintf("redis {\n\t\t\t\taddress %s\n\t\t\t\tmaster_name %s\n\t\t\t\tkey_prefix test:\n\t\t\t\tread_timeout 500ms\n\t\t\t\tdial_timeout 500ms\n\t\t\t}",
		strings.Join(s.Addrs(), " "), redistest.MasterName)
	g := startGW(t, gwOpts{store: "redis", sessionMore: block, tokenMode: "access_token"})
	c := g.admin()
	if r := get(t, c, g.base+"/api/a"); r.StatusCode != 200 {
		t.Fatalf("before the failover: %d %s", r.StatusCode, r.body)
	}
	// The session reached the replica before the failover.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if keys, _ := s.Replica.Command("KEYS", "test:s:*"); keys != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session never reached the replica")
		}
	}
	g.up.Reset()
	type answer struct {
		at     time.Time
		status int
		body   string
	}
	answers := make(chan answer, 4096)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := do(t, c, "GET", g.base+"/api/b", map[string]string{"Accept": "application/json"})
			answers <- answer{time.Now(), r.StatusCode, r.body}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	s.Failover(t)
	switched := time.Since(start)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	close(answers)
	var lastBad time.Time
	n, tail := 0, 0
	for a := range answers {
		n++
		switch a.status {
		case 200:
			tail++
		case 503:
			lastBad, tail = a.at, 0
		default:
			t.Fatalf("during the failover: %d %s", a.status, a.body)
		}
	}
	if tail < 5 {
		t.Fatalf("not served again after the failover: the last %d of %d answers were 200", tail, n)
	}
	pause := time.Duration(0)
	if !lastBad.IsZero() {
		pause = lastBad.Sub(start)
	}
	t.Logf("%d requests; the sentinels switched in %v; 503s until %v after SENTINEL FAILOVER; the master is now %s",
		n, switched.Round(time.Millisecond), pause.Round(time.Millisecond), s.Master())
	if s.Master() != s.Replica.Addr() {
		t.Fatal("no failover happened")
	}
	for _, r := range g.up.Requests() {
		if r.BearerToken() == "" {
			t.Fatal("the upstream got a request without the session's token")
		}
	}
}
