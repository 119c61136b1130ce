// Package testop runs a real OpenID Provider in-process for tests and the
// demo: the zitadel/oidc v3 example provider (github.com/zitadel/oidc/v3,
// example/server/exampleop with its in-memory example/server/storage),
// with one confidential client registered, two test users, and counters
// and switches that let tests watch and break it.
//
// The provider serves plain HTTP on 127.0.0.1 only. Its issuer is
// http://127.0.0.1:PORT (no trailing slash). Endpoints, as its discovery
// document lists them: /auth (authorization), /oauth/token, /userinfo,
// /revoke, /end_session, /keys, /oauth/introspect. The login UI is the
// example's: GET /login/username?authRequestID=ID renders an HTML form
// (POST /login/username, fields id (hidden), username, password); a
// wrong password re-renders it with the error; success redirects to
// /auth/callback?id=ID, which redirects to the client's redirect_uri with
// code and state. No consent screen; end_session redirects at once (no
// confirmation page) to a registered post_logout_redirect_uri, or to
// /logged-out. Each login starts a provider session whose sid its ID
// tokens carry; FrontchannelLogoutPath is the logout page that frames the
// client's front-channel logout URIs with it (see frontchannel.go).
package testop

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// Grant types as sent in the token endpoint's grant_type parameter.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Config sets up a provider. The zero value is usable.
type Config struct {
	// Addr is the listen address; its host must be 127.0.0.1. Default
	// 127.0.0.1:0 (a free port).
	Addr string

	// ClientID and ClientSecret of the one registered confidential
	// client. Default "bff" and "bff-secret".
	ClientID     string
	ClientSecret string

	// RedirectURIs the client may use. An entry holding '*' is a
	// pattern: '*' as the whole port means any port (digits only);
	// elsewhere it is a doublestar glob ('*' within one path segment,
	// '**' across segments). Any other entry must match exactly. Default:
	// http://127.0.0.1:*/auth/callback (any port, that path only).
	RedirectURIs []string

	// PostLogoutRedirectURIs the client may pass to end_session; an entry
	// holding '*' is a pattern: '*' as the whole port means any port,
	// elsewhere a path.Match pattern. Default: http://127.0.0.1:*/ and
	// http://127.0.0.1:*/* (any port, root or one segment).
	PostLogoutRedirectURIs []string

	// AccessTokenTTL caps the lifetime of every access token (code flow,
	// refresh, token exchange); 0 keeps the example's 5 minutes. The
	// token response's expires_in is whole seconds rounded down, so use
	// at least 2s (expires_in 0 reads as "no expiry" to golang.org/x/oauth2).
	AccessTokenTTL time.Duration

	// OpaqueAccessTokens issues the example's encrypted opaque access
	// tokens instead of JWTs (RFC 9068 style, signed with the provider's
	// RS256 key, aud = client_id or the exchange's audience, with a scope
	// claim).
	OpaqueAccessTokens bool

	// IDTokenUserinfoClaims puts the profile and email claims into the ID
	// token too; by default they come only from the UserInfo endpoint
	// (OpenID Connect Core 5.4 when an access token is issued).
	IDTokenUserinfoClaims bool

	// AllowOfflineAccessWithoutConsent grants offline_access (and so a
	// refresh token) without prompt=consent. By default the provider
	// drops offline_access unless prompt=consent was sent, as OpenID
	// Connect Core 1.0 section 11 requires.
	AllowOfflineAccessWithoutConsent bool

	// ACRValues are the authentication context classes the provider can
	// perform: an authorization request's acr_values gets the first of
	// its values listed here as the ID token's acr (as if the user had
	// passed that kind of authentication); otherwise the acr is
	// DefaultACR (empty: no acr claim). With none listed, acr_values is
	// ignored, as many providers do.
	ACRValues  []string
	DefaultACR string

	// Users replaces the test users (default Users()).
	Users []User

	// ClientAuth is how the client must authenticate: client_secret_basic
	// (default), client_secret_post, private_key_jwt (with ClientKey) or
	// none.
	ClientAuth oidc.AuthMethod
	// ClientKey is the client's public key for private_key_jwt (RS256:
	// an *rsa.PublicKey), ClientKeyID its kid.
	ClientKey   any
	ClientKeyID string

	// TokenAuthMethods, when set, replace the token and revocation
	// endpoints' advertised auth methods in discovery, and requests to
	// them authenticated another way are refused with 401 invalid_client:
	// a provider that, say, only takes client_secret_post.
	TokenAuthMethods []string

	// FrontchannelLogoutURIs are the client's registered front-channel
	// logout URIs, which the provider's logout page (FrontchannelLogoutPath)
	// frames with iss and sid; see also SetFrontchannelLogoutURIs.
	FrontchannelLogoutURIs []string
}

