// Command loadbench measures what the caddy-bff chain costs against a bare
// reverse proxy (SPEC §9, "Fast"), side by side in one run:
//
//   - an upstream on 127.0.0.1 (plain net/http, a tiny fixed JSON body)
//     that counts the requests it gets with and without a Bearer JWT;
//   - the in-process OpenID Provider (internal/testop);
//   - ONE Caddy process (the project's cmd/caddy, built without -race)
//     serving two sites on two loopback ports:
//     A: `reverse_proxy UPSTREAM` and nothing else;
//     B: the full chain: oidc_auth (cookie session store) and, for
//     /api/*, bff_token in mint mode (the JWT comes from its cache) in
//     front of the same reverse_proxy;
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
// status 1. The result is the median requests/s of each site, the ratio
// B/A of those medians (target ≥ 0.90, aim ≥ 0.95), p50/p99 latency over
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
// Run it from the integration directory (or `make bench` at the root):
//
//	cd integration && go run ./cmd/loadbench [-duration 5s] [-rounds 3] [-conns 32] [-json]
//
// It exits with status 1 when the ratio is below -min-ratio (0.90 by
// default; 0 only reports). -cpuprofile DIR enables Caddy's admin endpoint
// on 127.0.0.1 and saves a CPU profile of Caddy during each site's first
// measured round (DIR/a.pprof, DIR/b.pprof; `go tool pprof -top`).
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
	"github.com/caddy-bff/caddy-bff/internal/redistest"
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
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per round")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per site (A and B alternate)")
	flag.IntVar(&o.conns, "conns", 32, "concurrent connections (one goroutine each) per site")
	flag.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	flag.Float64Var(&o.minRatio, "min-ratio", 0.90, "exit with status 1 when B/A is below this (0: report only)")
	flag.StringVar(&o.store, "store", "cookie", "oidc_auth session store on B: cookie (the benchmark's), memory (a small cookie naming a server-side session) or redis (the same, in a redis-server this run starts on loopback)")
	flag.BoolVar(&o.aCookie, "a-cookie", false, "send the session cookie to A too (A then forwards it upstream, which B strips)")
	flag.StringVar(&o.profile, "cpuprofile", "", "write CPU profiles of Caddy, taken during each site's first measured round, to `DIR`/a.pprof and DIR/b.pprof (enables Caddy's admin endpoint on 127.0.0.1; the profiling slows those rounds)")
	flag.Parse()
	if o.duration <= 0 || o.rounds < 1 || o.conns < 1 {
		fmt.Fprintln(os.Stderr, "loadbench: -duration, -rounds and -conns must be positive")
		os.Exit(2)
	}
	if o.store != "cookie" && o.store != "memory" && o.store != "redis" {
		fmt.Fprintln(os.Stderr, "loadbench: -store is cookie, memory or redis")
		os.Exit(2)
	}
	// The example provider logs every request through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Bound the whole run: building, starting and logging in take seconds;
	// the rounds take what the flags say.
	limit := time.Duration(2*o.rounds)*(o.duration+warmup+2*time.Second) + 3*time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	res, err := run(ctx, o)
	cancel()
	stop()
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

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
}

// ---------------------------------------------------------------------------
// Upstream

// upstream answers every request with the same small JSON body and counts
// requests by whether they carry "Authorization: Bearer <JWT>".
type upstream struct {
	srv    *http.Server
	addr   string
	body   []byte
	bearer atomic.Int64 // Authorization: Bearer x.y.z
	other  atomic.Int64 // any other Authorization header
	none   atomic.Int64 // no Authorization header

	record atomic.Bool // keep the tokens seen (verification only)
	mu     sync.Mutex
	tokens []string
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

type counts struct{ bearer, other, none int64 }

func (u *upstream) counts() counts {
	return counts{u.bearer.Load(), u.other.Load(), u.none.Load()}
}

func (c counts) sub(d counts) counts {
	return counts{c.bearer - d.bearer, c.other - d.other, c.none - d.none}
}

func (u *upstream) takeTokens() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.tokens
	u.tokens = nil
	return t
}

func (u *upstream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = u.srv.Shutdown(ctx)
}

// ---------------------------------------------------------------------------
// Caddy

