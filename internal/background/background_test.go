package background

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A panicking run is logged and the loop goes on.
func TestEveryOutlivesPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.ErrorLevel)
		ctx, cancel := context.WithCancel(context.Background())
		runs := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			Every(ctx, time.Minute, zap.New(core), "test sweeper", func() {
				runs++
				if runs <= 2 {
					panic("sweep bug")
				}
			})
		}()
		time.Sleep(5*time.Minute + time.Second)
		synctest.Wait()
		cancel()
		<-done
		if runs != 5 {
			t.Fatalf("%d runs in 5 minutes, want 5 (panics must not end the loop)", runs)
		}
		entries := logs.FilterMessageSnippet("panicked").All()
		if len(entries) != 2 {
			t.Fatalf("%d panic log entries, want 2", len(entries))
		}
		if f := entries[0].ContextMap(); f["task"] != "test sweeper" || f["panic"] != "sweep bug" || f["stack"] == "" {
			t.Fatalf("log fields %v", f)
		}
	})
}