// Stats counts requests the provider received since start or ResetStats.
type Stats struct {
	// TokenCalls counts token endpoint requests by grant_type as sent,
	// whatever their outcome.
	TokenCalls map[string]int
	// TokenErrors counts token endpoint responses with status >= 400, by grant_type.
	TokenErrors map[string]int
	Revocations int // requests to the revocation endpoint
	EndSessions int // requests to the end_session endpoint
	Userinfo    int // requests to the UserInfo endpoint
	Introspect  int // requests to the introspection endpoint (RFC 7662)
	Keys        int // requests to the JWKS endpoint
	Discovery   int // requests to /.well-known/openid-configuration
	Logins      int // successful username/password logins
	// AuthMethods counts token and revocation requests by the client
	// authentication they carried (client_secret_basic, client_secret_post,
	// private_key_jwt, none).
	AuthMethods map[string]int
}

// Provider is a running test OpenID Provider.
type Provider struct {
	addr    string // 127.0.0.1:PORT
	issuer  string
	handler http.Handler
	store   *store
	paths   endpointPaths

	mu          sync.Mutex
	srv         *http.Server
	closed      bool
	stats       Stats
	tokenStatus int // non-zero: the token endpoint answers with it
	tokenDelay  map[string]time.Duration
	authMethods []string // Config.TokenAuthMethods
}

type endpointPaths struct {
	token, revocation, endSession, userinfo, keys, introspect string
}

// Start listens on cfg.Addr and serves the provider until Close.
func Start(cfg Config) (*Provider, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("testop: addr %q: %w", cfg.Addr, err)
	}
	if host != "127.0.0.1" {
		return nil, fmt.Errorf("testop: addr %q: host must be 127.0.0.1", cfg.Addr)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "bff"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = "bff-secret"
	}
	if len(cfg.RedirectURIs) == 0 {
		cfg.RedirectURIs = []string{"http://127.0.0.1:*/auth/callback"}
	}
	if len(cfg.PostLogoutRedirectURIs) == 0 {
		cfg.PostLogoutRedirectURIs = []string{"http://127.0.0.1:*/", "http://127.0.0.1:*/*"}
	}
	if cfg.Users == nil {
		cfg.Users = Users()
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("testop: %w", err)
	}
	p := &Provider{
		addr:   ln.Addr().String(),
		issuer: "http://" + ln.Addr().String(),
	}
	p.stats = newStats()

	p.authMethods = cfg.TokenAuthMethods
	c := &client{
		id:                    cfg.ClientID,
		secret:                cfg.ClientSecret,
		authMethod:            cmp.Or(cfg.ClientAuth, oidc.AuthMethodBasic),
		key:                   cfg.ClientKey,
		keyID:                 cfg.ClientKeyID,
		jwtAccessTokens:       !cfg.OpaqueAccessTokens,
		idTokenUserinfoClaims: cfg.IDTokenUserinfoClaims,
	}
	c.redirectURIs, c.redirectGlobs = splitGlobs(cfg.RedirectURIs)
	c.postLogoutURIs, c.postLogoutGlobs = splitGlobs(cfg.PostLogoutRedirectURIs)
	for _, u := range cfg.Users {
		for _, sc := range u.Scopes {
			if !slices.Contains(c.customScopes, sc) {
				c.customScopes = append(c.customScopes, sc)
			}
		}
	}
	users := newUserStore(cfg.Users)
	p.store = newStore(c, users, cfg.AccessTokenTTL, !cfg.AllowOfflineAccessWithoutConsent, func() {
		p.mu.Lock()
		p.stats.Logins++
		p.mu.Unlock()
	})
	p.store.acrValues, p.store.defaultACR = cfg.ACRValues, cfg.DefaultACR
	p.store.sessions = newSessions(cfg.FrontchannelLogoutURIs)

	// A nil logger leaves the process's slog default alone; the example
	// logs each request through it at info level.
	router := exampleop.SetupServer(p.issuer, p.store, nil, false)
	if p.paths, err = discoverPaths(router); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("testop: %w", err)
	}
	p.handler = p.instrument(router)
	p.serve(ln)
	return p, nil
}

func newStats() Stats {
	return Stats{TokenCalls: map[string]int{}, TokenErrors: map[string]int{}, AuthMethods: map[string]int{}}
}