// transport is the reverse_proxy transport both sites use, word for word.
const transport = `transport http {
			keepalive 2m
			keepalive_idle_conns 1024
			keepalive_idle_conns_per_host 1024
		}`

func caddyfile(admin, store, addrA, addrB, up, issuer, keyFile string) string {
	return fmt.Sprintf(`{
	%[8]s
	auto_https off
	persist_config off
	default_bind 127.0.0.1
	log {
		level ERROR
		output stderr
		format json
	}
}

# A: the bare reverse proxy.
http://%[1]s {
	reverse_proxy %[3]s {
		%[6]s
	}
}

# B: the full chain.
http://%[2]s {
	oidc_auth {
		issuer %[4]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid profile email offline_access
		session {
			store %[9]s
			keys {env.SESSION_KEY}
		}
	}
	handle /api/* {
		bff_token {
			mode mint
			audience %[7]s
			issuer http://%[2]s
			signing_key %[5]s
		}
		reverse_proxy %[3]s {
			%[6]s
		}
	}
}
`, addrA, addrB, up, issuer, keyFile, transport, audience, admin, store)
}

// caddyProc is the running Caddy process.
type caddyProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startCaddy runs `bin run` on the Caddyfile in dir, with HOME and the XDG
// directories moved under dir. Readiness is checked by the caller (the
// ERROR log level hides Caddy's "serving" message).
func startCaddy(bin, dir, cfg string, env []string) (*caddyProc, error) {
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	moved := map[string]string{
		"HOME":            filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME": filepath.Join(dir, "config"),
		"XDG_DATA_HOME":   filepath.Join(dir, "data"),
		"XDG_CACHE_HOME":  filepath.Join(dir, "cache"),
	}
	var environ []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); moved[k] == "" {
			environ = append(environ, kv)
		}
	}
	for k, v := range moved {
		if err := os.MkdirAll(v, 0o700); err != nil {
			return nil, err
		}
		environ = append(environ, k+"="+v)
	}
	c := &caddyProc{out: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	c.cmd.Dir = dir
	c.cmd.Env = append(environ, env...)
	c.cmd.Stdout = c.out
	c.cmd.Stderr = c.out
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *caddyProc) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop interrupts Caddy (its graceful stop) and kills it after 10s.
func (c *caddyProc) stop() {
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

// cpuTime is Caddy's user+system CPU time so far; ok is false where
// there is no /proc.
func (c *caddyProc) cpuTime() (time.Duration, bool) {
	return procCPU(strconv.Itoa(c.cmd.Process.Pid))
}

// clkTck is USER_HZ, the unit of /proc's CPU times, on every Linux ABI Go
// supports.
const clkTck = 100

// procCPU is a process's user+system CPU time so far, from
// /proc/PID/stat (pid may be "self").
func procCPU(pid string) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clkTck, true
}

// machineCPU is the CPU time all CPUs spent running processes so far
// (user, nice, system: interrupt and softirq time, much of it this
// benchmark's loopback traffic, belongs to no process and is left out),
// and the time the hypervisor stole from this machine, from /proc/stat.
func machineCPU() (procs, steal time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, false
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clkTck }
	return tick(v[0] + v[1] + v[2]), tick(v[7]), true
}

// cpuSample is the CPU time of Caddy, of this process and of the machine.
type cpuSample struct {
	at                        time.Time
	caddy, self, procs, steal time.Duration
	ok                        bool
}

func sampleCPU(c *caddyProc) cpuSample {
	s := cpuSample{at: time.Now()}
	var ok1, ok2, ok3 bool
	s.caddy, ok1 = c.cpuTime()
	s.self, ok2 = procCPU("self")
	s.procs, s.steal, ok3 = machineCPU()
	s.ok = ok1 && ok2 && ok3
	return s
}

