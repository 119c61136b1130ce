package oidcauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

const (
	purposeLogin = "bff login v1"
	// loginTTL bounds how long a user may take at the provider.
	loginTTL = 10 * time.Minute
	// maxLoginCookies bounds parallel logins (tabs); older ones are dropped.
	maxLoginCookies = 5
)

// loginState travels sealed in a per-login cookie named after its state, so
// several tabs may log in at once without overwriting each other.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
	// Step-up: the acr values asked for, and max_age in seconds (-1 or
	// absent in older cookies: none; see maxAge).
	ACR    []string `json:"a,omitempty"`
	MaxAge *int64   `json:"m,omitempty"`
}

// started is when the login began.
func (ls *loginState) started() time.Time { return time.Unix(ls.Expires, 0).Add(-loginTTL) }

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// loginCookieName derives the cookie name from the state, so a callback
// finds its own login among several.
func loginCookieName(r *http.Request, state string) string {
	sum := sha256.Sum256([]byte(state))
	name := loginCookieBase + base64.RawURLEncoding.EncodeToString(sum[:9])
	if isHTTPS(r) {
		return hostPrefix + name
	}
	return name
}

// serveLogin starts the authorization code flow with PKCE (RFC 7636, S256),
// state and nonce.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Error(w, r, http.StatusMethodNotAllowed, "login takes GET")
		return
	}
	ctx, cancel := h.providerCtx(r)
	defer cancel()
	info, err := h.disc.get(ctx)
	if err != nil {
		h.logger.Warn("login: identity provider unavailable", zap.String("request_id", requestid.From(r)), zap.Error(err))
		problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
			Detail: "identity provider unavailable; try again shortly", RetryAfter: 5})
		return
	}
	q := r.URL.Query()
	acr, maxAge, ok := loginStepUp(q)
	if !ok {
		problem.Error(w, r, http.StatusBadRequest, "malformed acr_values or max_age: acr_values is a space-separated list of acr values, max_age a number of seconds")
		return
	}
	ls := loginState{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: returnToOr(q.Get("return_to")),
		Expires:  h.now().Add(loginTTL).Unix(),
		ACR:      acr,
	}
	if maxAge >= 0 {
		ls.MaxAge = &maxAge
	}
	pt, _ := json.Marshal(ls) // cannot fail: strings and ints
	h.dropOldLogins(w, r)
	http.SetCookie(w, &http.Cookie{
		Name: loginCookieName(r, ls.State), Value: h.keys.seal(purposeLogin, pt), Path: "/",
		MaxAge: int(loginTTL / time.Second), HttpOnly: true, Secure: isHTTPS(r),
		// Lax: the cookie must come back on the provider's top-level
		// redirect to our callback.
		SameSite: http.SameSiteLaxMode,
	})
	conf := info.oauth
	conf.RedirectURL = h.absURL(r, h.CallbackPath)
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(ls.Verifier), oidc.Nonce(ls.Nonce)}
	if h.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", h.Prompt))
	}
	for k, v := range h.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	// Step-up (OpenID Connect Core §3.1.2.1): these override auth_params
	// of the same name for this login; max_age 0 means "authenticate
	// again now", which prompt=login says to providers that ignore it.
	if len(acr) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(acr, " ")))
	}
	if maxAge >= 0 {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(maxAge, 10)))
	}
	if len(acr) > 0 || maxAge >= 0 {
		// A step-up needs the user at the provider: never prompt=none.
		if p, changed := h.stepUpPrompt(maxAge == 0); changed {
			opts = append(opts, oauth2.SetAuthURLParam("prompt", p))
		}
	}
	authURL := conf.AuthCodeURL(ls.State, opts...)
	if len(h.Resource) > 0 {
		// RFC 8707 §2: resource may repeat, which oauth2's options cannot say.
		q := url.Values{}
		h.addResources(q)
		authURL += "&" + q.Encode()
	}
	if h.usePAR(info) {
		pushed, err := h.pushAuthorization(ctx, info, authURL)
		if err != nil {
			h.logger.Warn("login: pushed authorization request failed", zap.String("request_id", requestid.From(r)), zap.Error(err))
			problem.Write(w, r, problem.Details{Status: http.StatusServiceUnavailable,
				Detail: "identity provider unavailable; try again shortly", RetryAfter: 5})
			return
		}
		authURL = pushed
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL, http.StatusFound)
}

// stepUpPrompt is a step-up login's prompt: the configured one without
// `none` (the user must be able to authenticate), with `login` added when
// addLogin (max_age 0), keeping `consent`, which offline_access needs.
// changed reports whether it differs from the configured prompt.
func (h *Handler) stepUpPrompt(addLogin bool) (prompt string, changed bool) {
	p := h.Prompt
	if v, ok := h.AuthParams["prompt"]; ok {
		p = v
	}
	var out []string
	if addLogin {
		out = append(out, "login")
	}
	for _, v := range strings.Fields(p) {
		if v != "none" && !(addLogin && v == "login") {
			out = append(out, v)
		}
	}
	prompt = strings.Join(out, " ")
	return prompt, prompt != p
}

// usePAR reports whether the login pushes its request (RFC 9126): with
// par auto (default) when the provider offers it; always when the provider
// requires it; with par required always (discovery refused a provider
// without it).
func (h *Handler) usePAR(info *providerInfo) bool {
	if info.parEndpoint == "" {
		return false
	}
	return h.PAR != "off" || info.requirePAR
}

// pushAuthorization pushes the authorization request authURL describes to
// the provider's PAR endpoint, authenticated as every form call is, and
// returns the URL the browser goes to instead: the authorization endpoint
// with client_id and request_uri only, so state, nonce, the PKCE challenge
// and the rest never travel in the browser.
func (h *Handler) pushAuthorization(ctx context.Context, info *providerInfo, authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", err
	}
	form := u.Query()
	status, body, err := h.client.post(ctx, metrics.CallPAR, info.parEndpoint, info.auth, form)
	if err != nil {
		return "", err
	}
	var out struct {
		RequestURI string          `json:"request_uri"`
		ExpiresIn  json.RawMessage `json:"expires_in"`
		Error      string          `json:"error"`
	}
	if json.Unmarshal(body, &out) != nil || (status != http.StatusCreated && status != http.StatusOK) || out.RequestURI == "" {
		return "", fmt.Errorf("%w: pushed authorization request: status %d (%s)", errProviderDown, status, safeCode(out.Error))
	}
	q := url.Values{"client_id": {h.ClientID}, "request_uri": {out.RequestURI}}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// dropOldLogins expires login cookies beyond maxLoginCookies-1, so that
// abandoned logins cannot grow the Cookie header without bound.
func (h *Handler) dropOldLogins(w http.ResponseWriter, r *http.Request) {
	var names []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(strings.TrimPrefix(c.Name, hostPrefix), loginCookieBase) {
			names = append(names, c.Name)
		}
	}
	for i := 0; i+maxLoginCookies-1 < len(names); i++ {
		expireCookie(w, names[i], isHTTPS(r))
	}
}

// absURL makes a path absolute on the site's external origin.
func (h *Handler) absURL(r *http.Request, path string) string {
	scheme := "http"
	if isHTTPS(r) {
		scheme = "https"
	}
	return scheme + "://" + externalHost(r) + path
}
