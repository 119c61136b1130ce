// Command loadbench measures what the caddy-bff chain costs against a bare
// reverse proxy (SPEC §9, "Fast"), side by side in one run:
//
//   - an upstream on 127.0.0.1 (plain net/http, a tiny fixed JSON body)
//     that counts the requests it gets with and without a Bearer JWT;
//   - the in-process OpenID Provider (internal/testop);
//   - ONE Caddy process (the project's cmd/caddy, built without -race)
//     serving two sites on two loopback ports:
//     A: `reverse_proxy UPSTREAM` and nothing else;
//     B: the full chain SPEC §9 names: oidc_auth (cookie session store
//     by default) and, for /api/*, scope_authz (20 rules, the benchmarked
//     path matched by the last), bff_rate_limit (a budget the run never
//     exhausts) and bff_token in mint mode (the JWT comes from its cache)
//     in front of the same reverse_proxy;
//     both reverse_proxy blocks have the same transport settings.
//
// It logs in once on B through the provider's real login form, then sends
// GET /api/bench to both sites: to B with the session cookie, as a
// browser would, to A without it, as the traffic of a bare proxy is. The
// cookie (a few KiB with the cookie store: it holds the sealed tokens) is
// part of what the session costs, so B pays for it; -a-cookie sends it to
// A too (A then forwards it upstream, which oidc_auth strips from B's), to
// isolate the chain's processing from the cookie's size.
//
// Before measuring it checks that B's requests reach the upstream with a
// valid Bearer JWT (signature, iss, aud, exp, sub; the same token every
// time, so the cache works) and A's without one, and after every round
// that the upstream saw only the kind of request the round's site should
// send, so the benchmark cannot silently measure 401s or a broken chain.
//
// Rounds alternate A, B, A, B, … so drift (thermal, noisy neighbours, GC)
// hits both sites alike; each round is preceded by a 1s warm-up on its
// site. A fixed number of goroutines (-conns) each send requests in a
// loop over a keep-alive client (MaxIdleConnsPerHost = -conns); any
// answer other than 200, or any transport error, stops the run with exit
// status 1. The result is the median requests/s of each site, the median
// of the per-round ratios B/A (the gate: target ≥ 0.90, aim ≥ 0.95), p50/p99 latency over
// all measured requests of a site, and Caddy's CPU time per request (from
// /proc, where there is one): the ratio is end to end, the CPU figure is
// the gateway's own cost.
//
// Everything shares the machine: the load generator, the upstream and
// the provider run in this process, Caddy in its own, each with Go's
// default GOMAXPROCS (the number of CPUs; Caddy also honours cgroup
// limits). That is deliberate: both sites run under the same conditions,
// and nothing is pinned. On a small machine the load generator and the
// upstream take a good share of the CPU (reported per request as well):
// their fixed cost dilutes the difference between the sites, while the
// load generator's cost of sending B's cookie counts against B, though
// in production browsers pay it. Caddy's CPU per request is the
// gateway's own cost. Other processes' CPU use (and time stolen by the
// hypervisor) during each round is reported, with a warning when it
// reaches 10%, since it makes the rounds noisy. Set GOMAXPROCS in the
// environment to change either process's setting (Caddy inherits the
// environment).
//
// -peer LIST compares peers (`make bench-peers`): each target of the
// comma-separated LIST (chain: ours; oauth2-proxy; caddy-security) is
// site B of its own run against the same bare site A, provider, upstream
// and load, and one table sums them up. The peers are built from the Go
// module proxy at pinned versions the first time (oauth2-proxy by `go
// install`; a Caddy of the version our go.mod pins with caddy-security,
// by xcaddy) into -peers-dir, and run as their own processes: oauth2-proxy
// with --upstream, caddy-security's authentication portal (the provider
// as a generic OpenID Connect one) and authorization policy in front of
// the same reverse_proxy as A's. Both log in once through the provider's
// form and pass the user upstream in X-Forwarded-User. Before measuring,
// each is checked to refuse requests without the session and with its
// cookie altered (the upstream sees none of them) and to pass the
// logged-in user on every request with it; every round checks that each
// answered request reached the upstream with the user. The CPU figure
// of B is the peer process's own.
//
// Run it from the integration directory (or `make bench` at the root):
//
//	cd integration && go run ./cmd/loadbench [-duration 5s] [-rounds 3] [-conns 32] [-json]
//	cd integration && go run ./cmd/loadbench -a-cookie -peer chain,oauth2-proxy,caddy-security -min-ratio 0
//
// It exits with status 1 when the ratio is below -min-ratio (0.90 by
// default; 0 only reports). -cpuprofile DIR enables Caddy's admin endpoint
// on 127.0.0.1 and saves a CPU profile of Caddy during each site's first
// measured round (DIR/a.pprof, DIR/b.pprof; `go tool pprof -top`).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

const (
	benchPath     = "/api/bench"
	audience      = "bench-api"
	sessionKey    = "loadbench-session-key-0123456789abcdef0123456789"
	warmup        = time.Second
	verifyCount   = 50
	upstreamBody  = `{"ok":true,"items":[1,2,3]}` + "\n"
	readyTimeout  = 30 * time.Second
	requestTimout = 10 * time.Second
)

