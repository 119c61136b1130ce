package main

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
	"github.com/caddy-bff/caddy-bff/internal/redistest"
	"github.com/golang-jwt/jwt/v5"
)

// The run: start everything, verify, measure.

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
	Name          string         `json:"name"`    // "chain" or a peer's name
	Version       string         `json:"version"` // the peer's, or the pinned Caddy's
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
	CPUDiffUS     float64        `json:"caddy_cpu_per_request_diff_us,omitempty"`
	P99Ratio      float64        `json:"p99_ratio,omitempty"`
	Target        float64        `json:"target"`
	Aim           float64        `json:"aim"`
	Pass          bool           `json:"meets_target"`
	RoundsOrder   []*roundResult `json:"round_results"`
	CookieUpdates int64          `json:"session_cookie_updates"`
	Sessions      int            `json:"sessions"`
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
	// Built once per process (main removes it), for every run of -peer.
	bin, err := harness.BuildCaddy()
	if err != nil {
		return nil, err
	}

	up, err := startUpstream()
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	defer up.close()

	opCfg := testop.Config{}
	var peerBin string
	if o.peer != "" {
		// The peers' callbacks next to our chain's (the OP's default).
		opCfg.RedirectURIs = append([]string{"http://127.0.0.1:*/auth/callback"}, peerRedirectURIs...)
		if peerBin, err = buildPeer(ctx, o.peersDir, o.peer); err != nil {
			return nil, fmt.Errorf("building %s: %w", o.peer, err)
		}
	}
	op, err := testop.Start(opCfg)
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
	cc := caddyConfig{Admin: admin, AddrA: addrA, AddrB: addrB, Upstream: up.addr,
		Issuer: op.Issuer(), KeyFile: keyFile, Store: o.store}
	if o.peer != "" {
		cc.AddrB = "" // site B is the peer, in its own process
	}
	if o.store == "redis" {
		rd, err := redistest.New(tmp)
		if err != nil {
			return nil, fmt.Errorf("-store redis: %w", err)
		}
		defer rd.Stop()
		cc.RedisAddr = rd.Addr()
	}
	cfg := caddyfile(cc)
	caddyDir := filepath.Join(tmp, "caddy")
	if err := os.MkdirAll(caddyDir, 0o700); err != nil {
		return nil, err
	}
	// Readiness is polled below: the ERROR log level hides Caddy's
	// "serving" message.
	cp, err := harness.Run(bin, caddyDir, cfg, "OIDC_CLIENT_SECRET="+op.ClientSecret(), "SESSION_KEY="+sessionKey)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()

	A := newSite("A", "reverse_proxy", "http://"+addrA+benchPath, o.conns)
	B := newSite("B", "oidc_auth ("+o.store+") + scope_authz (20 rules) + bff_rate_limit + bff_token mint + reverse_proxy", "http://"+addrB+benchPath, o.conns)
	A.cookie, B.cookie = o.aCookie, true
	A.proc, B.proc = cp, cp
	loginURL := "http://" + addrB + "/auth/login?return_to=" + url.QueryEscape(benchPath)
	version := "caddy " + mustPinnedCaddy()
	if o.peer != "" {
		pp, err := startPeer(peerBin, o.peer, filepath.Join(tmp, "peer"), addrB, up.addr, op.Issuer(), op.ClientID(), op.ClientSecret())
		if err != nil {
			return nil, err
		}
		defer pp.proc.Stop()
		B.label, B.proc, loginURL, version = pp.label, pp.proc, pp.login, pp.version
	}

	// Ready: A proxies (200); B without a session refuses (our chain:
	// 401; a peer: 401, 403 or a redirect to its login), which also shows
	// that B's 200s below are authenticated ones.
	if err := waitReady(ctx, cp, "site A", func() error { return expectStatus(A.client, A.url, "", http.StatusOK) }); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, B.proc, "site B", func() error {
		if o.peer != "" {
			return expectRefused(B.client, B.url, "")
		}
		return expectStatus(B.client, B.url, "", http.StatusUnauthorized)
	}); err != nil {
		return nil, err
	}

	logf("logging in on B as %s …", testop.AdminUsername)
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	lc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, _, err := harness.TryLogin(lc, loginURL, testop.AdminUsername, testop.AdminPassword, false)
	if err != nil {
		return nil, fmt.Errorf("login: %w\nB's output:\n%s", err, B.proc.Logs())
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A peer may land on its own page (caddy-security's portal); that
	// its session opens B is checked below.
	if resp.StatusCode != http.StatusOK || (o.peer == "" && resp.Request.URL.Path != benchPath) {
		return nil, fmt.Errorf("login landed on %s with %d, want %s 200\nB's output:\n%s", resp.Request.URL.Scheme+"://"+resp.Request.URL.Host+resp.Request.URL.Path, resp.StatusCode, benchPath, B.proc.Logs())
	}
	bURL, _ := url.Parse("http://" + addrB + "/")
	ck := newCookies(jar.Cookies(bURL))
	if *ck.header.Load() == "" {
		return nil, errors.New("login left no cookie")
	}

	cks := []*cookies{ck}
	if o.sessions > 1 {
		start := time.Now()
		headers, err := forgeSessions(ctx, o.store, cc.RedisAddr, o.sessions)
		if err != nil {
			return nil, err
		}
		cks = make([]*cookies, len(headers))
		for i, h := range headers {
			cks[i] = headerCookies(h)
		}
		// Each works on B (and none is the logged-in one's).
		for _, i := range []int{0, len(cks) / 2, len(cks) - 1} {
			if err := expectStatus(B.client, B.url, headers[i], http.StatusOK); err != nil {
				return nil, fmt.Errorf("forged session %d: %w\ncaddy output:\n%s", i, err, cp.Logs())
			}
		}
		logf("sealed %d sessions of %d distinct users in %v; each request takes the next one", len(cks), len(cks), time.Since(start).Round(time.Millisecond))
	}

	if o.peer != "" {
		user, err := verifyPeer(A, B, ck, up)
		if err != nil {
			return nil, fmt.Errorf("verification: %w\nB's output:\n%s", err, B.proc.Logs())
		}
		logf("verified: A reaches the upstream without a user, B only with the session (%s: %s); without it, or with it altered, B refuses", userHeader, user)
	} else {
		jwtLen, err := verify(A, B, ck, up, pub, "http://"+addrB)
		if err != nil {
			return nil, fmt.Errorf("verification: %w\ncaddy output:\n%s", err, cp.Logs())
		}
		logf("verified: A reaches the upstream without Authorization, B with one cached, valid %d-byte Bearer JWT", jwtLen)
	}
	if A.cookie && o.peer != "" {
		logf("both sites get GET %s with the same %d-byte Cookie header", benchPath, len(*ck.header.Load()))
	} else if A.cookie {
		logf("both sites get GET %s with the same %d-byte Cookie header (oidc_auth strips its cookies before B's upstream)", benchPath, len(*ck.header.Load()))
	} else {
		logf("both sites get GET %s; B's carries the %d-byte session Cookie header", benchPath, len(*ck.header.Load()))
	}

	res = &result{
		Name: cmp.Or(o.peer, "chain"), Version: version,
		Duration: o.duration.String(), Rounds: o.rounds, Conns: o.conns,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CaddyEnv: orDefault(os.Getenv("GOMAXPROCS"), "default"),
		Target:   cmp.Or(o.minRatio, 0.90), Aim: 0.95,
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
		c0 := sampleCPU(s.proc)
		// Caddy's CPU counts the warm-up too; so do the requests it is
		// divided by (see below), which the upstream counts.
		r, err := load(ctx, s, cks, o.conns, warmup, o.duration)
		if err != nil {
			if s.proc.Exited() {
				err = fmt.Errorf("%w\nsite %s's process exited (%v):\n%s", err, s.name, s.proc.Err(), s.proc.Logs())
			}
			return nil, err
		}
		c1 := sampleCPU(s.proc)
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
		if s == A && (d.bearer != 0 || d.other != 0 || d.user != 0 || d.none < r.Requests) {
			return nil, fmt.Errorf("round %d (A): upstream saw %d bearer, %d other, %d plain, %d with a user requests for %d answered", i+1, d.bearer, d.other, d.none, d.user, r.Requests)
		}
		if s == B && o.peer != "" && (d.user < r.Requests || d.bearer+d.none+d.other != d.user) {
			return nil, fmt.Errorf("round %d (B): upstream saw %d requests with a user, %d in all, for %d answered", i+1, d.user, d.bearer+d.none+d.other, r.Requests)
		}
		if s == B && o.peer == "" && (d.none != 0 || d.other != 0 || d.bearer < r.Requests) {
			return nil, fmt.Errorf("round %d (B): upstream saw %d bearer, %d other, %d plain requests for %d answered", i+1, d.bearer, d.other, d.none, r.Requests)
		}
		total := d.bearer + d.none + d.other
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
		logf("round %d/%d  %s  %6.0f req/s  p50 %.2fms  p99 %.2fms  CPU/req: %s %.1fµs, load generator+upstream %.1fµs; other processes %.0f%% of the CPUs",
			i/2+1, o.rounds, s.name, r.RPS, r.P50ms, r.P99ms, procName(o, s), r.CPUPerReq, r.SelfPerReq, 100*r.OtherLoad)
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
	// The gate is the median of the per-round ratios (each round's B
	// against the A round just before it), not a ratio of medians, which
	// can hide rounds far apart.
	res.Ratio = round3(median(res.PairRatios))
	if res.A.CPUPerReqUS > 0 {
		res.CPURatio = round3(res.B.CPUPerReqUS / res.A.CPUPerReqUS)
		res.CPUDiffUS = math.Round((res.B.CPUPerReqUS-res.A.CPUPerReqUS)*10) / 10
	}
	// SPEC §9's latency bar: the chain's p99 within 5% of the bare proxy's.
	if res.A.P99ms > 0 {
		res.P99Ratio = round3(res.B.P99ms / res.A.P99ms)
	}
	res.Pass = res.Ratio >= res.Target
	for _, c := range cks {
		res.CookieUpdates += c.sets.Load()
	}
	res.Sessions = len(cks)
	res.OtherLoad = maxOther
	res.Profile = o.profile
	res.Elapsed = time.Since(began).Round(100 * time.Millisecond).String()
	return res, nil
}

// procName names the process whose CPU a site's round counts.
func procName(o options, s *site) string {
	if s.name == "B" && o.peer != "" {
		return o.peer
	}
	return "caddy"
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

// verifyPeer checks, before any measurement, that the peer on B is not
// an open proxy: without the session cookie, and with its value altered,
// B refuses and the upstream sees nothing; with it, every request
// reaches the upstream carrying the logged-in user in userHeader (its
// subject or e-mail address). A's requests reach the upstream without
// one. It returns the user the upstream saw.
func verifyPeer(A, B *site, ck *cookies, up *upstream) (string, error) {
	before := up.counts()
	if err := expectRefused(B.client, B.url, ""); err != nil {
		return "", fmt.Errorf("site B without a session: %w", err)
	}
	h := *ck.header.Load()
	if err := expectRefused(B.client, B.url, alterCookies(h)); err != nil {
		return "", fmt.Errorf("site B with an altered session cookie: %w", err)
	}
	if d := up.counts().sub(before); d != (counts{}) {
		return "", fmt.Errorf("site B let unauthenticated requests through to the upstream: %+v", d)
	}
	for _, s := range []*site{A, B} {
		before := up.counts()
		up.takeUsers()
		up.record.Store(true)
		for range verifyCount {
			req, _ := http.NewRequest(http.MethodGet, s.url, nil)
			req.Header.Set("Accept", "application/json")
			if s.cookie {
				req.Header.Set("Cookie", *ck.header.Load())
			}
			resp, err := s.client.Do(req)
			if err != nil {
				up.record.Store(false)
				return "", fmt.Errorf("site %s: %w", s.name, err)
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != upstreamBody {
				up.record.Store(false)
				return "", fmt.Errorf("site %s answered %d, want 200 with the upstream's body: %s", s.name, resp.StatusCode, strings.TrimSpace(string(b)))
			}
			if set := resp.Cookies(); len(set) > 0 {
				ck.update(set)
			}
		}
		up.record.Store(false)
		users := up.takeUsers()
		d := up.counts().sub(before)
		if s == A {
			if d.user != 0 || d.bearer != 0 || d.none != verifyCount {
				return "", fmt.Errorf("site A: upstream saw %+v; want %d plain requests", d, verifyCount)
			}
			continue
		}
		if d.user != verifyCount {
			return "", fmt.Errorf("site B: upstream saw %d of %d requests with %s", d.user, verifyCount, userHeader)
		}
		for _, u := range users {
			if u != testop.AdminSubject && u != testop.AdminEmail && u != testop.AdminUsername {
				return "", fmt.Errorf("site B: upstream saw %s %q, not the logged-in user", userHeader, u)
			}
		}
		return users[0], nil
	}
	return "", errors.New("unreachable")
}

// alterCookies flips a character in the middle of each cookie's value.
func alterCookies(h string) string {
	var parts []string
	for part := range strings.SplitSeq(h, "; ") {
		name, value, _ := strings.Cut(part, "=")
		if len(value) > 2 {
			i := len(value) / 2
			c := byte('A')
			if value[i] == 'A' {
				c = 'B'
			}
			value = value[:i] + string(c) + value[i+1:]
		}
		parts = append(parts, name+"="+value)
	}
	return strings.Join(parts, "; ")
}

// expectRefused checks that u, requested as an API call, is not answered
// by the upstream: 401, 403 or a redirect (to a login).
func expectRefused(c *http.Client, u, cookie string) error {
	status, body, err := apiGet(c, u, cookie)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect:
		return nil
	}
	return fmt.Errorf("GET %s: %d, want 401, 403 or a redirect: %s", u, status, body)
}

func expectStatus(c *http.Client, u, cookie string, want int) error {
	status, body, err := apiGet(c, u, cookie)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("GET %s: %d, want %d: %s", u, status, want, body)
	}
	return nil
}

// apiGet requests u as a script would, with cookie when set, and returns
// the status and the start of the body.
func apiGet(c *http.Client, u, cookie string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
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
