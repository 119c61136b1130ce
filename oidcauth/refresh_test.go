package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOP is an httptest token endpoint behind a discovery document: what
// the refresh code talks to, answering as the test says.
type fakeOP struct {
	srv *httptest.Server
	// answer writes the token endpoint's reply to the n-th call (from 1).
	answer func(w http.ResponseWriter, r *http.Request, n int)
	calls  atomic.Int32
	// refreshTokens are the refresh_token values the endpoint was sent.
	mu            sync.Mutex
	refreshTokens []string
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	op := &fakeOP{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		base := op.srv.URL
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": base, "authorization_endpoint": base + "/authorize", "token_endpoint": base + "/token",
			"jwks_uri": base + "/keys", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) })
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		n := int(op.calls.Add(1))
		_ = r.ParseForm()
		op.mu.Lock()
		op.refreshTokens = append(op.refreshTokens, r.PostForm.Get("refresh_token"))
		op.mu.Unlock()
		op.answer(w, r, n)
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func tokenReply(access, refresh string, expiresIn int) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"refresh_token":%q,"token_type":"Bearer","expires_in":%d}`, access, refresh, expiresIn)
	}
}

func errorReply(status int, code string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q}`, code)
	}
}

// clockedHandler is an oidc_auth provisioned against issuer with the
// memory store and the extra subdirectives, its clock at *now.
func clockedHandler(t *testing.T, issuer, extra string, now *time.Time) *Handler {
	t.Helper()
	t.Setenv("BFF_TEST_KEY", goodKey)
	h, err := provisionFromCaddyfile(t, `oidc_auth {
		issuer `+issuer+`
		client_id portal
		client_secret s3cret
		`+extra+`
		session {
			store memory
			keys {env.BFF_TEST_KEY}
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return *now }
	h.now = clock
	h.state.memory.now = clock
	return h
}

// storeSession puts s into h's store, kept an hour past now.
func storeSession(t *testing.T, h *Handler, s *session, now time.Time) {
	t.Helper()
	if _, err := h.store.save(context.Background(), s, true, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.key = hashID(s.ID)
}

// refreshHandler is an oidc_auth provisioned against op with the memory
// store, its clock at *now, and a session in its store whose access token
// is about to expire.
func refreshHandler(t *testing.T, op *fakeOP, now *time.Time) (*Handler, *session) {
	t.Helper()
	h := clockedHandler(t, op.srv.URL, "scopes openid offline_access\n\t\trefresh_skew 30s", now)
	s := testSession()
	s.Created, s.LastSeen = now.UnixMilli(), now.UnixMilli()
	s.TokenExpiry = now.Add(20 * time.Second).Unix()
	storeSession(t, h, s, *now)
	return h, s
}

// The skew decides when a refresh is due, by the injected clock.
func TestNeedsRefresh(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h, s := refreshHandler(t, newFakeOP(t), &now)
	exp := time.Unix(s.TokenExpiry, 0)
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{exp.Add(-31 * time.Second), false},
		{exp.Add(-30 * time.Second), true},
		{exp, true},
		{exp.Add(time.Hour), true},
	} {
		if got := h.needsRefresh(s, tc.at); got != tc.want {
			t.Errorf("%s before expiry: needsRefresh = %v, want %v", exp.Sub(tc.at), got, tc.want)
		}
	}
	// A token shorter-lived than twice the skew refreshes at half its
	// life, not from the moment it is issued.
	short := *s
	short.TokenLife = 20
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{exp.Add(-19 * time.Second), false},
		{exp.Add(-11 * time.Second), false},
		{exp.Add(-10 * time.Second), true},
	} {
		if got := h.needsRefresh(&short, tc.at); got != tc.want {
			t.Errorf("20s token, %s before expiry: needsRefresh = %v, want %v", exp.Sub(tc.at), got, tc.want)
		}
	}
	noRefresh := *s
	noRefresh.RefreshToken = ""
	if h.needsRefresh(&noRefresh, exp) {
		t.Error("a session without a refresh token needs a refresh")
	}
}

// A refresh stores the new tokens; concurrent requests of the session
// share one call; a request still carrying the old refresh token right
// after gets the same result without spending it again.
func TestRefreshRotates(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	op := newFakeOP(t)
	release := make(chan struct{})
	op.answer = func(w http.ResponseWriter, r *http.Request, n int) {
		<-release
		tokenReply("at-2", "rt-2", 300)(w, r, n)
	}
	h, s := refreshHandler(t, op, &now)
	r := httptest.NewRequest("GET", "/api/x", nil)

	var wg sync.WaitGroup
	results := make([]*session, 8)
	for i := range results {
		wg.Go(func() {
			ns, _, err := h.refresh(r, s)
			if err != nil {
				t.Error(err)
			}
			results[i] = ns
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := op.calls.Load(); n != 1 {
		t.Fatalf("%d token calls for 8 concurrent refreshes, want 1", n)
	}
	// oauth2 turns expires_in into an expiry by the real clock.
	wantExp := time.Now().Add(300 * time.Second).Unix()
	for _, ns := range results {
		if ns == nil || ns.AccessToken != "at-2" || ns.RefreshToken != "rt-2" || ns.TokenExpiry < wantExp-5 || ns.TokenExpiry > wantExp {
			t.Fatalf("refreshed session %+v", ns)
		}
	}
	if op.refreshTokens[0] != s.RefreshToken {
		t.Fatalf("the endpoint was sent %q", op.refreshTokens[0])
	}
	stored, err := h.store.load(context.Background(), s.ID)
	if err != nil || stored.AccessToken != "at-2" || stored.RefreshToken != "rt-2" {
		t.Fatalf("the store holds %+v, %v", stored, err)
	}
	if ns, _, err := h.refresh(r, s); err != nil || ns.AccessToken != "at-2" || op.calls.Load() != 1 {
		t.Fatalf("a late request with the old refresh token: %+v %v, %d calls", ns, err, op.calls.Load())
	}
}

// invalid_grant ends the session (SPEC §4) even while its access token is
// still valid; a provider error or outage keeps it.
func TestRefreshFailures(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/x", nil)
	t.Run("invalid_grant", func(t *testing.T) {
		now := time.Unix(1_800_000_000, 0)
		op := newFakeOP(t)
		op.answer = errorReply(http.StatusBadRequest, "invalid_grant")
		h, s := refreshHandler(t, op, &now)
		if _, _, err := h.refresh(r, s); !errors.Is(err, errSessionEnded) {
			t.Fatalf("refresh: %v, want errSessionEnded", err)
		}
		if _, err := h.store.load(context.Background(), s.ID); !errors.Is(err, errNoSession) {
			t.Fatalf("the session survives invalid_grant: %v", err)
		}
	})
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, int)
	}{
		{"server error", errorReply(http.StatusInternalServerError, "server_error")},
		{"temporarily unavailable", errorReply(http.StatusServiceUnavailable, "temporarily_unavailable")},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request, _ int) { _, _ = w.Write([]byte("<html>")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_800_000_000, 0)
			op := newFakeOP(t)
			op.answer = tc.answer
			h, s := refreshHandler(t, op, &now)
			_, _, err := h.refresh(r, s)
			if err == nil || errors.Is(err, errSessionEnded) {
				t.Fatalf("refresh: %v, want a provider error", err)
			}
			if !errors.Is(err, errProviderDown) {
				t.Fatalf("refresh: %v, want errProviderDown", err)
			}
			if got, err := h.store.load(context.Background(), s.ID); err != nil || got.RefreshToken != s.RefreshToken {
				t.Fatalf("the session was lost to a provider error: %+v %v", got, err)
			}
		})
	}
	t.Run("ended meanwhile", func(t *testing.T) {
		now := time.Unix(1_800_000_000, 0)
		op := newFakeOP(t)
		h, s := refreshHandler(t, op, &now)
		op.answer = func(w http.ResponseWriter, r *http.Request, n int) {
			// A logout lands while the provider answers: it wins.
			if err := h.store.remove(context.Background(), s, now.Add(time.Hour)); err != nil {
				t.Error(err)
			}
			tokenReply("at-2", "rt-2", 300)(w, r, n)
		}
		if _, _, err := h.refresh(r, s); !errors.Is(err, errSessionEnded) {
			t.Fatalf("refresh: %v, want errSessionEnded", err)
		}
		if _, err := h.store.load(context.Background(), s.ID); !errors.Is(err, errNoSession) {
			t.Fatalf("the refresh revived a logged-out session: %v", err)
		}
	})
}
