package oidcauth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/bounded"
	"github.com/caddy-bff/caddy-bff/internal/health"
	"github.com/caddy-bff/caddy-bff/internal/methodoverride"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/redisconf"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/internal/secret"
	"github.com/caddy-bff/caddy-bff/internal/signkey"
)

func init() {
	caddy.RegisterModule(new(Handler))
}

// Defaults of oidc_auth's subdirectives.
const (
	DefaultLoginPath              = "/auth/login"
	DefaultCallbackPath           = "/auth/callback"
	DefaultLogoutPath             = "/auth/logout"
	DefaultUserPath               = "/auth/user"
	DefaultBackchannelLogoutPath  = "/auth/backchannel-logout"
	DefaultFrontchannelLogoutPath = "/auth/frontchannel-logout"
	DefaultPostLogoutRedirect     = "/"
	DefaultRefreshSkew            = 30 * time.Second
	DefaultIdleTimeout            = 30 * time.Minute
	DefaultLifetime               = 12 * time.Hour
)

// Session stores, as SessionConfig.Store names them.
const (
	storeCookie = "cookie"
	storeMemory = "memory"
	storeRedis  = "redis"
)

// DefaultScopes are requested when `scopes` is not given.
var DefaultScopes = []string{"openid", "profile", "email"}

