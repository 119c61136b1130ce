package oidcauth

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisHotGetBoundedByContext: the hot path's GET fails when its
// operation context ends, even though the auto-pipeliner does not watch
// that context: against a Redis that accepts connections and never
// answers (a hung server, a blackholing proxy), the request gets its 503
// within the store's timeout, not after the client's read timeouts and
// retries.
func TestRedisHotGetBoundedByContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // read nothing, answer nothing
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ReadTimeout: 30 * time.Second,
		DialTimeout: 30 * time.Second, Protocol: 2})
	defer func() { go c.Close() }() // its batch is still waiting on the hung server
	rs := &redisStore{c: c, reader: hotReader(c)}
	if rs.reader == nil {
		t.Fatal("a standalone client has no auto-pipeliner")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = rs.get(ctx, "bff:s:x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get = %v, want the context's deadline", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("get took %s past a 100ms deadline", took)
	}
}
