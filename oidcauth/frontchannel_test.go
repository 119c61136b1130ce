package oidcauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-bff/caddy-bff/internal/metrics/metricstest"
)

const testIssuer = "https://ID.example.com:8443/realms/portal"

var testIssuerQ = url.QueryEscape(testIssuer)

// frontchannelHandler provisions oidc_auth for issuer testIssuer with the
// session block given, logging into an observer.
func frontchannelHandler(t testing.TB, session map[string]any) (*Handler, *observer.ObservedLogs, caddy.Context) {
	t.Helper()
	session["keys"] = []string{goodKey}
	raw, _ := json.Marshal(map[string]any{"issuer": testIssuer, "client_id": "bff", "session": session})
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	m, err := ctx.LoadModuleByID("http.handlers.oidc_auth", raw)
	if err != nil {
		t.Fatal(err)
	}
	h := m.(*Handler)
	core, logs := observer.New(zap.DebugLevel)
	h.logger = zap.New(core)
	h.audit = h.logger.Named("audit")
	return h, logs, ctx
}

func serve(t *testing.T, h *Handler, method, target string, cookie *http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://portal.example"+target, nil)
	if cookie != nil {
		r.AddCookie(cookie)
	}
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, &caddyhttp.Server{})
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w
}

func fcl(iss, sid string) string {
	return "/auth/frontchannel-logout?" + url.Values{"iss": {iss}, "sid": {sid}}.Encode()
}

// frontchannelRejects are front-channel logout requests that must end
// nothing, with the status each gets; FuzzFrontchannel starts from them.
var frontchannelRejects = []struct {
	name, method, target string
	status               int
}{
	{"no query", "GET", "/auth/frontchannel-logout", 400},
	{"no sid", "GET", "/auth/frontchannel-logout?iss=" + testIssuerQ, 400},
	{"no iss", "GET", "/auth/frontchannel-logout?sid=s1", 400},
	{"empty sid", "GET", fcl(testIssuer, ""), 400},
	{"empty iss", "GET", fcl("", "s1"), 400},
	{"two sids", "GET", fcl(testIssuer, "s1") + "&sid=s2", 400},
	{"two iss", "GET", fcl(testIssuer, "s1") + "&iss=" + testIssuerQ, 400},
	{"oversized sid", "GET", fcl(testIssuer, strings.Repeat("s", maxSIDLen+1)), 400},
	{"oversized iss", "GET", fcl(testIssuer+strings.Repeat("/x", maxParamLen), "s1"), 400},
	{"other issuer", "GET", fcl("https://evil.example", "s1"), 400},
	{"issuer with a slash", "GET", fcl(testIssuer+"/", "s1"), 400},
	{"issuer case", "GET", fcl(strings.ToLower(testIssuer), "s1"), 400},
	{"issuer prefix", "GET", fcl("https://ID.example.com:8443/realms", "s1"), 400},
	{"malformed query", "GET", "/auth/frontchannel-logout?iss=" + testIssuerQ + "&sid=%zz", 400},
	{"semicolon", "GET", "/auth/frontchannel-logout?iss=" + testIssuerQ + ";sid=s1", 400},
	{"POST", "POST", fcl(testIssuer, "s1"), 405},
	{"PUT", "PUT", fcl(testIssuer, "s1"), 405},
	{"DELETE", "DELETE", fcl(testIssuer, "s1"), 405},
}

func TestFrontchannelRejects(t *testing.T) {
	h, logs, _ := frontchannelHandler(t, map[string]any{"store": "memory"})
	for _, tt := range frontchannelRejects {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(t, h, tt.method, tt.target, nil)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" { // every problem answer's
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			if tt.status == 405 && w.Header().Get("Allow") != "GET" {
				t.Errorf("Allow %q", w.Header().Get("Allow"))
			}
		})
	}
	h.state.revoked.mu.RLock()
	n := len(h.state.revoked.sids)
	h.state.revoked.mu.RUnlock()
	if n != 0 {
		t.Fatalf("a rejected request recorded %d sid endings", n)
	}
	for _, e := range logs.FilterMessage("frontchannel_logout").All() {
		if o := e.ContextMap()["outcome"]; !strings.HasPrefix(o.(string), "rejected:") {
			t.Fatalf("a rejected request was audited as %q", o)
		}
	}
}