// Handler is the oidc_auth HTTP handler: it logs users in with OpenID
// Connect (authorization code flow with PKCE), keeps their session behind an
// HttpOnly cookie, refreshes their tokens, and establishes the identity the
// rest of the route sees. Requests without a session get a redirect to the
// login (browser navigations) or a 401 problem (everything else), except on
// `public` paths.
type Handler struct {
	// The provider's issuer URL; discovery reads
	// <issuer>/.well-known/openid-configuration on first need. Required.
	Issuer string `json:"issuer,omitempty"`
	// The client id registered at the provider. Required.
	ClientID string `json:"client_id,omitempty"`
	// The client secret; use a placeholder such as {env.OIDC_CLIENT_SECRET}
	// so the secret is not stored in the config. Empty for a public client.
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes to request. Default: openid profile email. Must include openid.
	Scopes []string `json:"scopes,omitempty"`
	// Path patterns (as Caddy's path matcher: exact, prefix*, *suffix) that
	// anonymous users may reach. The identity is still attached when a
	// session exists.
	Public []string `json:"public,omitempty"`

	// The path that starts a login (GET, with an optional same-origin
	// return_to); every login_url of ours points here. Default /auth/login.
	LoginPath string `json:"login_path,omitempty"`
	// The redirect URI's path, registered at the provider: the provider
	// sends the browser back here with the code. Default /auth/callback.
	CallbackPath string `json:"callback_path,omitempty"`
	// The path that ends the session (POST only, same origin), revokes the
	// refresh token and logs out at the provider. Default /auth/logout.
	LogoutPath string `json:"logout_path,omitempty"`
	// The path that answers the user's profile as JSON, never a token
	// (GET; ?touch=false keeps the idle timeout). Default /auth/user.
	UserPath string `json:"user_path,omitempty"`
	// The path that tells the shell, without extending the idle timeout,
	// whether its session lives: a Server-Sent Events stream (Accept:
	// text/event-stream) answering `session` at once and `ended` when the
	// session ends, or one JSON answer otherwise (polling). GET.
	// Default /auth/session.
	SessionEventsPath string `json:"session_events_path,omitempty"`
	// The back-channel logout URI registered at the provider, which POSTs
	// logout tokens here (OpenID Connect Back-Channel Logout 1.0).
	// Default /auth/backchannel-logout.
	BackchannelLogoutPath string `json:"backchannel_logout_path,omitempty"`
	// The front-channel logout URI registered at the provider, whose
	// logout page frames it with iss and sid (OpenID Connect
	// Front-Channel Logout 1.0; register it with
	// frontchannel_logout_session_required). Only the provider's origin
	// may frame the answer. Default /auth/frontchannel-logout.
	FrontchannelLogoutPath string `json:"frontchannel_logout_path,omitempty"`
	// Where to send the user after logout when the provider has no
	// end_session_endpoint; also the post_logout_redirect_uri (made
	// absolute on this site's origin). Default: /.
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`
	// Origins (scheme://host[:port]) allowed to send unsafe requests with
	// the session cookie besides this site's own.
	TrustedOrigins []string `json:"trusted_origins,omitempty"`
	// Refresh the access token when it expires within this long. Default 30s.
	RefreshSkew caddy.Duration `json:"refresh_skew,omitempty"`
	// Check a session with the provider again when it last did more than
	// this long ago, on the session's next use, for providers without
	// back-channel logout: the refresh grant with a refresh token, else
	// token introspection (RFC 7662) when the provider has an endpoint,
	// else UserInfo with the access token. A session the provider no
	// longer knows ends (401); an outage keeps it while its access token
	// is valid. Once per interval across instances. Default 0: off.
	Revalidate caddy.Duration `json:"revalidate,omitempty"`
	// The login's `prompt` parameter. Default: `consent` when offline_access
	// is requested (OpenID Connect Core 1.0 §11), none otherwise.
	Prompt string `json:"prompt,omitempty"`
	// Extra authorization request parameters.
	AuthParams map[string]string `json:"auth_params,omitempty"`
	// ACRLevels ranks authentication context class values, strongest
	// first (`acr_levels mfa > pwd`), for step-up requirements
	// (scope_authz's `acr:<value>`): a session whose acr is ranked at least
	// as strong as the one required meets it, and so does a login that
	// asked for one value and got a stronger one. Unranked values meet
	// only themselves.
	ACRLevels []string `json:"acr_levels,omitempty"`
	// How the gateway authenticates to the provider's token, revocation
	// and token exchange endpoints: basic (client_secret_basic), post
	// (client_secret_post), private_key_jwt (RFC 7523, with ClientKey) or
	// none (a public client: PKCE only). Default: the first method the
	// provider advertises that the config can do.
	ClientAuth string `json:"client_auth,omitempty"`
	// The private key of private_key_jwt: PEM text or a file path
	// (placeholders resolved when the config loads, so {file.…} or
	// {env.…} keep it out of the saved config); EC P-256 (ES256), RSA of
	// 2048 bits or more (RS256) or Ed25519 (EdDSA). The assertion's kid is
	// the key's RFC 7638 thumbprint.
	ClientKey string `json:"client_key,omitempty"`
	// Resource indicators (RFC 8707) sent on the authorization, code and
	// refresh requests, for providers that issue access tokens bound to an
	// audience: absolute URIs without a fragment.
	Resource []string `json:"resource,omitempty"`
	// Whether to call the UserInfo endpoint at login and refresh: auto
	// (default: call it, and stop for this provider after it refuses the
	// access token, logging once), on, or off.
	UserInfo string `json:"userinfo,omitempty"`
	// The site's external origin (https://portal.example.com) when TLS
	// ends in front of Caddy and the proxy there is not among the server's
	// trusted_proxies: it decides the cookie variant (__Host- and Secure),
	// the redirect and post-logout URIs and the CSRF origin check. Default:
	// X-Forwarded-Proto/-Host from a trusted proxy, else the request.
	ExternalURL string `json:"external_url,omitempty"`
	// Public hosts a trusted proxy may name in X-Forwarded-Host, for a
	// proxy that rewrites Host. Any other X-Forwarded-Host is ignored.
	ForwardedHosts []string `json:"forwarded_hosts,omitempty"`
	// Pushed authorization requests (RFC 9126): auto (default: when the
	// provider offers them), off (unless the provider requires them), or
	// required (no login without; a provider that has none is an error).
	// With PAR the browser carries only client_id and request_uri.
	PAR string `json:"par,omitempty"`
	// Session settings.
	Session *SessionConfig `json:"session,omitempty"`

	// resolved configuration
	clientSecret   string
	keys           *keyring
	store          store
	ends           endings
	redis          *redisCoord // nil without a redis block
	releaseRedis   func()
	state          *sharedState
	stateKey       string
	disc           *discovery
	client         *providerClient
	unregister     func()
	external       *origin
	forwardedHosts []string // lower-cased ForwardedHosts
	public         caddyhttp.MatchPath
	csrf           *http.CrossOriginProtection
	idle           time.Duration
	lifetime       time.Duration
	skew           time.Duration
	touchInterval  time.Duration
	events         *sessionEvents
	logger         *zap.Logger
	audit          *zap.Logger
	now            func() time.Time
}

// SessionConfig configures where sessions live and how long.
type SessionConfig struct {
	// cookie (default): sealed into the cookie; memory: this process only;
	// redis: shared by every instance.
	Store string `json:"store,omitempty"`
	// Redis connection for store redis. With the cookie store it shares
	// ended sessions, logout-token ids and refresh results between
	// instances. Default address 127.0.0.1:6379.
	Redis *redisconf.Config `json:"redis,omitempty"`
	// Secrets of at least 32 bytes; the first seals, all open (rotation).
	// Use placeholders ({env.SESSION_KEY}). Required.
	Keys []string `json:"keys,omitempty"`
	// A session unused this long ends. Default 30m.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// A session ends this long after login whatever its use. Default 12h.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// At most this many sessions per user (memory and Redis stores): a
	// login beyond it ends the user's oldest sessions. 0: no limit.
	MaxPerUser int `json:"max_sessions_per_user,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

var statePool = caddy.NewUsagePool()

// Provision sets defaults, resolves secrets and builds the store. It makes
// no network call: discovery happens on first need.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	if err := metrics.Register(ctx); err != nil {
		return fmt.Errorf("oidc_auth: %w", err)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.Session == nil {
		h.Session = new(SessionConfig)
	}
	if len(h.Scopes) == 0 {
		h.Scopes = slices.Clone(DefaultScopes)
	}
	h.LoginPath = cmp.Or(h.LoginPath, DefaultLoginPath)
	h.CallbackPath = cmp.Or(h.CallbackPath, DefaultCallbackPath)
	h.LogoutPath = cmp.Or(h.LogoutPath, DefaultLogoutPath)
	h.UserPath = cmp.Or(h.UserPath, DefaultUserPath)
	h.SessionEventsPath = cmp.Or(h.SessionEventsPath, DefaultSessionEventsPath)
	h.events = newSessionEvents()
	h.BackchannelLogoutPath = cmp.Or(h.BackchannelLogoutPath, DefaultBackchannelLogoutPath)
	h.FrontchannelLogoutPath = cmp.Or(h.FrontchannelLogoutPath, DefaultFrontchannelLogoutPath)
	h.PostLogoutRedirect = cmp.Or(h.PostLogoutRedirect, DefaultPostLogoutRedirect)
	h.Session.Store = cmp.Or(h.Session.Store, storeCookie)
	// Validate refuses negative durations.
	h.skew = cmp.Or(time.Duration(h.RefreshSkew), DefaultRefreshSkew)
	h.idle = cmp.Or(time.Duration(h.Session.IdleTimeout), DefaultIdleTimeout)
	h.lifetime = cmp.Or(time.Duration(h.Session.Lifetime), DefaultLifetime)
	h.touchInterval = min(max(h.idle/10, time.Second), time.Minute)

	// Resolve placeholders ({env.X}, {file.X}) at provision time into
	// unexported fields, failing on unknown ones, so secrets never sit in
	// the JSON config Caddy autosaves.
	repl := caddy.NewReplacer()
	var err error
	resolve := func(name, v string) string {
		if err != nil {
			return ""
		}
		// Errors never repeat a secret's text (see internal/secret).
		out, e := secret.Resolve(repl, name, v)
		if e != nil {
			err = fmt.Errorf("oidc_auth: %w", e)
		}
		return strings.TrimSpace(out)
	}
	h.Issuer = resolve("issuer", h.Issuer)
	if h.Issuer != "" && h.providerOrigin() == "'none'" {
		h.logger.Warn("front-channel logout: the issuer's origin cannot be named in a CSP frame-ancestors source "+
			"(an IP literal in brackets, or unusual characters), so the provider's logout page cannot frame "+
			h.FrontchannelLogoutPath+"; use back-channel logout", zap.String("issuer", h.Issuer))
	}
	h.ExternalURL = resolve("external_url", h.ExternalURL)
	if h.ExternalURL != "" {
		h.external, _ = parseExternalURL(h.ExternalURL) // Validate names a bad one
	}
	for _, fh := range h.ForwardedHosts {
		h.forwardedHosts = append(h.forwardedHosts, strings.ToLower(fh))
	}
	h.ClientID = resolve("client_id", h.ClientID)
	h.clientSecret = resolve("client_secret", h.ClientSecret)
	secrets := make([]string, 0, len(h.Session.Keys))
	for i, k := range h.Session.Keys {
		secrets = append(secrets, resolve(fmt.Sprintf("session keys: key %d", i+1), k))
	}
	if err != nil {
		return err
	}
	if len(secrets) > 0 {
		kr, kerr := newKeyring(secrets)
		if kerr != nil {
			return fmt.Errorf("oidc_auth: session keys: %w", kerr)
		}
		h.keys = kr
	}

	h.public = caddyhttp.MatchPath(h.Public)
	if err := h.public.Provision(ctx); err != nil {
		return fmt.Errorf("oidc_auth: public: %w", err)
	}
	h.csrf = http.NewCrossOriginProtection()
	for _, o := range h.TrustedOrigins {
		if err := h.csrf.AddTrustedOrigin(o); err != nil {
			return fmt.Errorf("oidc_auth: trusted_origins: %w", err)
		}
	}
	if err := h.Validate(); err != nil {
		return err
	}

	h.stateKey = "oidc_auth|" + h.Issuer + "|" + h.ClientID + "|" + h.Session.Store
	st, _, err := statePool.LoadOrNew(h.stateKey, func() (caddy.Destructor, error) {
		return newSharedState(h.now, h.logger), nil
	})
	if err != nil {
		return fmt.Errorf("oidc_auth: %w", err)
	}
	h.state = st.(*sharedState)
	h.ends = memoryEndings{rv: h.state.revoked, now: h.now}
	if h.Session.Store == storeRedis && h.Session.Redis == nil {
		h.Session.Redis = new(redisconf.Config)
	}
	if h.Session.Redis != nil {
		rc, err := h.Session.Redis.Resolve()
		if err != nil {
			return fmt.Errorf("oidc_auth: session %w", err)
		}
		client, release, err := rc.Client()
		if err != nil {
			return fmt.Errorf("oidc_auth: session redis: %w", err)
		}
		unregister := health.Register("redis "+rc.Name(), rc.Probe(client))
		h.releaseRedis = func() { unregister(); release() }
		h.ends = redisEndings{c: client, cfg: rc, now: h.now}
		h.redis = &redisCoord{c: client, cfg: rc}
		if h.Session.Store == storeRedis {
			h.store = &redisStore{c: client, reader: hotReader(client), cfg: rc, keys: h.keys, now: h.now, idle: h.idle, lifetime: h.lifetime,
				decoded: bounded.New[string, decodedSession](maxDecoded, nil)}
		}
	}
	switch h.Session.Store {
	case storeCookie:
		cs := newCookieStore(h.keys, h.ends, h.now)
		cs.idle, cs.lifetime = h.idle, h.lifetime
		h.store = cs
	case storeMemory:
		h.store = memoryView{ms: h.state.memory, keys: h.keys, decoded: bounded.New[string, decodedMemory](maxDecoded, nil)}
	}

	httpClient := &http.Client{Timeout: providerTimeout}
	h.client = &providerClient{http: httpClient, issuer: h.Issuer, clientID: h.ClientID, secret: h.clientSecret}
	if h.ClientKey != "" {
		// Load resolves placeholders itself and never echoes the value.
		k, err := signkey.Load(h.ClientKey, false)
		if err != nil {
			return fmt.Errorf("oidc_auth: client_key: %w", err)
		}
		h.client.key = k
	}
	h.disc = &discovery{
		issuer:   h.Issuer,
		clientID: h.ClientID,
		scopes:   h.Scopes,
		client:   httpClient,
		pc:       h.client,
		auth:     clientAuthNames[h.ClientAuth],
		par:      h.PAR,
		ctx:      ctx,
		now:      h.now,
	}
	unregisterCheck := health.Register("provider "+h.Issuer, func(ctx context.Context) error {
		_, err := h.disc.get(ctx)
		return err
	})
	unregisterAdmin := registerHandler(h)
	h.unregister = func() { unregisterCheck(); unregisterAdmin() }
	if slices.Contains(h.Scopes, "offline_access") && h.Prompt == "" {
		h.Prompt = "consent"
	}
	return nil
}

