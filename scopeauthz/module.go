package scopeauthz

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-bff/caddy-bff/internal/audit"
	"github.com/caddy-bff/caddy-bff/internal/methodoverride"
	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// Handler authorises each request by the user's scopes before anything
// reaches a service. It must run after oidc_auth, which attaches the
// identity; without one the request is anonymous.
//
// The request path is first decoded and checked (see CheckPath): an
// ambiguous path (dot segments, encoded slashes, backslashes, control
// characters, `;` parameters, repeated slashes, segments ending in a dot
// or a space, characters that case mapping or NFKC fold into ASCII, ...)
// is refused with 400 before any rule, and so is a method-override header
// naming another method than the request's. Paths are matched ignoring
// case, as Caddy's path matcher does. Then the rules are read top to bottom, and the first
// whose method and path match decides: the request passes if the user
// meets every requirement of that rule, and is refused otherwise, with 401
// when anonymous (the problem body's `login_url` says where to log in) or
// 403 when logged in. A request no rule matches is decided by `default`.
// Problem bodies name the missing requirement. The path judged is the
// request's path where scope_authz runs, after any rewrite, uri or
// handle_path before it: what reverse_proxy will send.
//
// Each decision is logged at Info on the `audit` logger (message "authz")
// with request_id, sub, method, path, rule (`#2 GET /api/recipes/*`,
// counting rules from 1, or `default`), outcome (allow or deny) and
// missing.
type Handler struct {
	// Claim names the claim holding the user's scopes: a space-separated
	// string or an array of strings; a dotted name (`realm_access.roles`)
	// reaches into nested objects. Default: `scope`.
	Claim string `json:"claim,omitempty"`

	// Allow are the rules, in order; the first whose method and path match
	// decides.
	Allow []Rule `json:"allow,omitempty"`

	// Default decides requests no rule matches: "deny" (the default)
	// answers 403; "allow" lets them through unchecked. With "allow",
	// remember that a request spelled so that no rule matches it passes.
	Default string `json:"default,omitempty"`

	logger *zap.Logger
	audit  *zap.Logger
	claim  string
	policy *policy
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.scope_authz",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision compiles the rules and logs risky ones (rules shadowed by
// earlier ones, default allow, no rules).
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	if err := metrics.Register(ctx); err != nil {
		return fmt.Errorf("scope_authz: %w", err)
	}
	h.claim = h.Claim
	if h.claim == "" {
		h.claim = DefaultClaim
	}
	p, warnings, err := h.compile()
	if err != nil {
		return err
	}
	for _, w := range warnings {
		h.logger.Warn("risky policy", zap.String("warning", w))
	}
	h.policy = p
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	_, _, err := h.compile()
	return err
}

func (h *Handler) compile() (*policy, []string, error) {
	if err := CheckClaim(h.Claim); err != nil {
		return nil, nil, fmt.Errorf("scope_authz: claim %q: %w", h.Claim, err)
	}
	p, warnings, err := compilePolicy(h.Allow, h.Default)
	if err != nil {
		return nil, nil, fmt.Errorf("scope_authz: %w", err)
	}
	return p, warnings, nil
}

// CheckClaim accepts claim names and dotted paths without empty parts or
// white space.
func CheckClaim(c string) error {
	if c == "" {
		return nil
	}
	for part := range strings.SplitSeq(c, ".") {
		if part == "" {
			return errors.New("empty part in dotted claim name")
		}
	}
	if strings.ContainsFunc(c, func(r rune) bool { return r <= ' ' || r == 0x7F }) {
		return errors.New("white space or control character in claim name")
	}
	return nil
}

// ServeHTTP decides the request: next on allow, a problem response on
// deny.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	requestid.Ensure(w, r)
	id := oidcauth.IdentityFrom(r)

	// The method judged is the method the upstream acts on (oidc_auth
	// does the same for every route; this covers scope_authz alone).
	if !methodoverride.Strip(r) {
		h.log(r, id, r.URL.EscapedPath(), metrics.ReasonPath, audit.Deny, "")
		problem.Error(w, r, http.StatusBadRequest, "method-override headers are not accepted; send the method itself")
		return nil
	}

	escaped := r.URL.EscapedPath()
	path, err := CheckPath(escaped)
	if err != nil {
		h.log(r, id, escaped, "path", audit.Deny, "")
		problem.Error(w, r, http.StatusBadRequest, "ambiguous request path: "+err.Error())
		return nil
	}

	rl, pt := h.policy.match(r.Method, path)
	if rl == nil {
		if h.policy.defaultAllow {
			h.log(r, id, path, "default", audit.Allow, "")
			return next.ServeHTTP(w, r)
		}
		// SPEC §5: a deny is 401 when anonymous (logging in may help: a
		// logged-in user may still be denied, but the shell should try),
		// 403 otherwise.
		if id == nil {
			h.log(r, id, path, "default", audit.Deny, Authenticated)
			problem.Write(w, r, problem.Details{Status: http.StatusUnauthorized,
				Detail: "no policy rule admits anonymous requests here; log in", LoginURL: oidcauth.LoginURLFrom(r), Missing: Authenticated})
			return nil
		}
		h.log(r, id, path, "default", audit.Deny, "")
		problem.Error(w, r, http.StatusForbidden, "no policy rule allows this request")
		return nil
	}

	var scopes scopeSet
	if id != nil {
		scopes = scopesOf(id.Claims, id.Scopes, h.claim)
	}
	ok, missing := rl.reqs.check(id != nil, scopes)
	stepUp, hasStepUp := rl.reqs.StepUp()
	if ok && hasStepUp && !stepUp.Met(id, time.Now()) {
		// Logged in with the scopes, but not strongly or recently enough.
		h.log(r, id, path, pt.label, audit.Deny, stepUp.String())
		stepUp.Challenge(w, r)
		return nil
	}
	if ok {
		h.log(r, id, path, pt.label, audit.Allow, "")
		return next.ServeHTTP(w, r)
	}
	h.log(r, id, path, pt.label, audit.Deny, missing)
	if id == nil {
		login := oidcauth.LoginURLFrom(r)
		if hasStepUp {
			// One login that also delivers the step-up.
			login = oidcauth.StepUpLoginURL(r, stepUp)
		}
		problem.Write(w, r, problem.Details{
			Status:   http.StatusUnauthorized,
			Detail:   loginDetail(missing),
			LoginURL: login,
			Missing:  missing,
		})
		return nil
	}
	problem.Write(w, r, problem.Details{
		Status:  http.StatusForbidden,
		Detail:  "insufficient scope: this request needs " + missing,
		Missing: missing,
	})
	return nil
}

func loginDetail(missing string) string {
	if missing == Authenticated {
		return "login required"
	}
	return "login required: this request needs " + missing
}

// log counts a decision and writes its audit entry. rule is "path" (an
// ambiguous path), "default" or the deciding rule's label; path is the
// path judged.
func (h *Handler) log(r *http.Request, id *oidcauth.Identity, path, rule string, outcome audit.Outcome, missing string) {
	reason := metrics.ReasonRule
	if rule == metrics.ReasonPath || rule == metrics.ReasonDefault {
		reason = rule
	}
	metrics.Authz(outcome == audit.Allow, reason)
	e := audit.Entry{Outcome: outcome, Path: path}
	if id != nil {
		e.Sub = id.Subject
	}
	audit.Write(h.audit, audit.Authz, r, e, zap.String("rule", rule), zap.String("missing", missing))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