type options struct {
	duration time.Duration
	rounds   int
	conns    int
	json     bool
	minRatio float64
	profile  string // directory for CPU profiles of Caddy (a.pprof, b.pprof)
	aCookie  bool   // send B's session cookie to A as well
	store    string // oidc_auth session store
	sessions int    // distinct sessions (users) on B
	peer     string // site B is this peer gateway instead of our chain ("": ours)
	peersDir string // where the peers' binaries are built and cached
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per round")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per site (A and B alternate)")
	flag.IntVar(&o.conns, "conns", 32, "concurrent connections (one goroutine each) per site")
	flag.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	flag.Float64Var(&o.minRatio, "min-ratio", 0.90, "exit with status 1 when B/A is below this (0: report only)")
	flag.StringVar(&o.store, "store", "cookie", "oidc_auth session store on B: cookie (the benchmark's), memory (a small cookie naming a server-side session) or redis (the same, in a redis-server this run starts on loopback)")
	flag.IntVar(&o.sessions, "sessions", 1, "distinct sessions (each its own user) the load cycles through: 1 logs in through the provider; more are sealed by the benchmark itself with B's session key (cookie and redis stores; needs -tags bffbench), so caches of opened sessions and minted tokens (4,096 entries each) see what many users do to them")
	flag.BoolVar(&o.aCookie, "a-cookie", false, "send the session cookie to A too (A then forwards it upstream, which B strips)")
	var targets string
	flag.StringVar(&targets, "peer", "", "compare peers: a comma-separated `LIST` of chain (ours, -store's session store), oauth2-proxy ("+oauth2ProxyVersion+") and caddy-security ("+caddySecurityVersion+"); each is site B of its own run against the bare site A, and one table sums them up (-min-ratio gates chain only)")
	flag.StringVar(&o.peersDir, "peers-dir", ".peers", "`DIR` where -peer builds the peers (go install, xcaddy) once and keeps them")
	flag.StringVar(&o.profile, "cpuprofile", "", "write CPU profiles of Caddy, taken during each site's first measured round, to `DIR`/a.pprof and DIR/b.pprof (enables Caddy's admin endpoint on 127.0.0.1; the profiling slows those rounds)")
	flag.Parse()
	if o.duration <= 0 || o.rounds < 1 || o.conns < 1 || o.sessions < 1 || o.sessions > 1_000_000 {
		fmt.Fprintln(os.Stderr, "loadbench: -duration, -rounds and -conns must be positive, -sessions 1 to 1,000,000")
		os.Exit(2)
	}
	if o.sessions > 1 && o.store == "memory" {
		fmt.Fprintln(os.Stderr, "loadbench: -sessions above 1 needs store cookie or redis (memory sessions live inside caddy)")
		os.Exit(2)
	}
	if o.store != "cookie" && o.store != "memory" && o.store != "redis" {
		fmt.Fprintln(os.Stderr, "loadbench: -store is cookie, memory or redis")
		os.Exit(2)
	}
	var names []string
	if targets != "" {
		for t := range strings.SplitSeq(targets, ",") {
			t = strings.TrimSpace(t)
			if t != "chain" && peerVersion(t) == "" {
				fmt.Fprintf(os.Stderr, "loadbench: -peer %q: want chain, oauth2-proxy or caddy-security\n", t)
				os.Exit(2)
			}
			names = append(names, t)
		}
		if o.sessions > 1 || o.profile != "" {
			fmt.Fprintln(os.Stderr, "loadbench: -peer runs with one session and without -cpuprofile")
			os.Exit(2)
		}
		// oauth2-proxy's session ends with the OP's access token (5
		// minutes; it gets no refresh token from the test OP).
		if slices.Contains(names, "oauth2-proxy") && time.Duration(2*o.rounds)*(o.duration+warmup) > 4*time.Minute {
			fmt.Fprintln(os.Stderr, "loadbench: -peer oauth2-proxy: the rounds must fit in 4 minutes (the OP's access tokens last 5)")
			os.Exit(2)
		}
	}
	// The example provider logs every request through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Bound each run: starting and logging in take seconds, building a
	// peer the first time minutes; the rounds take what the flags say.
	limit := time.Duration(2*o.rounds)*(o.duration+warmup+2*time.Second) + 3*time.Minute
	if names != nil {
		status := comparePeers(ctx, o, names, limit)
		harness.RemoveBuild()
		os.Exit(status)
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	res, err := run(ctx, o)
	cancel()
	harness.RemoveBuild()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench: FAIL:", err)
		os.Exit(1)
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		res.print(os.Stdout)
	}
	if o.minRatio > 0 && res.Ratio < o.minRatio {
		fmt.Fprintf(os.Stderr, "loadbench: ratio %.3f is below %.2f\n", res.Ratio, o.minRatio)
		os.Exit(1)
	}
}

// comparePeers runs each target against bare in turn and prints one
// table; it returns the exit status.
func comparePeers(ctx context.Context, o options, names []string, limit time.Duration) int {
	var results []*result
	status := 0
	for _, n := range names {
		po := o
		po.peer = n
		if n == "chain" {
			po.peer = ""
		}
		logf("=== %s against bare ===", n)
		rctx, cancel := context.WithTimeout(ctx, limit+15*time.Minute)
		res, err := run(rctx, po)
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "loadbench: FAIL: %s: %v\n", n, err)
			status = 1
			if ctx.Err() != nil {
				break
			}
			continue
		}
		results = append(results, res)
		if n == "chain" && o.minRatio > 0 && res.Ratio < o.minRatio {
			fmt.Fprintf(os.Stderr, "loadbench: chain: ratio %.3f is below %.2f\n", res.Ratio, o.minRatio)
			status = 1
		}
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(results)
	} else {
		printPeers(os.Stdout, o, results)
	}
	return status
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
}