// validateClient checks the client authentication, resource indicators
// and userinfo setting: what the config can do, before any provider says
// what it requires (discovery does that, naming the mismatch).
func (h *Handler) validateClient() error {
	switch h.ClientAuth {
	case "":
	case "basic", "post":
		if h.ClientSecret == "" {
			return fmt.Errorf("oidc_auth: client_auth %s needs client_secret", h.ClientAuth)
		}
	case "private_key_jwt":
		if h.ClientKey == "" {
			return errors.New("oidc_auth: client_auth private_key_jwt needs client_key")
		}
	case "none":
		if h.ClientSecret != "" || h.ClientKey != "" {
			return errors.New("oidc_auth: client_auth none is a public client: remove client_secret and client_key")
		}
	default:
		return fmt.Errorf("oidc_auth: client_auth %q is not one of basic, post, private_key_jwt, none", h.ClientAuth)
	}
	if h.ClientKey != "" && h.ClientAuth != "" && h.ClientAuth != "private_key_jwt" {
		return fmt.Errorf("oidc_auth: client_key applies to client_auth private_key_jwt, not %s", h.ClientAuth)
	}
	for _, r := range h.Resource {
		u, err := url.Parse(r)
		if err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsAny(r, " \t\r\n#") {
			return fmt.Errorf("oidc_auth: resource %q is not an absolute URI without a fragment (RFC 8707 §2)", r)
		}
	}
	switch h.UserInfo {
	case "", "auto", "on", "off":
	default:
		return fmt.Errorf("oidc_auth: userinfo %q is not one of auto, on, off", h.UserInfo)
	}
	for _, fh := range h.ForwardedHosts {
		if !validHost(fh) {
			return fmt.Errorf("oidc_auth: forwarded_hosts %q is not a host[:port]", fh)
		}
	}
	if h.ExternalURL != "" {
		if _, ok := parseExternalURL(h.ExternalURL); !ok {
			return fmt.Errorf("oidc_auth: external_url %q is not an http(s) origin (scheme://host[:port], no path)", h.ExternalURL)
		}
	}
	switch h.PAR {
	case "", "auto", "off", "required":
	default:
		return fmt.Errorf("oidc_auth: par %q is not one of auto, off, required", h.PAR)
	}
	return nil
}

