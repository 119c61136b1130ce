// Package demoapi is the demo's backend service: a stateless JSON API that
// trusts nothing but a JWT bearer token, verified offline against a JWKS
// (signature, alg, iss, aud, exp), as the services behind the gateway are
// meant to.
//
//	GET /api/me       who the token says the caller is (any valid token)
//	GET /api/recipes  the recipes, for tokens with the recipes:read scope
//
// Failures follow RFC 6750: 401 with WWW-Authenticate: Bearer
// error="invalid_token" for a missing or bad token, 403
// error="insufficient_scope" for a missing scope.
package demoapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// ScopeRecipesRead is the scope GET /api/recipes requires.
const ScopeRecipesRead = "recipes:read"

// defaultAlgorithms are the signature algorithms accepted by default:
// asymmetric only, never "none" or an HMAC a public key could be fed to.
func defaultAlgorithms() []string { return []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"} }

// Config sets up the API.
type Config struct {
	// JWKSURL is where the verification keys are fetched (required). An
	// unknown kid triggers a refetch, at most every 5 seconds.
	JWKSURL string
	// Issuer is the required iss (required).
	Issuer string
	// Audience is the required aud (required).
	Audience string
	// Algorithms accepted; default ES256, ES384, RS256, PS256, EdDSA.
	Algorithms []string
	// Leeway for exp/nbf/iat; default 5s.
	Leeway time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// API is the demo service; it is an http.Handler.
type API struct {
	cfg    Config
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
	mux    *http.ServeMux
}

// New builds the API. The JWKS need not be reachable yet: keys are
// fetched in the background and on the first unknown kid.
func New(cfg Config) (*API, error) {
	if cfg.JWKSURL == "" || cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("demoapi: JWKSURL, Issuer and Audience are required")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgorithms()
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:            &http.Client{Timeout: 5 * time.Second},
		HTTPTimeout:       5 * time.Second,
		RefreshInterval:   5 * time.Minute,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(5*time.Second), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				cfg.Logger.WarnContext(ctx, "jwks refresh failed", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("demoapi: jwks: %w", err)
	}
	a := &API{cfg: cfg, kf: kf, cancel: cancel, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /api/me", a.withToken(a.me))
	a.mux.HandleFunc("GET /api/recipes", a.withToken(a.requireScope(ScopeRecipesRead, a.recipes)))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "path": r.URL.Path})
	})
	return a, nil
}

// Close stops the background JWKS refresh.
func (a *API) Close() { a.cancel() }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Claims are the token claims the API reads.
type Claims struct {
	jwt.RegisteredClaims
	Scope  string   `json:"scope,omitempty"`
	Scp    []string `json:"scp,omitempty"`
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// Scopes returns the token's scopes: the space-separated scope claim
// (RFC 8693, RFC 9068), or an scp array.
func (c *Claims) Scopes() []string {
	if c.Scope != "" {
		return strings.Fields(c.Scope)
	}
	return c.Scp
}

type ctxKey struct{}

// Verify parses and verifies a compact JWT.
func (a *API) Verify(ctx context.Context, raw string) (*Claims, error) {
	claims := new(Claims)
	_, err := jwt.ParseWithClaims(raw, claims, a.kf.KeyfuncCtx(ctx),
		jwt.WithValidMethods(a.cfg.Algorithms),
		jwt.WithIssuer(a.cfg.Issuer),
		jwt.WithAudience(a.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(a.cfg.Leeway),
	)
	if err != nil {
		return nil, err
	}
	if claims.Subject == "" {
		return nil, errors.New("token has no sub")
	}
	return claims, nil
}

func (a *API) withToken(next func(http.ResponseWriter, *http.Request, *Claims)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, raw, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="demo-api"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "missing bearer token"})
			return
		}
		claims, err := a.Verify(r.Context(), strings.TrimSpace(raw))
		if err != nil {
			a.cfg.Logger.InfoContext(r.Context(), "token rejected", "path", r.URL.Path, "error", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="demo-api", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "token verification failed"})
			return
		}
		next(w, r, claims)
	}
}

func (a *API) requireScope(scope string, next func(http.ResponseWriter, *http.Request, *Claims)) func(http.ResponseWriter, *http.Request, *Claims) {
	return func(w http.ResponseWriter, r *http.Request, c *Claims) {
		if !slices.Contains(c.Scopes(), scope) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="demo-api", error="insufficient_scope", scope=%q`, scope))
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "scope": scope})
			return
		}
		next(w, r, c)
	}
}

func (a *API) me(w http.ResponseWriter, _ *http.Request, c *Claims) {
	out := map[string]any{
		"sub":    c.Subject,
		"scopes": nonNil(c.Scopes()),
		"iss":    c.Issuer,
		"aud":    c.Audience,
	}
	if c.ExpiresAt != nil {
		out["exp"] = c.ExpiresAt.Unix()
	}
	if c.Email != "" {
		out["email"] = c.Email
	}
	if c.Name != "" {
		out["name"] = c.Name
	}
	if len(c.Groups) > 0 {
		out["groups"] = c.Groups
	}
	writeJSON(w, http.StatusOK, out)
}

// Recipe is one demo recipe.
type Recipe struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

var recipes = []Recipe{
	{ID: "1", Title: "Shakshuka"},
	{ID: "2", Title: "Pasta e ceci"},
	{ID: "3", Title: "Dal tadka"},
}

func (a *API) recipes(w http.ResponseWriter, _ *http.Request, c *Claims) {
	writeJSON(w, http.StatusOK, map[string]any{
		"sub":     c.Subject,
		"scopes":  nonNil(c.Scopes()),
		"recipes": recipes,
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