// fetchProfile saves a CPU profile of Caddy over d from its admin endpoint.
func fetchProfile(adminAddr string, d time.Duration, file string) error {
	secs := max(1, int(d.Seconds()))
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", adminAddr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("admin endpoint answered %d: %s", resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitReady polls until fn succeeds, Caddy exits, or the timeout passes.
func waitReady(ctx context.Context, c *caddyProc, what string, fn func() error) error {
	deadline := time.Now().Add(readyTimeout)
	var err error
	for {
		if err = fn(); err == nil {
			return nil
		}
		if c.exited() {
			return fmt.Errorf("caddy exited (%v) before %s was ready:\n%s", c.err, what, c.out)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready: %v\n%s", what, err, c.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Load generator

// site is one of the two targets.
type site struct {
	name   string // "A" or "B"
	cookie bool   // send the session cookie
	label  string
	url    string
	client *http.Client
}

func newSite(name, label, url string, conns int) *site {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, never through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	return &site{name: name, label: label, url: url, client: &http.Client{
		Transport: tr,
		Timeout:   requestTimout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// cookies is the browser's cookie state for the gateway: the load
// generator sends the same Cookie header to both sites and, as a browser
// would, takes any Set-Cookie (oidc_auth re-seals the session cookie on
// activity) into it.
type cookies struct {
	mu     sync.Mutex
	values map[string]string
	order  []string
	header atomic.Pointer[string]
	sets   atomic.Int64 // responses that set a cookie
}

func newCookies(jar []*http.Cookie) *cookies {
	c := &cookies{values: map[string]string{}}
	for _, ck := range jar {
		c.values[ck.Name] = ck.Value
		c.order = append(c.order, ck.Name)
	}
	c.publish()
	return c
}

func (c *cookies) publish() {
	var parts []string
	for _, n := range c.order {
		if v, ok := c.values[n]; ok {
			parts = append(parts, n+"="+v)
		}
	}
	h := strings.Join(parts, "; ")
	c.header.Store(&h)
}

func (c *cookies) update(set []*http.Cookie) {
	c.sets.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ck := range set {
		if _, ok := c.values[ck.Name]; !ok {
			c.order = append(c.order, ck.Name)
		}
		if ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now())) {
			delete(c.values, ck.Name)
		} else {
			c.values[ck.Name] = ck.Value
		}
	}
	c.publish()
}

// roundResult is one measured round of one site.
type roundResult struct {
	Site       string  `json:"site"`
	Requests   int64   `json:"requests"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"rps"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	CaddyCPU   float64 `json:"caddy_cpu_seconds,omitempty"`
	CPUPerReq  float64 `json:"caddy_cpu_us_per_request,omitempty"`
	SelfPerReq float64 `json:"loadgen_upstream_cpu_us_per_request,omitempty"`
	OtherLoad  float64 `json:"other_processes_cpu_share"`

	lat []time.Duration
}

// load drives s with conns goroutines for warm-up then d; requests that
// complete within the measured window count. Any non-200 answer or
// transport error ends the run with an error.
func load(ctx context.Context, s *site, ck *cookies, conns int, warm, d time.Duration) (*roundResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		failOnce sync.Once
		failure  error
	)
	fail := func(err error) {
		failOnce.Do(func() { failure = err; cancel() })
	}

	start := time.Now().Add(warm)
	end := start.Add(d)
	lats := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
			if err != nil {
				fail(err)
				return
			}
			base.Header.Set("User-Agent", "caddy-bff-loadbench/1.0")
			base.Header.Set("Accept", "application/json")
			var sent *string
			lat := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				if h := ck.header.Load(); s.cookie && h != sent {
					sent = h
					base.Header.Set("Cookie", *h)
				}
				req := new(http.Request)
				*req = *base
				t0 := time.Now()
				resp, err := s.client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("site %s: GET %s: %w", s.name, s.url, err))
					}
					return
				}
				if resp.StatusCode != http.StatusOK {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
					resp.Body.Close()
					fail(fmt.Errorf("site %s: GET %s answered %d, want 200: %s", s.name, s.url, resp.StatusCode, strings.TrimSpace(string(b))))
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t1 := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						fail(fmt.Errorf("site %s: reading the body: %w", s.name, err))
					}
					return
				}
				if set := resp.Cookies(); len(set) > 0 {
					ck.update(set)
				}
				if t1.After(end) {
					break
				}
				if !t1.Before(start) { // completed within the measured window
					lat = append(lat, t1.Sub(t0))
				}
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &roundResult{Site: s.name, Seconds: d.Seconds()}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	r.Requests = int64(len(r.lat))
	r.RPS = float64(r.Requests) / d.Seconds()
	slices.Sort(r.lat)
	r.P50ms = ms(percentile(r.lat, 0.50))
	r.P99ms = ms(percentile(r.lat, 0.99))
	return r, nil
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ---------------------------------------------------------------------------
// The run

type siteSummary struct {
	Label        string    `json:"label"`
	URL          string    `json:"url"`
	RPS          []float64 `json:"rps_per_round"`
	MedianRPS    float64   `json:"median_rps"`
	P50ms        float64   `json:"p50_ms"`
	P99ms        float64   `json:"p99_ms"`
	CPUPerReqUS  float64   `json:"caddy_cpu_us_per_request,omitempty"`
	SelfPerReqUS float64   `json:"loadgen_upstream_cpu_us_per_request,omitempty"`
	Requests     int64     `json:"requests"`
}

type result struct {
	Duration      string         `json:"duration_per_round"`
	Rounds        int            `json:"rounds"`
	Conns         int            `json:"conns"`
	NumCPU        int            `json:"num_cpu"`
	GOMAXPROCS    int            `json:"gomaxprocs_loadgen"`
	CaddyEnv      string         `json:"gomaxprocs_caddy"`
	A             siteSummary    `json:"a"`
	B             siteSummary    `json:"b"`
	Ratio         float64        `json:"ratio"`
	PairRatios    []float64      `json:"pair_ratios"`
	CPURatio      float64        `json:"caddy_cpu_per_request_ratio,omitempty"`
	Target        float64        `json:"target"`
	Aim           float64        `json:"aim"`
	Pass          bool           `json:"meets_target"`
	RoundsOrder   []*roundResult `json:"round_results"`
	CookieUpdates int64          `json:"session_cookie_updates"`
	OtherLoad     float64        `json:"max_other_processes_cpu_share"`
	Profile       string         `json:"cpu_profile,omitempty"`
	Elapsed       string         `json:"elapsed"`
}

func run(ctx context.Context, o options) (res *result, err error) {
	began := time.Now()
	tmp, err := os.MkdirTemp("", "caddy-bff-loadbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	logf("building caddy (non-race) …")
	bin, err := harness.BuildCaddy()
	if err != nil {
		return nil, err
	}
	defer harness.RemoveBuild()

	up, err := startUpstream()
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	defer up.close()

	op, err := testop.Start(testop.Config{})
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	defer op.Close()

	keyFile, pub, err := writeSigningKey(tmp)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	addrA, err := freeAddr()
	if err != nil {
		return nil, err
	}
	addrB, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, adminAddr := "admin off", ""
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return nil, err
		}
		if adminAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		admin = "admin " + adminAddr
	}
	store := o.store
	if o.store == "redis" {
		rd, err := redistest.New(tmp)
		if err != nil {
			return nil, fmt.Errorf("-store redis: %w", err)
		}
		defer rd.Stop()
		store = "redis\n\t\t\tredis {\n\t\t\t\taddress " + rd.Addr() + "\n\t\t\t}"
	}
	cfg := caddyfile(admin, store, addrA, addrB, up.addr, op.Issuer(), keyFile)
	caddyDir := filepath.Join(tmp, "caddy")
	if err := os.MkdirAll(caddyDir, 0o700); err != nil {
		return nil, err
	}
	cp, err := startCaddy(bin, caddyDir, cfg, []string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKey})
	if err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	defer cp.stop()

	A := newSite("A", "reverse_proxy", "http://"+addrA+benchPath, o.conns)
	B := newSite("B", "oidc_auth ("+o.store+" store) + bff_token mint + reverse_proxy", "http://"+addrB+benchPath, o.conns)
	A.cookie, B.cookie = o.aCookie, true

	// Ready: A proxies (200); B without a session refuses (401), which
	// also shows that B's 200s below are authenticated ones.
	if err := waitReady(ctx, cp, "site A", func() error { return expectStatus(A.client, A.url, "", http.StatusOK) }); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, cp, "site B", func() error { return expectStatus(B.client, B.url, "", http.StatusUnauthorized) }); err != nil {
		return nil, err
	}

	logf("logging in on B as %s …", testop.AdminUsername)
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	lc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, _, err := harness.TryLogin(lc, "http://"+addrB+"/auth/login?return_to="+url.QueryEscape(benchPath), testop.AdminUsername, testop.AdminPassword, false)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != benchPath {
		return nil, fmt.Errorf("login landed on %s with %d, want %s 200", resp.Request.URL, resp.StatusCode, benchPath)
	}
	bURL, _ := url.Parse("http://" + addrB + "/")
	ck := newCookies(jar.Cookies(bURL))
	if *ck.header.Load() == "" {
		return nil, errors.New("login left no cookie")
	}

	jwtLen, err := verify(A, B, ck, up, pub, "http://"+addrB)
	if err != nil {
		return nil, fmt.Errorf("verification: %w\ncaddy output:\n%s", err, cp.out)
	}
	logf("verified: A reaches the upstream without Authorization, B with one cached, valid %d-byte Bearer JWT", jwtLen)
	if A.cookie {
		logf("both sites get GET %s with the same %d-byte Cookie header (oidc_auth strips its cookies before B's upstream)", benchPath, len(*ck.header.Load()))
	} else {
		logf("both sites get GET %s; B's carries the %d-byte session Cookie header", benchPath, len(*ck.header.Load()))
	}

	res = &result{
		Duration: o.duration.String(), Rounds: o.rounds, Conns: o.conns,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CaddyEnv: orDefault(os.Getenv("GOMAXPROCS"), "default"),
		Target:   0.90, Aim: 0.95,
	}
	res.A.Label, res.A.URL = A.label, A.url
	res.B.Label, res.B.URL = B.label, B.url
	var latA, latB []time.Duration
	var cpuA, cpuB, selfA, selfB time.Duration
	var reqA, reqB int64
	cpuOK := true
	maxOther := 0.0
	for i := range 2 * o.rounds {
		s := A
		if i%2 == 1 {
			s = B
		}
		var profDone chan error
		profFile := ""
		if o.profile != "" && i < 2 {
			profFile = filepath.Join(o.profile, strings.ToLower(s.name)+".pprof")
			profDone = make(chan error, 1)
			go func() {
				time.Sleep(warmup)
				profDone <- fetchProfile(adminAddr, o.duration, profFile)
			}()
		}
		before := up.counts()
		c0 := sampleCPU(cp)
		// Caddy's CPU counts the warm-up too; so do the requests it is
		// divided by (see below), which the upstream counts.
		r, err := load(ctx, s, ck, o.conns, warmup, o.duration)
		if err != nil {
			if cp.exited() {
				err = fmt.Errorf("%w\ncaddy exited (%v):\n%s", err, cp.err, cp.out)
			}
			return nil, err
		}
		c1 := sampleCPU(cp)
		if profDone != nil {
			if err := <-profDone; err != nil {
				logf("cpu profile: %v", err)
			} else {
				logf("cpu profile of caddy during %s's round 1 written to %s", s.name, profFile)
			}
		}
		cpu0, cpu1, ok0, ok1 := c0.caddy, c1.caddy, c0.ok, c1.ok
		if ok0 && ok1 {
			// What the rest of the machine used meanwhile, as a share of it.
			// (Stolen time counts: it is CPU this machine did not get.)
			other := (c1.procs - c0.procs) - (c1.caddy - c0.caddy) - (c1.self - c0.self) + (c1.steal - c0.steal)
			wall := c1.at.Sub(c0.at) * time.Duration(runtime.NumCPU())
			r.OtherLoad = math.Round(max(0, float64(other)/float64(wall))*100) / 100
			maxOther = max(maxOther, r.OtherLoad)
		}
		d := up.counts().sub(before)
		// The upstream saw exactly the kind of request this site sends.
		if s == A && (d.bearer != 0 || d.other != 0 || d.none < r.Requests) {
			return nil, fmt.Errorf("round %d (A): upstream saw %d bearer, %d other, %d plain requests for %d answered", i+1, d.bearer, d.other, d.none, r.Requests)
		}
		if s == B && (d.none != 0 || d.other != 0 || d.bearer < r.Requests) {
			return nil, fmt.Errorf("round %d (B): upstream saw %d bearer, %d other, %d plain requests for %d answered", i+1, d.bearer, d.other, d.none, r.Requests)
		}
		total := d.bearer + d.none
		if ok0 && ok1 && total > 0 {
			r.CaddyCPU = (cpu1 - cpu0).Seconds()
			r.CPUPerReq = math.Round(float64((cpu1-cpu0).Microseconds())/float64(total)*10) / 10
			r.SelfPerReq = math.Round(float64((c1.self-c0.self).Microseconds())/float64(total)*10) / 10
		} else {
			cpuOK = false
		}
		if s == A {
			res.A.RPS = append(res.A.RPS, r.RPS)
			latA = append(latA, r.lat...)
			cpuA += cpu1 - cpu0
			selfA += c1.self - c0.self
			reqA += total
		} else {
			res.B.RPS = append(res.B.RPS, r.RPS)
			latB = append(latB, r.lat...)
			cpuB += cpu1 - cpu0
			selfB += c1.self - c0.self
			reqB += total
		}
		res.RoundsOrder = append(res.RoundsOrder, r)
		logf("round %d/%d  %s  %6.0f req/s  p50 %.2fms  p99 %.2fms  CPU/req: caddy %.1fµs, load generator+upstream %.1fµs; other processes %.0f%% of the CPUs",
			i/2+1, o.rounds, s.name, r.RPS, r.P50ms, r.P99ms, r.CPUPerReq, r.SelfPerReq, 100*r.OtherLoad)
	}
	for i := range o.rounds {
		res.PairRatios = append(res.PairRatios, round3(res.B.RPS[i]/res.A.RPS[i]))
	}
	summarize := func(s *siteSummary, lat []time.Duration, cpu, self time.Duration, n int64) {
		s.MedianRPS = math.Round(median(s.RPS))
		for i := range s.RPS {
			s.RPS[i] = math.Round(s.RPS[i])
		}
		slices.Sort(lat)
		s.P50ms = ms(percentile(lat, 0.50))
		s.P99ms = ms(percentile(lat, 0.99))
		s.Requests = int64(len(lat))
		if cpuOK && n > 0 {
			s.CPUPerReqUS = math.Round(float64(cpu.Microseconds())/float64(n)*10) / 10
			s.SelfPerReqUS = math.Round(float64(self.Microseconds())/float64(n)*10) / 10
		}
	}
	summarize(&res.A, latA, cpuA, selfA, reqA)
	summarize(&res.B, latB, cpuB, selfB, reqB)
	res.Ratio = round3(res.B.MedianRPS / res.A.MedianRPS)
	if res.A.CPUPerReqUS > 0 {
		res.CPURatio = round3(res.B.CPUPerReqUS / res.A.CPUPerReqUS)
	}
	res.Pass = res.Ratio >= res.Target
	res.CookieUpdates = ck.sets.Load()
	res.OtherLoad = maxOther
	res.Profile = o.profile
	res.Elapsed = time.Since(began).Round(100 * time.Millisecond).String()
	return res, nil
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// verify checks, before any measurement, that the two sites do what the
// benchmark claims: A's requests reach the upstream without an
// Authorization header, B's with a Bearer JWT that bff_token minted
// (signed with our key, for our audience, from B's issuer, unexpired,
// with a subject) and reused from its cache.
func verify(A, B *site, ck *cookies, up *upstream, pub *ecdsa.PublicKey, issuer string) (jwtLen int, err error) {
	get := func(s *site) error {
		req, err := http.NewRequest(http.MethodGet, s.url, nil)
		if err != nil {
			return err
		}
		if s.cookie {
			req.Header.Set("Cookie", *ck.header.Load())
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return fmt.Errorf("site %s: %w", s.name, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("site %s answered %d: %s", s.name, resp.StatusCode, strings.TrimSpace(string(b)))
		}
		if string(b) != upstreamBody {
			return fmt.Errorf("site %s answered a body that is not the upstream's: %q", s.name, b)
		}
		if set := resp.Cookies(); len(set) > 0 {
			ck.update(set)
		}
		return nil
	}

	before := up.counts()
	for range verifyCount {
		if err := get(A); err != nil {
			return 0, err
		}
	}
	if d := up.counts().sub(before); d.none != verifyCount || d.bearer != 0 || d.other != 0 {
		return 0, fmt.Errorf("site A: upstream saw %d plain, %d bearer, %d other requests; want %d plain", d.none, d.bearer, d.other, verifyCount)
	}

	before = up.counts()
	up.takeTokens()
	up.record.Store(true)
	for range verifyCount {
		if err := get(B); err != nil {
			up.record.Store(false)
			return 0, err
		}
	}
	up.record.Store(false)
	tokens := up.takeTokens()
	if d := up.counts().sub(before); d.bearer != verifyCount || d.none != 0 || d.other != 0 {
		return 0, fmt.Errorf("site B: upstream saw %d bearer, %d plain, %d other requests; want %d bearer", d.bearer, d.none, d.other, verifyCount)
	}
	distinct := map[string]bool{}
	for _, t := range tokens {
		distinct[t] = true
	}
	if len(distinct) != 1 {
		return 0, fmt.Errorf("site B: %d requests carried %d different tokens; want one, from bff_token's cache", len(tokens), len(distinct))
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tokens[0], claims, func(t *jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(audience), jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired())
	if err != nil {
		return 0, fmt.Errorf("site B: the upstream's token does not verify: %w", err)
	}
	if sub, _ := claims.GetSubject(); sub != testop.AdminSubject {
		return 0, fmt.Errorf("site B: token subject %q, want %q", sub, testop.AdminSubject)
	}
	return len(tokens[0]), nil
}

func expectStatus(c *http.Client, u, cookie string, want int) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: %d, want %d: %s", u, resp.StatusCode, want, strings.TrimSpace(string(b)))
	}
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// writeSigningKey writes a fresh EC P-256 key as PKCS#8 PEM into dir.
func writeSigningKey(dir string) (string, *ecdsa.PublicKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "signing-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", nil, err
	}
	return path, &key.PublicKey, nil
}

// ---------------------------------------------------------------------------
// Output

func (r *result) print(w io.Writer) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "\ncaddy-bff loadbench: %d rounds × %s per site (after 1s warm-up each), %d connections, loopback\n",
		r.Rounds, r.Duration, r.Conns)
	fmt.Fprintf(bw, "  %d CPUs; GOMAXPROCS: load generator + upstream %d, caddy %s\n\n", r.NumCPU, r.GOMAXPROCS, r.CaddyEnv)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  site\tchain\treq/s\tp50\tp99\tCPU/req: caddy\tloadgen+upstream\trounds (req/s)")
	for _, s := range []struct {
		name string
		s    siteSummary
	}{{"A", r.A}, {"B", r.B}} {
		cpu, self := "n/a", "n/a"
		if s.s.CPUPerReqUS > 0 {
			cpu = fmt.Sprintf("%.1fµs", s.s.CPUPerReqUS)
			self = fmt.Sprintf("%.1fµs", s.s.SelfPerReqUS)
		}
		var rounds []string
		for _, v := range s.s.RPS {
			rounds = append(rounds, strconv.FormatFloat(v, 'f', 0, 64))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.0f\t%.2fms\t%.2fms\t%s\t%s\t%s\n", s.name, s.s.Label, s.s.MedianRPS, s.s.P50ms, s.s.P99ms, cpu, self, strings.Join(rounds, " "))
	}
	_ = tw.Flush()
	verdict := "meets the target (≥ 0.90)"
	switch {
	case r.Ratio >= r.Aim:
		verdict = "meets the aim (≥ 0.95)"
	case r.Ratio < r.Target:
		verdict = "BELOW the target (0.90)"
	}
	fmt.Fprintf(bw, "\n  throughput ratio B/A (medians): %.3f — %s\n", r.Ratio, verdict)
	var pr []string
	for _, p := range r.PairRatios {
		pr = append(pr, strconv.FormatFloat(p, 'f', 3, 64))
	}
	fmt.Fprintf(bw, "  per-round ratios: %s\n", strings.Join(pr, " "))
	if r.CPURatio > 0 {
		fmt.Fprintf(bw, "  caddy CPU per request B/A: %.2f×\n", r.CPURatio)
	}
	if r.OtherLoad >= 0.10 {
		fmt.Fprintf(bw, "  WARNING: other processes used up to %.0f%% of the CPUs during a round; the numbers are noisy\n", 100*r.OtherLoad)
	}
	if r.Profile != "" {
		fmt.Fprintf(bw, "  caddy CPU profiles (round 1 of each site, slowed by the profiling): %s\n", filepath.Join(r.Profile, "{a,b}.pprof"))
	}
	fmt.Fprintf(bw, "  elapsed %s\n", r.Elapsed)
}