// Validate checks the configuration without touching the network.
func (h *Handler) Validate() error {
	if h.Issuer == "" {
		return errors.New("oidc_auth: issuer is required")
	}
	u, err := url.Parse(h.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("oidc_auth: issuer %q is not an http(s) URL", h.Issuer)
	}
	if h.ClientID == "" {
		return errors.New("oidc_auth: client_id is required")
	}
	if !slices.Contains(h.Scopes, "openid") {
		return errors.New("oidc_auth: scopes must include openid")
	}
	for name, p := range map[string]string{
		"login_path": h.LoginPath, "callback_path": h.CallbackPath, "logout_path": h.LogoutPath,
		"user_path": h.UserPath, "backchannel_logout_path": h.BackchannelLogoutPath,
		"frontchannel_logout_path": h.FrontchannelLogoutPath,
		"session_events_path":      h.SessionEventsPath,
	} {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("oidc_auth: %s %q must start with /", name, p)
		}
	}
	if !validReturnTo(h.PostLogoutRedirect) {
		return fmt.Errorf("oidc_auth: post_logout_redirect %q must be a same-origin path", h.PostLogoutRedirect)
	}
	if h.RefreshSkew < 0 {
		return errors.New("oidc_auth: refresh_skew must not be negative")
	}
	for i, v := range h.ACRLevels {
		if err := CheckACRValue(v); err != nil {
			return fmt.Errorf("oidc_auth: acr_levels %q: %w", v, err)
		}
		if slices.Index(h.ACRLevels, v) != i {
			return fmt.Errorf("oidc_auth: acr_levels: %q is ranked twice", v)
		}
	}
	if h.Revalidate < 0 {
		return errors.New("oidc_auth: revalidate must not be negative")
	}
	if err := h.validateClient(); err != nil {
		return err
	}
	switch h.Session.Store {
	case storeCookie, storeMemory, storeRedis:
	default:
		return fmt.Errorf("oidc_auth: session store %q is not one of cookie, memory, redis", h.Session.Store)
	}
	if h.Session.Store == storeMemory && h.Session.Redis != nil {
		return errors.New("oidc_auth: session redis does not apply to store memory (use store redis)")
	}
	if len(h.Session.Keys) == 0 {
		return errors.New("oidc_auth: session keys are required (at least 32 bytes each; e.g. keys {env.SESSION_KEY})")
	}
	if h.Session.MaxPerUser < 0 || (h.Session.MaxPerUser > 0 && h.Session.Store == storeCookie) {
		return errors.New("oidc_auth: session max_sessions_per_user needs store memory or redis (the cookie store keeps no list of sessions)")
	}
	if h.Session.IdleTimeout < 0 || h.Session.Lifetime < 0 {
		return errors.New("oidc_auth: session idle_timeout and lifetime must not be negative")
	}
	if h.idle > h.lifetime && h.lifetime > 0 {
		return fmt.Errorf("oidc_auth: session idle_timeout %s exceeds lifetime %s", h.idle, h.lifetime)
	}
	return nil
}