func TestFrontchannelEndsBySID(t *testing.T) {
	for _, store := range []string{"cookie", "memory"} {
		t.Run(store, func(t *testing.T) {
			h, logs, ctx := frontchannelHandler(t, map[string]any{"store": store})
			const sid = "op-session-7f3a9c0e"
			now := time.Now()
			cookieFor := func(sub, sid string) *http.Cookie {
				s := &session{ID: newSessionID(), Subject: sub, SID: sid, Created: now.UnixMilli(), LastSeen: now.UnixMilli()}
				v, err := h.store.save(context.Background(), s, true, now.Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				return &http.Cookie{Name: "bff_session", Value: v}
			}
			alice1, alice2, other := cookieFor("alice", sid), cookieFor("alice", sid), cookieFor("alice", "another-op-session")
			// The logins that received these sids, as the callback records them.
			for _, v := range []string{sid, "another-op-session"} {
				if err := h.ends.issueSID(context.Background(), v, now.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
			// HEAD is safe: it ends nothing.
			if w := serve(t, h, "HEAD", fcl(testIssuer, sid), nil); w.Code != http.StatusMethodNotAllowed {
				t.Errorf("HEAD: %d, want 405", w.Code)
			}
			for _, c := range []*http.Cookie{alice1, alice2, other} {
				if w := serve(t, h, "GET", "/api", c); w.Code != http.StatusNoContent {
					t.Fatalf("before: %d", w.Code)
				}
			}
			reg := ctx.GetMetricsRegistry()
			before := metricstest.Value(t, reg, "caddy_bff_sessions_ended_total", "reason", "frontchannel")

			w := serve(t, h, "GET", fcl(testIssuer, sid), nil)
			if w.Code != http.StatusOK {
				t.Fatalf("front-channel logout: %d %s", w.Code, w.Body)
			}
			hd := w.Header()
			wantCSP := "frame-ancestors https://id.example.com:8443"
			if csp := hd.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'none';") || !strings.HasSuffix(csp, "; "+wantCSP) {
				t.Errorf("CSP %q, want default-src 'none' … %s", csp, wantCSP)
			}
			if hd.Get("Cache-Control") != "no-cache, no-store" || hd.Get("Pragma") != "no-cache" || hd.Get("X-Frame-Options") != "" || !strings.HasPrefix(hd.Get("Content-Type"), "text/html") {
				t.Errorf("headers %v", hd)
			}
			if body := w.Body.String(); !strings.Contains(body, "Signed out") || strings.Contains(strings.ToLower(body), "<script") {
				t.Errorf("page %q", body)
			}
			for name, c := range map[string]*http.Cookie{"first": alice1, "second": alice2} {
				if w := serve(t, h, "GET", "/api", c); w.Code != http.StatusUnauthorized {
					t.Errorf("%s session with the sid after front-channel logout: %d, want 401", name, w.Code)
				}
			}
			if w := serve(t, h, "GET", "/api", other); w.Code != http.StatusNoContent {
				t.Errorf("a session of another provider session ended: %d", w.Code)
			}
			want := 2.0
			if store == "cookie" {
				want = 1 // it cannot count
			}
			if got := metricstest.Value(t, reg, "caddy_bff_sessions_ended_total", "reason", "frontchannel") - before; got != want {
				t.Errorf("sessions_ended_total{reason=frontchannel} moved by %v, want %v", got, want)
			}
			if logs.FilterMessage("frontchannel_logout").FilterField(zap.String("outcome", "success")).Len() != 1 {
				t.Error("no audit entry")
			}
			for _, e := range logs.All() {
				if b, _ := json.Marshal(e.ContextMap()); strings.Contains(string(b)+e.Message, sid) {
					t.Errorf("the sid is logged: %s %s", e.Message, b)
				}
			}
			// Again is fine (idempotent).
			if w := serve(t, h, "GET", fcl(testIssuer, sid), nil); w.Code != http.StatusOK {
				t.Errorf("again: %d", w.Code)
			}
		})
	}
}

func TestProviderOrigin(t *testing.T) {
	for iss, want := range map[string]string{
		"https://id.example.com":               "https://id.example.com",
		"https://ID.Example.com:8443/realms/x": "https://id.example.com:8443",
		"http://127.0.0.1:9000":                "http://127.0.0.1:9000",
		"https://user@id.example.com/x":        "https://id.example.com",
		"https://[::1]:8443/":                  "'none'", // CSP cannot name an IP literal
		"https://id.example.com;script-src:*":  "'none'",
		"https://a,b.example":                  "'none'",
		"https://id.example.com'/":             "'none'",
	} {
		if got := (&Handler{Issuer: iss}).providerOrigin(); got != want {
			t.Errorf("%q: %q, want %q", iss, got, want)
		}
	}
}

// With the endings in Redis and Redis down, nothing is claimed: 503,
// no-store, and the session survives until a retry succeeds.
func TestFrontchannelStoreDown(t *testing.T) {
	h, _, _ := frontchannelHandler(t, map[string]any{"store": "cookie",
		"redis": map[string]any{"addresses": []string{"127.0.0.1:1"}, "dial_timeout": int64(200 * time.Millisecond)}})
	w := serve(t, h, "GET", fcl(testIssuer, "s1"), nil)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: %s", w.Code, w.Body)
	}
	if w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Retry-After") == "" ||
		w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("headers %v", w.Header())
	}
	if strings.Contains(w.Body.String(), "Signed out") {
		t.Fatal("claimed success")
	}
}

