package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkOP is an httptest provider with an introspection endpoint (unless
// noIntrospection) and a UserInfo endpoint, answering as the test says.
type checkOP struct {
	srv             *httptest.Server
	noIntrospection bool
	// introspect and userinfo write the endpoints' replies.
	introspect, userinfo http.HandlerFunc
	introspections       atomic.Int32
	userinfos            atomic.Int32
	// basicUser is the client id of the last introspection's Basic auth.
	mu        sync.Mutex
	basicUser string
}

func newCheckOP(t *testing.T) *checkOP {
	t.Helper()
	op := &checkOP{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		base := op.srv.URL
		doc := map[string]any{
			"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
			"userinfo_endpoint": base + "/userinfo",
			"jwks_uri":          base + "/keys", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		}
		if !op.noIntrospection {
			doc["introspection_endpoint"] = base + "/introspect"
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) })
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		op.introspections.Add(1)
		user, _, _ := r.BasicAuth()
		op.mu.Lock()
		op.basicUser = user
		op.mu.Unlock()
		op.introspect(w, r)
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		op.userinfos.Add(1)
		op.userinfo(w, r)
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func jsonReply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// checkHandler is an oidc_auth with revalidate 1m against op, the memory
// store, its clock at *now, and a session without a refresh token in its
// store, last checked 2 minutes ago: due.
func checkHandler(t *testing.T, op *checkOP, now *time.Time) (*Handler, *session) {
	t.Helper()
	h := clockedHandler(t, op.srv.URL, "revalidate 1m", now)
	s := testSession()
	s.RefreshToken = ""
	s.Created, s.LastSeen = now.Add(-5*time.Minute).UnixMilli(), now.UnixMilli()
	s.Checked = now.Add(-2 * time.Minute).UnixMilli()
	s.TokenExpiry = now.Add(time.Hour).Unix()
	storeSession(t, h, s, *now)
	return h, s
}

// The check follows what the session holds and the provider offers.
func TestRevalidateMethod(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	live := now.Add(time.Minute).Unix()
	both := &providerInfo{introspect: "https://id.example/introspect", userinfo: "https://id.example/userinfo"}
	uiOnly := &providerInfo{userinfo: "https://id.example/userinfo"}
	for _, tc := range []struct {
		name     string
		s        session
		info     *providerInfo
		userinfo bool
		want     string
	}{
		{"refresh token", session{RefreshToken: "rt", AccessToken: "at", TokenExpiry: live}, both, true, checkRefresh},
		{"refresh token, access token expired", session{RefreshToken: "rt", AccessToken: "at", TokenExpiry: 1}, both, true, checkRefresh},
		{"introspection first", session{AccessToken: "at", TokenExpiry: live}, both, true, checkIntrospection},
		{"introspection, userinfo off", session{AccessToken: "at", TokenExpiry: live}, both, false, checkIntrospection},
		{"userinfo without introspection", session{AccessToken: "at", TokenExpiry: live}, uiOnly, true, checkUserInfo},
		{"unknown expiry", session{AccessToken: "at"}, uiOnly, true, checkUserInfo},
		// Attacks on the choice: nothing that could end every session
		// for a reason not the provider's.
		{"userinfo off or refused", session{AccessToken: "at", TokenExpiry: live}, uiOnly, false, checkNone},
		{"access token expired", session{AccessToken: "at", TokenExpiry: now.Unix()}, both, true, checkNone},
		{"no access token", session{TokenExpiry: live}, both, true, checkNone},
		{"provider offers nothing", session{AccessToken: "at", TokenExpiry: live}, &providerInfo{}, true, checkNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := revalidateMethod(&tc.s, tc.info, tc.userinfo, now); got != tc.want {
				t.Fatalf("revalidateMethod = %q, want %q", got, tc.want)
			}
		})
	}
}

// Due by the last check (or creation, for sessions from before), never
// with revalidate off, not while an outage holds it back.
func TestRevalidateDue(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h, s := checkHandler(t, newCheckOP(t), &now)
	at := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	for _, tc := range []struct {
		name             string
		checked, created int64
		want             bool
	}{
		{"checked 2m ago", at(-2 * time.Minute), at(-5 * time.Minute), true},
		{"checked 1m ago", at(-time.Minute), at(-5 * time.Minute), true},
		{"checked 59s ago", at(-59 * time.Second), at(-5 * time.Minute), false},
		{"never checked, created 2m ago", 0, at(-2 * time.Minute), true},
		{"never checked, created 10s ago", 0, at(-10 * time.Second), false},
		{"checked in the future", at(time.Hour), at(-5 * time.Minute), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *s
			c.Checked, c.Created = tc.checked, tc.created
			if got := h.revalidateDue(&c, now); got != tc.want {
				t.Fatalf("revalidateDue = %v, want %v", got, tc.want)
			}
		})
	}
	off := *h
	off.Revalidate = 0
	if off.revalidateDue(s, now) {
		t.Fatal("due with revalidate off")
	}
	h.state.refresh.retry.hold(s.hkey(), now.Add(time.Second))
	if h.revalidateDue(s, now) {
		t.Fatal("due while an outage holds it back")
	}
	if !h.revalidateDue(s, now.Add(time.Second)) {
		t.Fatal("still held back after the hold")
	}
}

