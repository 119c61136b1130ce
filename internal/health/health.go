// Package health is the process's list of readiness checks: each module
// that depends on something outside (oidc_auth on its provider and Redis,
// bff_rate_limit on Redis) registers a probe while its config is loaded,
// and bff_health runs them all.
package health

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

type entry struct {
	name  string
	probe func(context.Context) error
}

var (
	mu     sync.Mutex
	checks = map[*entry]struct{}{}
)

// Register adds a check called name (what an operator reads: "provider
// https://id.example.com", "redis 10.0.0.5:6379"; never a secret) and
// returns the func that removes it (call it at Cleanup).
func Register(name string, probe func(context.Context) error) (unregister func()) {
	e := &entry{name: name, probe: probe}
	mu.Lock()
	checks[e] = struct{}{}
	mu.Unlock()
	return func() {
		mu.Lock()
		delete(checks, e)
		mu.Unlock()
	}
}

// Result is one check's outcome.
type Result struct {
	Name string
	Err  error
}

// Run runs every registered check concurrently under ctx and returns
// their results by name; checks of the same name (two configs of one
// provider during a reload) are run once each.
func Run(ctx context.Context) []Result {
	mu.Lock()
	list := make([]*entry, 0, len(checks))
	for e := range checks {
		list = append(list, e)
	}
	mu.Unlock()
	out := make([]Result, len(list))
	var wg sync.WaitGroup
	for i, e := range list {
		wg.Go(func() { out[i] = Result{Name: e.name, Err: e.probe(ctx)} })
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b Result) int { return cmp.Compare(a.Name, b.Name) })
	return slices.CompactFunc(out, func(a, b Result) bool { return a.Name == b.Name && (a.Err == nil) == (b.Err == nil) })
}