// Cleanup releases the shared state this config used.
func (h *Handler) Cleanup() error {
	if h.events != nil {
		h.events.close() // a reload must not wait on open streams
	}
	if h.unregister != nil {
		h.unregister()
	}
	if h.releaseRedis != nil {
		h.releaseRedis()
	}
	if h.stateKey != "" && h.state != nil {
		_, err := statePool.Delete(h.stateKey)
		return err
	}
	return nil
}

// ServeHTTP serves the auth endpoints and guards every other request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	requestid.Ensure(w, r)
	caddyhttp.SetVar(r.Context(), loginVarKey, h)
	h.setOrigin(r)
	// A client never speaks for itself to the upstream: bff_token sets
	// Authorization from the session, nothing else may.
	r.Header.Del("Authorization")
	// The method judged here (CSRF) and by scope_authz is the method the
	// upstream acts on.
	if !methodoverride.Strip(r) {
		problem.Error(w, r, http.StatusBadRequest, "method-override headers are not accepted; send the method itself")
		return nil
	}

	switch r.URL.Path {
	case h.LoginPath:
		h.serveLogin(w, r)
		return nil
	case h.CallbackPath:
		h.serveCallback(w, r)
		return nil
	case h.LogoutPath:
		h.serveLogout(w, r)
		return nil
	case h.UserPath:
		h.serveUser(w, r)
		return nil
	case h.BackchannelLogoutPath:
		h.serveBackchannel(w, r)
		return nil
	case h.FrontchannelLogoutPath:
		h.serveFrontchannel(w, r)
		return nil
	case h.SessionEventsPath:
		h.serveSessionEvents(w, r)
		return nil
	}

	public := h.isPublic(r)
	id, ok := h.authenticate(w, r, public)
	if !ok {
		return nil // authenticate answered
	}
	if id == nil && !public {
		h.challenge(w, r, "authentication required")
		return nil
	}
	stripCookies(r)
	return next.ServeHTTP(w, r)
}

