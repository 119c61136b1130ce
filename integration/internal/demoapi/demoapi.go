// Package demoapi is the demo's backend service: a stateless JSON API that
// trusts nothing but a JWT bearer token, verified offline against a JWKS
// (signature, alg, iss, aud, exp), as the services behind the gateway are
// meant to.
//
//	GET  /api/me           who the token says the caller is (any valid token)
//	GET  /api/recipes      the recipes, for tokens with the recipes:read scope
//	POST /api/recipes      adds a recipe ({"title": "..."}), recipes:write
//	GET  /api/admin/stats  the API's counters, admin
//	GET  /api/payments     the caller's payments; POST sends one (payments.go)
//
// The gateway's scope_authz checks the same scopes before a request gets
// here; the API checks them again (defence in depth), so it is safe even
// if the gateway's policy is wrong. Failures follow RFC 6750: 401 with
// WWW-Authenticate: Bearer error="invalid_token" for a missing or bad
// token, 403 error="insufficient_scope" for a missing scope.
package demoapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// The scopes the API requires.
const (
	// ScopeRecipesRead is the scope GET /api/recipes requires.
	ScopeRecipesRead = "recipes:read"
	// ScopeRecipesWrite is the scope POST /api/recipes requires.
	ScopeRecipesWrite = "recipes:write"
	// ScopeAdmin is the scope GET /api/admin/stats requires.
	ScopeAdmin = "admin"
)

const (
	// maxRecipes bounds the recipes kept in memory.
	maxRecipes = 100
	// maxTitleLen bounds a recipe's title, in characters.
	maxTitleLen = 80
	// maxBody bounds a request body.
	maxBody = 4 << 10
)

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

	// requests counts every request that reached the API.
	requests atomic.Int64

	mu      sync.Mutex
	recipes []Recipe
	nextID  int
	// bySubject counts the verified requests of each caller.
	bySubject map[string]int
	// payments are each caller's payments (payments.go).
	payments map[string][]Payment
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
	a := &API{cfg: cfg, kf: kf, cancel: cancel, mux: http.NewServeMux(),
		recipes: slices.Clone(seedRecipes), nextID: len(seedRecipes) + 1, bySubject: map[string]int{}}
	a.mux.HandleFunc("GET /api/me", a.withToken(a.me))
	a.mux.HandleFunc("GET /api/recipes", a.withToken(a.requireScope(ScopeRecipesRead, a.listRecipes)))
	a.mux.HandleFunc("POST /api/recipes", a.withToken(a.requireScope(ScopeRecipesWrite, a.addRecipe)))
	a.mux.HandleFunc("GET /api/admin/stats", a.withToken(a.requireScope(ScopeAdmin, a.stats)))
	a.mux.HandleFunc("GET /api/payments", a.withToken(a.listPayments))
	a.mux.HandleFunc("POST /api/payments", a.withToken(a.addPayment))
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "path": r.URL.Path})
	})
	return a, nil
}

// Close stops the background JWKS refresh.
func (a *API) Close() { a.cancel() }

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.requests.Add(1)
	a.mux.ServeHTTP(w, r)
}

// Requests returns how many requests reached the API, so tests can tell
// that the gateway stopped one.
func (a *API) Requests() int64 { return a.requests.Load() }

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
		a.mu.Lock()
		a.bySubject[claims.Subject]++
		a.mu.Unlock()
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
	ID     string `json:"id"`
	Title  string `json:"title"`
	Author string `json:"author,omitempty"` // sub of who added it
}

var seedRecipes = []Recipe{
	{ID: "1", Title: "Shakshuka"},
	{ID: "2", Title: "Pasta e ceci"},
	{ID: "3", Title: "Dal tadka"},
}

func (a *API) listRecipes(w http.ResponseWriter, _ *http.Request, c *Claims) {
	a.mu.Lock()
	list := slices.Clone(a.recipes)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"sub":     c.Subject,
		"scopes":  nonNil(c.Scopes()),
		"recipes": list,
	})
}

// readJSON decodes r's body, application/json of at most maxBody bytes
// holding exactly one object with only in's fields, into in; otherwise it
// answers 415 or 400 (naming want, the shape expected) and reports false.
func readJSON(w http.ResponseWriter, r *http.Request, in any, want string) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "unsupported_media_type", "error_description": "send application/json"})
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(in); err != nil || dec.More() {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "want " + want})
		return false
	}
	return true
}

// addRecipe adds {"title": "..."} and answers 201 with the new recipe.
func (a *API) addRecipe(w http.ResponseWriter, r *http.Request, c *Claims) {
	var in struct {
		Title string `json:"title"`
	}
	if !readJSON(w, r, &in, `{"title": "..."}`) {
		return
	}
	title := strings.TrimSpace(in.Title)
	if n := utf8.RuneCountInString(title); n == 0 || n > maxTitleLen || strings.ContainsFunc(title, unicode.IsControl) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request",
			"error_description": fmt.Sprintf("title must be 1 to %d characters, no control characters", maxTitleLen)})
		return
	}
	a.mu.Lock()
	rec := Recipe{ID: strconv.Itoa(a.nextID), Title: title, Author: c.Subject}
	a.nextID++
	a.recipes = append(a.recipes, rec)
	if len(a.recipes) > maxRecipes {
		a.recipes = slices.Delete(a.recipes, 0, len(a.recipes)-maxRecipes)
	}
	a.mu.Unlock()
	w.Header().Set("Location", "/api/recipes/"+rec.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"sub": c.Subject, "recipe": rec})
}

// stats answers the API's counters, for admins.
func (a *API) stats(w http.ResponseWriter, _ *http.Request, c *Claims) {
	a.mu.Lock()
	out := map[string]any{
		"sub":          c.Subject,
		"scopes":       nonNil(c.Scopes()),
		"recipes":      len(a.recipes),
		"callers":      len(a.bySubject),
		"your_calls":   a.bySubject[c.Subject],
		"verified":     sum(a.bySubject),
		"all_requests": a.requests.Load(),
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
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
