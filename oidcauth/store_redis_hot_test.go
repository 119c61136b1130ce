package oidcauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// stuckGetter is an auto-pipeliner whose batch never completes, as when
// Redis stops answering and the pipeliner keeps redialling: it ignores the
// command's context, as go-redis's does.
type stuckGetter struct{ release chan struct{} }

func (g stuckGetter) Get(context.Context, string) *redis.StringCmd {
	<-g.release
	cmd := redis.NewStringCmd(context.Background(), "get")
	cmd.SetErr(errors.New("dial tcp: i/o timeout"))
	return cmd
}

// TestRedisHotGetBoundedByContext: the hot path's GET fails when its
// operation context ends, even though the auto-pipeliner does not watch
// that context: the request then gets its 503 within the store's timeout.
func TestRedisHotGetBoundedByContext(t *testing.T) {
	g := stuckGetter{release: make(chan struct{})}
	defer close(g.release)
	rs := &redisStore{reader: g}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := rs.get(ctx, "bff:s:x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get = %v, want the context's deadline", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("get took %s past a 100ms deadline", took)
	}
}