func TestRevalidateIntrospection(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/x", nil)
	t.Run("active", func(t *testing.T) {
		now := time.Unix(1_800_000_000, 0)
		op := newCheckOP(t)
		release := make(chan struct{})
		op.introspect = func(w http.ResponseWriter, r *http.Request) {
			<-release
			jsonReply(200, `{"active":true,"sub":"user-1"}`)(w, r)
		}
		h, s := checkHandler(t, op, &now)
		var wg sync.WaitGroup
		results := make([]*session, 8)
		for i := range results {
			wg.Go(func() {
				ns, _, err := h.renew(r, s, now)
				if err != nil {
					t.Error(err)
				}
				results[i] = ns
			})
		}
		time.Sleep(50 * time.Millisecond)
		close(release)
		wg.Wait()
		if n := op.introspections.Load(); n != 1 {
			t.Fatalf("%d introspections for 8 concurrent requests, want 1", n)
		}
		op.mu.Lock()
		if op.basicUser != "portal" {
			t.Errorf("introspection authenticated as %q, want the client (basic)", op.basicUser)
		}
		op.mu.Unlock()
		for _, ns := range results {
			if ns == nil || ns.Checked != now.UnixMilli() || ns.AccessToken != s.AccessToken {
				t.Fatalf("checked session %+v", ns)
			}
		}
		stored, err := h.store.load(context.Background(), s.ID)
		if err != nil || stored.Checked != now.UnixMilli() {
			t.Fatalf("the store holds %+v, %v", stored, err)
		}
		if h.revalidateDue(stored, now.Add(59*time.Second)) || !h.revalidateDue(stored, now.Add(time.Minute)) {
			t.Fatal("the next check is not one interval after this one")
		}
	})
	for _, tc := range []struct {
		name  string
		reply http.HandlerFunc
	}{
		{"inactive", jsonReply(200, `{"active":false}`)},
		{"another subject's token", jsonReply(200, `{"active":true,"sub":"user-2"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			op := newCheckOP(t)
			op.introspect = tc.reply
			h, s := checkHandler(t, op, &now)
			if _, _, err := h.renew(r, s, now); !errors.Is(err, errSessionEnded) {
				t.Fatalf("renew: %v, want errSessionEnded", err)
			}
			if _, err := h.store.load(context.Background(), s.ID); !errors.Is(err, errNoSession) {
				t.Fatalf("the session survives: %v", err)
			}
			if !h.revalidateDue(s, now) {
				t.Fatal("an ending is held back like an outage")
			}
		})
	}
	// An outage keeps the session as it was (not marked checked) and holds
	// the next attempt back.
	for _, tc := range []struct {
		name  string
		reply http.HandlerFunc
	}{
		{"server error", jsonReply(500, `{"error":"server_error"}`)},
		{"unavailable", jsonReply(503, `{"error":"temporarily_unavailable"}`)},
		{"client refused", jsonReply(401, `{"error":"invalid_client"}`)},
		{"no active member", jsonReply(200, `{"sub":"user-1"}`)},
		{"not JSON", jsonReply(200, `<html>`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			op := newCheckOP(t)
			op.introspect = tc.reply
			h, s := checkHandler(t, op, &now)
			_, _, err := h.renew(r, s, now)
			if !errors.Is(err, errProviderDown) {
				t.Fatalf("renew: %v, want errProviderDown", err)
			}
			got, err := h.store.load(context.Background(), s.ID)
			if err != nil || got.Checked != s.Checked {
				t.Fatalf("after an outage the store holds %+v, %v", got, err)
			}
			if h.revalidateDue(s, now.Add(revalidateRetry-time.Millisecond)) {
				t.Fatal("the next request calls the provider again at once")
			}
			if !h.revalidateDue(s, now.Add(revalidateRetry)) {
				t.Fatal("not retried after the backoff")
			}
			if n := op.introspections.Load(); n != 1 {
				t.Fatalf("%d introspections, want 1", n)
			}
		})
	}
}

// Without an introspection endpoint, UserInfo: 401 ends the session; a
// 403 (insufficient_scope says nothing about the session) and a 5xx keep
// it.
func TestRevalidateUserInfo(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/x", nil)
	for _, tc := range []struct {
		name  string
		reply http.HandlerFunc
		want  error
	}{
		{"known", jsonReply(200, `{"sub":"user-1"}`), nil},
		{"revoked 401", jsonReply(401, `{"error":"invalid_token"}`), errSessionEnded},
		{"403 is not a revocation", jsonReply(403, `{"error":"insufficient_scope"}`), errProviderDown},
		{"another subject", jsonReply(200, `{"sub":"user-2"}`), errSessionEnded},
		{"outage", jsonReply(502, `bad gateway`), errProviderDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			op := newCheckOP(t)
			op.noIntrospection = true
			op.userinfo = tc.reply
			h, s := checkHandler(t, op, &now)
			ns, _, err := h.renew(r, s, now)
			if tc.want == nil {
				if err != nil || ns.Checked != now.UnixMilli() {
					t.Fatalf("renew: %+v %v", ns, err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("renew: %v, want %v", err, tc.want)
			}
			if n := op.userinfos.Load(); n != 1 || op.introspections.Load() != 0 {
				t.Fatalf("%d userinfo calls, %d introspections; want 1, 0", n, op.introspections.Load())
			}
		})
	}
	t.Run("userinfo off", func(t *testing.T) {
		now := time.Unix(1_800_000_000, 0)
		op := newCheckOP(t)
		op.noIntrospection = true
		op.userinfo = jsonReply(401, `{}`)
		h, s := checkHandler(t, op, &now)
		h.UserInfo = "off"
		// Nothing can vouch for the session: it ends (fail closed).
		if _, _, err := h.renew(r, s, now); !errors.Is(err, errSessionEnded) {
			t.Fatalf("renew with nothing to check with: %v, want the session ended", err)
		}
		if _, err := h.store.load(context.Background(), s.ID); err == nil {
			t.Fatal("the unverifiable session still loads")
		}
		if op.userinfos.Load() != 0 {
			t.Fatal("userinfo off, and it was called")
		}
	})
}