func (h *Handler) isPublic(r *http.Request) bool {
	if len(h.public) == 0 {
		return false
	}
	m, err := h.public.MatchWithError(r)
	return err == nil && m
}

// checkOrigin refuses cross-origin requests that would ride on the session
// cookie (CSRF): unsafe methods, and protocol upgrades (WebSocket), whose
// handshake is a GET but opens a channel both ways, so a sibling subdomain
// (same-site: the Lax cookie goes along) could otherwise talk to the API
// as the user. Sec-Fetch-Site, else Origin against Host, plus
// trusted_origins.
func (h *Handler) checkOrigin(r *http.Request) error {
	if r.Header.Get("Upgrade") != "" {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			// Judged as the unsafe request it is.
			u := &http.Request{Method: http.MethodPost, Header: r.Header, Host: externalHost(r), URL: r.URL}
			return h.csrf.Check(u)
		}
	}
	if host := externalHost(r); host != r.Host {
		// Origin is compared with the external host, not the one the
		// proxy in front used.
		u := *r
		u.Host = host
		return h.csrf.Check(&u)
	}
	return h.csrf.Check(r)
}

// authenticate loads, refreshes and touches the session, and attaches the
// identity. It returns ok=false after answering the request itself (403,
// 401 for an ended session, 503 for an unavailable provider or store).
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, public bool) (*Identity, bool) {
	value, present := readSessionCookie(r)
	if !present {
		return nil, true
	}
	if err := h.checkOrigin(r); err != nil {
		h.logger.Debug("cross-origin request refused",
			zap.String("request_id", requestid.From(r)), zap.String("method", r.Method),
			zap.Bool("upgrade", r.Header.Get("Upgrade") != ""),
			zap.String("origin", r.Header.Get("Origin")), zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
		problem.Error(w, r, http.StatusForbidden, "cross-origin request refused")
		return nil, false
	}
	s, err := h.store.load(r.Context(), value)
	if errors.Is(err, errNoSession) {
		clearSessionCookie(w, r)
		return nil, true
	}
	if err != nil {
		h.logStoreFailure(r, "load", err)
		if public {
			return nil, true
		}
		h.storeUnavailable(w, r, err)
		return nil, false
	}
	now := h.now()
	if !s.alive(now, h.idle, h.lifetime) {
		_ = h.endSession(r.Context(), s, metrics.EndExpired)
		clearSessionCookie(w, r)
		return nil, true
	}

	if h.needsRefresh(s, now) || h.revalidateDue(s, now) {
		ns, cookie, err := h.renew(r, s, now)
		switch {
		case err == nil:
			s = ns
			if cookie != "" {
				writeSessionCookie(w, r, cookie, s.expiresAt(h.lifetime).Sub(now))
			}
		case errors.Is(err, errSessionEnded):
			clearSessionCookie(w, r)
			if public {
				return nil, true
			}
			h.challenge(w, r, "session ended; log in again")
			return nil, false
		default: // provider or store unavailable, or the session outgrew its cookie
			_, tooLarge := errors.AsType[*sessionTooLargeError](err)
			unkeepable := tooLarge || errors.Is(err, errEndUnstored)
			storeErr := tooLarge || errors.Is(err, errStoreDown)
			if storeErr {
				h.logStoreFailure(r, "refresh", err)
			}
			// A session whose token is still valid keeps working through
			// an outage; one that cannot be kept any more does not.
			tokenValid := s.TokenExpiry == 0 || now.Before(time.Unix(s.TokenExpiry, 0))
			if public && unkeepable {
				return nil, true // anonymous, not this session
			}
			if !public && (unkeepable || !tokenValid) {
				if storeErr {
					h.storeUnavailable(w, r, err)
				} else {
					problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
						Detail: "identity provider unavailable; try again shortly", RetryAfter: 5})
				}
				return nil, false
			}
		}
	}

	if now.UnixMilli()-s.LastSeen >= h.touchInterval.Milliseconds() && !(r.URL.Path == h.UserPath && r.URL.Query().Get("touch") == "false") {
		ns := *s
		ns.ident = nil
		ns.LastSeen = now.UnixMilli()
		cookie, err := h.store.save(r.Context(), &ns, false, ns.end(h.idle, h.lifetime))
		switch {
		case err == nil:
			s = &ns
			if cookie != value {
				writeSessionCookie(w, r, cookie, s.expiresAt(h.lifetime).Sub(now))
			}
		case errors.Is(err, errSessionEnded):
			clearSessionCookie(w, r)
			return nil, true
		default:
			h.logStoreFailure(r, "touch", err)
			if !public {
				h.storeUnavailable(w, r, err)
				return nil, false
			}
		}
	}

	var id *Identity
	if s.ident != nil {
		c := *s.ident // computed once per opened cookie
		id = &c
	} else {
		id = s.identity(h.idle, h.lifetime)
	}
	id.handler = h
	h.attach(r, id)
	return id, true
}

