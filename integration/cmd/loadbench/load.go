package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// The load generator.

// site is one of the two targets.
type site struct {
	name   string // "A" or "B"
	cookie bool   // send the session cookie
	label  string
	url    string
	client *http.Client
	proc   *harness.Process // the gateway serving it, for its CPU time
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

// headerCookies is the cookie state of a Cookie header.
func headerCookies(h string) *cookies {
	c := &cookies{values: map[string]string{}}
	for part := range strings.SplitSeq(h, "; ") {
		name, value, _ := strings.Cut(part, "=")
		c.values[name] = value
		c.order = append(c.order, name)
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
func load(ctx context.Context, s *site, cks []*cookies, conns int, warm, d time.Duration) (*roundResult, error) {
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
			// With many sessions, each request takes the next one: this
			// goroutine's i, i+conns, i+2·conns, …
			for k := 0; ctx.Err() == nil; k++ {
				ck := cks[(i+k*conns)%len(cks)]
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