// discoverPaths reads the endpoint paths from the provider's own discovery document.
func discoverPaths(h http.Handler) (endpointPaths, error) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	if rec.Code != http.StatusOK {
		return endpointPaths{}, fmt.Errorf("discovery answered %d", rec.Code)
	}
	var d struct {
		Token      string `json:"token_endpoint"`
		Revocation string `json:"revocation_endpoint"`
		EndSession string `json:"end_session_endpoint"`
		Userinfo   string `json:"userinfo_endpoint"`
		Keys       string `json:"jwks_uri"`
		Introspect string `json:"introspection_endpoint"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		return endpointPaths{}, fmt.Errorf("discovery: %w", err)
	}
	var ep endpointPaths
	for _, f := range []struct {
		dst *string
		raw string
	}{{&ep.token, d.Token}, {&ep.revocation, d.Revocation}, {&ep.endSession, d.EndSession}, {&ep.userinfo, d.Userinfo}, {&ep.keys, d.Keys}, {&ep.introspect, d.Introspect}} {
		u, err := url.Parse(f.raw)
		if err != nil || u.Path == "" {
			return endpointPaths{}, fmt.Errorf("discovery lacks an endpoint (%q)", f.raw)
		}
		*f.dst = u.Path
	}
	return ep, nil
}

// statusRecorder notes the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// instrument counts requests and applies the token endpoint failure switch.
func (p *Provider) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case p.paths.token:
			p.serveToken(w, r, next)
			return
		case p.paths.revocation:
			if !p.checkAuthMethod(w, r) {
				return
			}
			p.count(func(s *Stats) { s.Revocations++ })
		case p.paths.endSession:
			p.count(func(s *Stats) { s.EndSessions++ })
		case p.paths.userinfo:
			p.count(func(s *Stats) { s.Userinfo++ })
		case p.paths.introspect:
			p.count(func(s *Stats) { s.Introspect++ })
		case p.paths.keys:
			p.count(func(s *Stats) { s.Keys++ })
		case loginPath:
			if r.Method == http.MethodPost {
				p.withSessionCookie(w, r, next)
				return
			}
		case FrontchannelLogoutPath:
			p.serveFrontchannelLogout(w, r)
			return
		case "/.well-known/openid-configuration":
			p.count(func(s *Stats) { s.Discovery++ })
			if len(p.authMethods) > 0 {
				p.serveDiscovery(w, r, next)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authMethodOf names the client authentication a token or revocation
// request carries, reading its form without consuming the body.
func authMethodOf(r *http.Request) string {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	switch {
	case strings.HasPrefix(r.Header.Get("Authorization"), "Basic "):
		return string(oidc.AuthMethodBasic)
	case form.Get("client_assertion") != "":
		return string(oidc.AuthMethodPrivateKeyJWT)
	case form.Get("client_secret") != "":
		return string(oidc.AuthMethodPost)
	}
	return string(oidc.AuthMethodNone)
}

// checkAuthMethod counts the request's client authentication and, with
// TokenAuthMethods, refuses any other (401 invalid_client).
func (p *Provider) checkAuthMethod(w http.ResponseWriter, r *http.Request) bool {
	m := authMethodOf(r)
	p.count(func(s *Stats) { s.AuthMethods[m]++ })
	if len(p.authMethods) > 0 && !slices.Contains(p.authMethods, m) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client","error_description":"client authentication method not accepted"}`)
		return false
	}
	return true
}

// serveDiscovery serves the provider's discovery document with the
// token and revocation auth methods of Config.TokenAuthMethods.
func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request, next http.Handler) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var doc map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &doc) != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	doc["token_endpoint_auth_methods_supported"] = p.authMethods
	doc["revocation_endpoint_auth_methods_supported"] = p.authMethods
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if !p.checkAuthMethod(w, r) {
		return
	}
	// Read the form without consuming it for the provider.
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading body", http.StatusBadRequest)
		return
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	grant := form.Get("grant_type")
	if grant == "" {
		grant = r.URL.Query().Get("grant_type")
	}

	p.mu.Lock()
	p.stats.TokenCalls[grant]++
	fail := p.tokenStatus
	if fail != 0 {
		p.stats.TokenErrors[grant]++
	}
	delay := p.tokenDelay[grant]
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}

	if fail != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(fail)
		_, _ = io.WriteString(w, `{"error":"temporarily_unavailable","error_description":"injected by testop"}`)
		return
	}
	if grant == GrantTokenExchange && r.Header.Get("Authorization") == "" && form.Get("client_secret") != "" {
		// zitadel's token exchange reads client credentials from Basic
		// only; RFC 6749 §2.3.1 allows them in the form too, as a
		// client_secret_post provider expects.
		r.SetBasicAuth(url.QueryEscape(form.Get("client_id")), url.QueryEscape(form.Get("client_secret")))
	}
	rec := &statusRecorder{ResponseWriter: w}
	next.ServeHTTP(rec, r)
	if rec.status >= 400 {
		p.count(func(s *Stats) { s.TokenErrors[grant]++ })
	}
}

func (p *Provider) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