// endSession ends s on every store and instance, remembered until its
// absolute end (created + lifetime), never only its idle end: a copy of
// its cookie may have been used after the one that ended it. It survives
// the client going away: an ending must not be left half done.
func (h *Handler) endSession(ctx context.Context, s *session, why string) error {
	if err := h.store.remove(context.WithoutCancel(ctx), s, s.expiresAt(h.lifetime)); err != nil {
		return err
	}
	metrics.SessionsEnded(why, 1)
	h.events.wake(s.Subject) // its open streams answer now, not at their next check
	return nil
}

// logStoreFailure logs that the session store failed during what; a
// session outgrowing the cookie store is named with its size and the
// limit, since only the operator can fix it.
func (h *Handler) logStoreFailure(r *http.Request, during string, err error) {
	if e, ok := errors.AsType[*sessionTooLargeError](err); ok {
		h.logger.Error("session too large for the cookie store; use store memory or redis, or fewer claims",
			zap.String("request_id", requestid.From(r)), zap.String("during", during),
			zap.Int("bytes", e.size), zap.Int("limit", e.limit))
		return
	}
	h.logger.Error("session store unavailable", zap.String("request_id", requestid.From(r)),
		zap.String("during", during), zap.Error(err))
}

// storeUnavailable answers 503 for a store failure (logged already).
func (h *Handler) storeUnavailable(w http.ResponseWriter, r *http.Request, err error) {
	if _, ok := errors.AsType[*sessionTooLargeError](err); ok {
		problem.Error(w, r, http.StatusServiceUnavailable, "the session is too large to keep; the operator has been told")
		return
	}
	problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
		Detail: "session store unavailable; try again shortly", RetryAfter: 2})
}

