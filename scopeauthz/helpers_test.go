package scopeauthz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// loadModule decodes cfg strictly, provisions and validates it, as Caddy
// does; the context is cancelled when the test ends.
func loadModule(t testing.TB, cfg any) (*Handler, error) {
	t.Helper()
	raw, ok := cfg.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	m, err := ctx.LoadModuleByID("http.handlers.scope_authz", raw)
	if err != nil {
		return nil, err
	}
	return m.(*Handler), nil
}

// mustLoad loads cfg and routes the handler's logs to an observer.
func mustLoad(t testing.TB, cfg any) (*Handler, *observer.ObservedLogs) {
	t.Helper()
	h, err := loadModule(t, cfg)
	if err != nil {
		t.Fatalf("loading scope_authz: %v", err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	h.audit = h.logger.Named("audit")
	return h, logs
}

// user describes the identity oidc_auth would attach; nil is anonymous.
type user struct {
	sub    string
	scopes []string
	claims map[string]any
}

// newRequest is a request as Caddy's server hands it to handlers. target
// is parsed as a request-target, so escapes stay as the client sent them.
func newRequest(t testing.TB, method, target string, u *user) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, "http://portal.example/", nil)
	parsed, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("request target %q: %v", target, err)
	}
	r.URL, r.RequestURI = parsed, target
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, &caddyhttp.Server{})
	if u != nil {
		id := &oidcauth.Identity{Subject: u.sub, Scopes: u.scopes, Claims: u.claims}
		oidcauth.InsecureSetIdentity(r, id, "session-key", "", time.Time{})
	}
	return r
}

// upstream counts the requests that reached the next handler.
type upstream struct{ calls atomic.Int32 }

func (u *upstream) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	u.calls.Add(1)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serve runs h and returns the response, whether the upstream was called
// and the problem body, if any.
func serve(t testing.TB, h *Handler, r *http.Request) (*httptest.ResponseRecorder, bool, problem.Details) {
	t.Helper()
	w := httptest.NewRecorder()
	up := new(upstream)
	if err := h.ServeHTTP(w, r, up); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	var p problem.Details
	if w.Header().Get("Content-Type") == problem.ContentType {
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("problem body %q: %v", w.Body.String(), err)
		}
	}
	return w, up.calls.Load() > 0, p
}
