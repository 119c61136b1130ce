package oidcauth

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-bff/caddy-bff/internal/problem"
)

// Step-up authentication (RFC 9470 semantics): a route may need a stronger
// authentication context class (acr) or a more recent authentication
// (max_age) than the session's login had. The policy (scope_authz) tells
// the user so with a login URL that asks the provider for it; the login
// sends acr_values and max_age, the callback checks that the ID token
// delivered them, and the session is replaced by a fresh one.

// Bounds on the step-up parameters a login accepts from its URL.
const (
	maxACRValuesLen = 256
	// maxMaxAge bounds max_age (seconds): ten years (MaxStepUpAge).
	maxMaxAge = int64(MaxStepUpAge / time.Second)
	// authTimeLeeway is the clock difference between provider and gateway
	// tolerated when checking auth_time against max_age.
	authTimeLeeway = 10 * time.Second
)

// MaxStepUpAge is the longest max_age a step-up may ask for.
const MaxStepUpAge = 10 * 365 * 24 * time.Hour

// CheckACRValue accepts an acr value: 1 to 128 printable ASCII characters
// other than space, `"`, `\`, `|` and `>` (it travels space-separated in
// acr_values, and our requirement syntax uses `|` and acr_levels `>`).
func CheckACRValue(v string) error {
	if v == "" || len(v) > 128 {
		return errors.New("an acr value has 1 to 128 characters")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7E || c == '"' || c == '\\' || c == '|' || c == '>' {
			return errors.New("an acr value is printable ASCII without space, quote, backslash, | or >")
		}
	}
	return nil
}

// acrMeets reports whether have is ranked at least as strong as want by
// acr_levels. Values not ranked meet only themselves (the caller checked
// equality).
func (h *Handler) acrMeets(have, want string) bool {
	hi, wi := slices.Index(h.ACRLevels, have), slices.Index(h.ACRLevels, want)
	return hi >= 0 && wi >= 0 && hi <= wi
}

// acrSatisfies reports whether the acr a login got meets one of the values
// it asked for.
func (h *Handler) acrSatisfies(got string, asked []string) bool {
	if got == "" {
		return false
	}
	for _, a := range asked {
		if got == a || h.acrMeets(got, a) {
			return true
		}
	}
	return false
}

// StepUp is what a route asks of the login beyond a session: an
// authentication context class and how recent the authentication must be.
type StepUp struct {
	// ACR is the acr value required (empty: any).
	ACR string
	// MaxAge is how long ago the user may have authenticated at most;
	// negative: no limit.
	MaxAge time.Duration
}

// Met reports whether id's login meets s at now. auth_time is the
// provider's clock: a login counts as recent for authTimeLeeway beyond
// MaxAge, so max_age:0s admits the request that follows a fresh login.
func (s StepUp) Met(id *Identity, now time.Time) bool {
	if id == nil {
		return false
	}
	if s.ACR != "" && !id.MeetsACR(s.ACR) {
		return false
	}
	if s.MaxAge >= 0 && (id.AuthTime.IsZero() || now.Sub(id.AuthTime) > s.MaxAge+authTimeLeeway) {
		return false
	}
	return true
}

// String is s as requirements: `acr:mfa max_age:10m0s`.
func (s StepUp) String() string {
	var parts []string
	if s.ACR != "" {
		parts = append(parts, "acr:"+s.ACR)
	}
	if s.MaxAge >= 0 {
		parts = append(parts, "max_age:"+s.MaxAge.String())
	}
	return strings.Join(parts, " ")
}