func (p *Provider) serve(ln net.Listener) {
	srv := &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Issuer is the provider's issuer URL, http://127.0.0.1:PORT.
func (p *Provider) Issuer() string { return p.issuer }

// Addr is the provider's listen address, 127.0.0.1:PORT.
func (p *Provider) Addr() string { return p.addr }

// ClientID is the registered client's id.
func (p *Provider) ClientID() string { return p.store.client.id }

// ClientSecret is the registered client's secret.
func (p *Provider) ClientSecret() string { return p.store.client.secret }

// Handler is the provider's instrumented HTTP handler, e.g. to mount it
// elsewhere; it answers for the issuer URL only.
func (p *Provider) Handler() http.Handler { return p.handler }

// Stop closes the listener and every open connection, as if the provider
// went down; its state (users, tokens, keys) survives for Restart.
func (p *Provider) Stop() error {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// Restart listens again on the same port after Stop, keeping all state.
// It is a no-op while the provider is running.
func (p *Provider) Restart() error {
	p.mu.Lock()
	running, closed := p.srv != nil, p.closed
	p.mu.Unlock()
	if closed {
		return errors.New("testop: provider is closed")
	}
	if running {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("testop: restart: %w", err)
	}
	p.serve(ln)
	return nil
}

// Close stops the provider for good.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	return p.Stop()
}

// FailTokenEndpoint makes the token endpoint answer every request with
// status (e.g. 503) and an OAuth error body, without touching state,
// until called with 0. Calls are still counted.
func (p *Provider) FailTokenEndpoint(status int) {
	p.mu.Lock()
	p.tokenStatus = status
	p.mu.Unlock()
}

// DelayTokenEndpoint makes the token endpoint wait d before answering
// requests of grant type grant (0 removes the delay), as a slow provider
// would.
func (p *Provider) DelayTokenEndpoint(grant string, d time.Duration) {
	p.mu.Lock()
	if p.tokenDelay == nil {
		p.tokenDelay = map[string]time.Duration{}
	}
	p.tokenDelay[grant] = d
	p.mu.Unlock()
}

// SetGroups replaces the user's (by username or subject) groups claim,
// which UserInfo (and, with IDTokenUserinfoClaims, the ID token) carries
// from the next token issued on: claims that change between login and
// refresh.
func (p *Provider) SetGroups(user string, groups []string) bool {
	return p.store.users.setGroups(user, groups)
}

// RefreshTokens returns the user's (by username or subject) refresh tokens
// the provider would still honour, so tests can look for them where they
// must not be.
func (p *Provider) RefreshTokens(user string) []string {
	u, ok := p.store.users.lookup(user)
	if !ok {
		return nil
	}
	return p.store.liveRefreshTokenValues(u.Subject)
}

// Stats returns a snapshot of the counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.TokenCalls = make(map[string]int, len(p.stats.TokenCalls))
	for k, v := range p.stats.TokenCalls {
		s.TokenCalls[k] = v
	}
	s.TokenErrors = maps.Clone(p.stats.TokenErrors)
	s.AuthMethods = maps.Clone(p.stats.AuthMethods)
	return s
}

// TokenCalls is Stats().TokenCalls[grantType].
func (p *Provider) TokenCalls(grantType string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.TokenCalls[grantType]
}

// ResetStats zeroes the counters.
func (p *Provider) ResetStats() {
	p.mu.Lock()
	p.stats = newStats()
	p.mu.Unlock()
}

// RevokeRefreshTokens invalidates every refresh token of the user (by
// username or subject) and the access tokens issued with them, as an
// administrator revoking the user's grants would: the next refresh gets
// invalid_grant, a token exchange of those access tokens fails, UserInfo
// refuses them and introspection answers active:false, those issued
// without a refresh token included (JWT access tokens still verify
// offline until they expire). New logins work as before. It returns how many live
// refresh tokens it revoked.
func (p *Provider) RevokeRefreshTokens(user string) int {
	u, ok := p.store.users.lookup(user)
	if !ok {
		return 0
	}
	return p.store.revokeUser(u.Subject)
}

// LiveRefreshTokens counts the user's (by username or subject) refresh
// tokens the provider would still honour, e.g. to check that a logout
// revoked one.
func (p *Provider) LiveRefreshTokens(user string) int {
	u, ok := p.store.users.lookup(user)
	if !ok {
		return 0
	}
	return p.store.liveRefreshTokens(u.Subject)
}

// LastAuthRequest is what the latest authorization request asked for.
func (p *Provider) LastAuthRequest() AuthRequestSeen {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.lastAuth
}

// SetAuthTimeShift makes every ID token issued from now on report an
// auth_time d older than the login: a provider that reuses an old login
// and ignores max_age.
func (p *Provider) SetAuthTimeShift(d time.Duration) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.authTimeShift = d
}

// SetACRValues replaces Config.ACRValues and DefaultACR for the
// authorization requests that follow.
func (p *Provider) SetACRValues(defaultACR string, values ...string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.acrValues, p.store.defaultACR = values, defaultACR
}
