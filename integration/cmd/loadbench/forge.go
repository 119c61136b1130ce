//go:build bffbench

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// forgeSessions seals n sessions as B's store keeps them (see
// oidcauth.ForgeSessions, built only with -tags bffbench) and, for the
// redis store, writes their records into redisAddr. It returns each
// session's Cookie header.
func forgeSessions(ctx context.Context, store, redisAddr string, n int) ([]string, error) {
	claims := map[string]any{"email": "bench@example.com", "name": "Bench User",
		"scope": "openid profile email offline_access"}
	forged, err := oidcauth.ForgeSessions([]string{sessionKey}, store, "bff:", "bench-user-", claims, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(forged))
	for i, f := range forged {
		out[i] = f.Cookie
	}
	if store != "redis" {
		return out, nil
	}
	c := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer c.Close()
	for i := 0; i < len(forged); i += 1000 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range forged[i:min(i+1000, len(forged))] {
				p.Set(ctx, f.RedisKey, f.RedisValue, time.Hour)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("writing the forged sessions to redis: %w", err)
		}
	}
	return out, nil
}