// Challenge answers a request whose session does not meet s (RFC 9470): a
// browser navigation is sent to the step-up login; anything else gets 401
// with error insufficient_user_authentication, the acr_values and max_age
// wanted, the login_url that asks for them, and the RFC 9470
// WWW-Authenticate challenge.
func (s StepUp) Challenge(w http.ResponseWriter, r *http.Request) {
	login := StepUpLoginURL(r, s)
	if IsNavigation(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, login, http.StatusFound)
		return
	}
	d := problem.Details{Status: http.StatusUnauthorized, Error: "insufficient_user_authentication",
		Detail:   "this request needs a stronger or more recent login (" + s.String() + "); log in again",
		LoginURL: login, Missing: s.String(), ACRValues: s.ACR}
	ch := `Bearer error="insufficient_user_authentication", error_description="a stronger or more recent login is required"`
	if s.ACR != "" {
		ch += `, acr_values="` + s.ACR + `"`
	}
	if s.MaxAge >= 0 {
		n := s.maxAgeSeconds()
		d.MaxAge = &n
		ch += `, max_age=` + strconv.FormatInt(n, 10)
	}
	w.Header().Set("WWW-Authenticate", ch)
	problem.Write(w, r, d)
}

// maxAgeSeconds is max_age as the login parameter says it: whole seconds,
// rounded down (a route asking for 90s is met by a login at most 90 s old).
func (s StepUp) maxAgeSeconds() int64 { return int64(s.MaxAge / time.Second) }

// StepUpLoginURL returns the login URL that asks the provider for s, with
// return_to as LoginURLFrom would give it (the page that made a script's
// call), or, for a browser navigation, the page requested itself.
func StepUpLoginURL(r *http.Request, s StepUp) string {
	returnTo := refererReturnTo(r)
	if IsNavigation(r) {
		returnTo = r.URL.RequestURI()
	}
	return StepUpLoginURLFor(r, s, returnTo)
}

// StepUpLoginURLFor is StepUpLoginURL returning to returnTo, a same-origin
// path (anything else returns to /).
func StepUpLoginURLFor(r *http.Request, s StepUp, returnTo string) string {
	h := handlerFrom(r)
	login := DefaultLoginPath
	q := url.Values{}
	if h != nil {
		login = h.LoginPath
	}
	if returnTo != "" && returnTo != "/" && validReturnTo(returnTo) {
		q.Set("return_to", returnTo)
	}
	if s.ACR != "" {
		q.Set("acr_values", s.ACR)
	}
	if s.MaxAge >= 0 {
		q.Set("max_age", strconv.FormatInt(s.maxAgeSeconds(), 10))
	}
	if len(q) == 0 {
		return login
	}
	return login + "?" + q.Encode()
}

// loginStepUp reads a login's step-up parameters: acr_values (space
// separated acr values) and max_age (whole seconds). ok is false when
// either is malformed.
func loginStepUp(q url.Values) (acr []string, maxAge int64, ok bool) {
	maxAge = -1
	if vs, present := q["acr_values"]; present {
		if len(vs) != 1 || len(vs[0]) > maxACRValuesLen {
			return nil, 0, false
		}
		acr = strings.Fields(vs[0])
		if len(acr) == 0 {
			return nil, 0, false
		}
		for _, v := range acr {
			if CheckACRValue(v) != nil {
				return nil, 0, false
			}
		}
	}
	if vs, present := q["max_age"]; present {
		if len(vs) != 1 || vs[0] == "" || len(vs[0]) > 10 {
			return nil, 0, false
		}
		n, err := strconv.ParseInt(vs[0], 10, 64)
		if err != nil || n < 0 || n > maxMaxAge || strconv.FormatInt(n, 10) != vs[0] {
			return nil, 0, false
		}
		maxAge = n
	}
	return acr, maxAge, true
}

// IsNavigation tells a browser's top-level navigation (GET or HEAD with
// Sec-Fetch-Mode: navigate, or without that header an Accept naming
// text/html) from a script's call.
func IsNavigation(r *http.Request) bool { return isNavigation(r) }

func handlerFrom(r *http.Request) *Handler {
	h, _ := caddyhttp.GetVar(r.Context(), loginVarKey).(*Handler)
	return h
}