// attach makes the identity visible to later handlers, placeholders and
// Caddy's access log (user_id comes from {http.auth.user.id}).
func (h *Handler) attach(r *http.Request, id *Identity) {
	caddyhttp.SetVar(r.Context(), identityVarKey, id)
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	// One lazy provider instead of eager Sets: most requests never read
	// these, and Caddy's access log only asks for the user id.
	repl.Map(id.placeholder)
}

// placeholder resolves {http.auth.user.*} for this identity.
func (id *Identity) placeholder(key string) (any, bool) {
	rest, ok := strings.CutPrefix(key, "http.auth.user.")
	if !ok {
		return nil, false
	}
	switch rest {
	case "id":
		return id.Subject, true
	case "email":
		return id.Email, true
	case "scopes":
		return strings.Join(id.Scopes, " "), true
	}
	name, ok := strings.CutPrefix(rest, "claims.")
	if !ok {
		return nil, false
	}
	v, ok := id.Claims[name]
	if !ok {
		return "", true
	}
	if arr, ok := v.([]any); ok {
		parts := make([]string, 0, len(arr))
		for _, e := range arr {
			parts = append(parts, fmt.Sprint(e))
		}
		return strings.Join(parts, ","), true
	}
	return v, true
}

// challenge answers an anonymous request on a protected path: browser
// navigations go to the login, everything else gets a 401 problem.
func (h *Handler) challenge(w http.ResponseWriter, r *http.Request, detail string) {
	if isNavigation(r) {
		http.Redirect(w, r, h.loginURL(r.URL.RequestURI()), http.StatusFound)
		return
	}
	h.writeUnauthorized(w, r, detail)
}

func (h *Handler) writeUnauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	problem.Write(w, r, problem.Details{Status: http.StatusUnauthorized, Detail: detail, LoginURL: h.loginURL(refererReturnTo(r))})
}

// refererReturnTo is where the user should land after a login that r's 401
// asks for: a script's call is not that place, the page that made it is,
// when the browser told us (same origin only).
func refererReturnTo(r *http.Request) string {
	if ref, err := url.Parse(r.Header.Get("Referer")); err == nil && ref.Host == externalHost(r) && ref.Host != "" {
		return ref.RequestURI()
	}
	return ""
}

// loginURL is the login path with return_to, when that is a safe path.
func (h *Handler) loginURL(returnTo string) string {
	if returnTo == "" || returnTo == "/" || !validReturnTo(returnTo) {
		return h.LoginPath
	}
	return h.LoginPath + "?return_to=" + url.QueryEscape(returnTo)
}

// isNavigation tells a browser's top-level navigation from a script's call.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (h *Handler) needsRefresh(s *session, now time.Time) bool {
	return s.TokenExpiry > 0 && s.RefreshToken != "" && !now.Add(s.refreshSkew(h.skew)).Before(time.Unix(s.TokenExpiry, 0))
}

// providerCtx bounds a provider call made on behalf of r: it survives the
// client disconnecting (others may share it) but not providerTimeout.
func (h *Handler) providerCtx(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), providerTimeout)
	return h.disc.clientCtx(ctx), cancel
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
