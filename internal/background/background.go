// Package background runs the periodic housekeeping of caddy-bff's
// handlers (sweeping expired entries) so that a bug in one run is logged
// and the next run still happens: a sweeper that died silently would let
// maps grow without bound.
package background

import (
	"context"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
)

// Every calls fn every interval until ctx is done, in the calling
// goroutine (start it with go; it returns when ctx is done).
func Every(ctx context.Context, interval time.Duration, logger *zap.Logger, name string, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			Safely(logger, name, fn)
		}
	}
}

// Safely runs fn, logging a panic (with its stack) at error level
// instead of letting it end the process or the caller's loop.
func Safely(logger *zap.Logger, name string, fn func()) {
	defer func() {
		if v := recover(); v != nil {
			logger.Error("background task panicked; it runs again next time",
				zap.String("task", name), zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
		}
	}()
	fn()
}