// FuzzFrontchannel sends arbitrary queries and methods: never a panic or
// a 500, and a session ends (200) only for exactly one iss equal to the
// issuer and exactly one sid of 1 to maxSIDLen bytes.
func FuzzFrontchannel(f *testing.F) {
	for _, tt := range frontchannelRejects {
		_, q, _ := strings.Cut(tt.target, "?")
		f.Add(tt.method, q)
	}
	f.Add("GET", strings.TrimPrefix(fcl(testIssuer, "s1"), "/auth/frontchannel-logout?"))
	f.Add("HEAD", strings.TrimPrefix(fcl(testIssuer, "s1"), "/auth/frontchannel-logout?"))
	h, _, _ := frontchannelHandler(f, map[string]any{"store": "memory"})
	f.Fuzz(func(t *testing.T, method, rawQuery string) {
		if method != "GET" && method != "HEAD" && method != "POST" {
			method = "GET"
		}
		r := httptest.NewRequest(method, "http://portal.example/auth/frontchannel-logout", nil)
		r.URL.RawQuery = rawQuery
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, &caddyhttp.Server{})
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		q, err := url.ParseQuery(rawQuery)
		valid := err == nil && method == "GET" && len(q["iss"]) == 1 && q["iss"][0] == testIssuer &&
			len(q["sid"]) == 1 && q["sid"][0] != "" && len(q["sid"][0]) <= maxSIDLen
		if got := w.Code == http.StatusOK; got != valid {
			t.Fatalf("%s ?%s: %d, valid %v", method, rawQuery, w.Code, valid)
		}
		if cc := w.Header().Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Fatalf("%s ?%s: Cache-Control %q", method, rawQuery, cc)
		}
	})
}

// Anyone can send a front-channel logout: a sid no login here received
// gets the same page, and nothing is stored for it, so forged sids cannot
// grow the endings (or make the memory store scan its sessions).
func TestFrontchannelForgedSIDsAreNotStored(t *testing.T) {
	h, logs, _ := frontchannelHandler(t, map[string]any{"store": "cookie"})
	for i := range 100 {
		w := serve(t, h, "GET", fcl(testIssuer, "forged-"+strconv.Itoa(i)), nil)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Signed out") {
			t.Fatalf("forged sid: %d %s", w.Code, w.Body)
		}
	}
	h.state.revoked.mu.RLock()
	n := len(h.state.revoked.sids)
	h.state.revoked.mu.RUnlock()
	if n != 0 {
		t.Fatalf("%d forged sids stored", n)
	}
	if got := logs.FilterMessage("frontchannel_logout").FilterField(zap.String("outcome", "rejected:unknown_sid")).Len(); got != 100 {
		t.Fatalf("%d audit entries for unknown sids, want 100", got)
	}
}
