package scopeauthz

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-bff/caddy-bff/internal/claims"
	"github.com/caddy-bff/caddy-bff/oidcauth"
)

// Requirement keywords.
const (
	// Authenticated is met by any logged-in user.
	Authenticated = "authenticated"
	// Anonymous is met by everyone, logged in or not. It cannot be combined
	// with other requirements.
	Anonymous = "anonymous"
)

// DefaultClaim is the claim scopes are read from when none is configured.
const DefaultClaim = "scope"

type reqKind uint8

const (
	kindScopes reqKind = iota
	kindAuthenticated
	kindAnonymous
	kindACR    // acr:<value>: step-up to an authentication context class
	kindMaxAge // max_age:<duration>: step-up to a recent authentication
)

// Step-up requirement prefixes (RFC 9470 semantics).
const (
	ACRPrefix    = "acr:"
	MaxAgePrefix = "max_age:"
)

// Requirement is one term of a policy, as written: a scope such as
// `recipes:read`; alternatives `recipes:read|admin`, met by any one of
// them; `authenticated`, met by any logged-in user; or `anonymous`, met by
// everyone. Only ParseRequirements builds them.
type Requirement struct {
	text   string
	kind   reqKind
	alts   []string      // scopes; for kindACR the one acr value
	maxAge time.Duration // kindMaxAge
}

// String returns the requirement as written.
func (q Requirement) String() string { return q.text }

// Requirements are the requirements of one rule, all of which must hold.
// Only ParseRequirements builds them; the zero value admits no one.
type Requirements struct {
	list   []Requirement
	stepUp *oidcauth.StepUp // the acr: and max_age: requirements, if any
}

// StepUp returns what the requirements ask of the login beyond scopes
// (their acr: and max_age: terms), and whether they ask anything. Check
// does not judge these: a caller that admits a user by Check must also
// see that StepUp's Met holds, or ask for a step-up login.
func (rs Requirements) StepUp() (oidcauth.StepUp, bool) {
	if rs.stepUp == nil {
		return oidcauth.StepUp{}, false
	}
	return *rs.stepUp, true
}

// String returns the requirements as written, space-separated.
func (rs Requirements) String() string {
	var b strings.Builder
	for i, q := range rs.list {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(q.text)
	}
	return b.String()
}

// Anonymous reports whether rs admit everyone.
func (rs Requirements) Anonymous() bool {
	return len(rs.list) == 1 && rs.list[0].kind == kindAnonymous
}

// ParseRequirements parses requirement tokens, one requirement each: a
// scope, `a|b` (either), `authenticated` or `anonymous`. A scope is one or
// more printable ASCII characters other than space, `"`, `\` and `|`
// (RFC 6749 §3.3 scope-token, less our separator), not starting with `/`,
// and not `*`. `anonymous` must stand alone; the keywords cannot be
// alternatives. At least one token is required.
func ParseRequirements(tokens []string) (Requirements, error) {
	if len(tokens) == 0 {
		return Requirements{}, errors.New("no requirement")
	}
	rs := Requirements{list: make([]Requirement, 0, len(tokens))}
	for _, tok := range tokens {
		q, err := parseRequirement(tok)
		if err != nil {
			return Requirements{}, fmt.Errorf("requirement %q: %w", tok, err)
		}
		if q.kind == kindAnonymous && len(tokens) > 1 {
			return Requirements{}, errors.New("anonymous admits everyone and cannot be combined with other requirements")
		}
		if q.kind == kindACR || q.kind == kindMaxAge {
			if rs.stepUp == nil {
				rs.stepUp = &oidcauth.StepUp{MaxAge: -1}
			}
			switch {
			case q.kind == kindACR && rs.stepUp.ACR != "":
				return Requirements{}, errors.New("more than one acr: requirement: rank the values with oidc_auth's acr_levels and require the weakest that suffices")
			case q.kind == kindACR:
				rs.stepUp.ACR = q.alts[0]
			case rs.stepUp.MaxAge >= 0:
				return Requirements{}, errors.New("more than one max_age: requirement")
			default:
				rs.stepUp.MaxAge = q.maxAge
			}
		}
		rs.list = append(rs.list, q)
	}
	return rs, nil
}

func parseRequirement(tok string) (Requirement, error) {
	switch tok {
	case Authenticated:
		return Requirement{text: tok, kind: kindAuthenticated}, nil
	case Anonymous:
		return Requirement{text: tok, kind: kindAnonymous}, nil
	case "":
		return Requirement{}, errors.New("empty requirement")
	}
	if p, _, ok := strings.Cut(tok, ":"); ok && p != tok && (strings.EqualFold(p+":", ACRPrefix) || strings.EqualFold(p+":", MaxAgePrefix)) &&
		!strings.HasPrefix(tok, ACRPrefix) && !strings.HasPrefix(tok, MaxAgePrefix) {
		return Requirement{}, fmt.Errorf("write %s in lower case (%s or %s)", p+":", ACRPrefix, MaxAgePrefix)
	}
	if v, ok := strings.CutPrefix(tok, ACRPrefix); ok {
		if strings.Contains(v, "|") {
			return Requirement{}, errors.New("acr: takes one value; rank values with oidc_auth's acr_levels instead of alternatives")
		}
		if err := oidcauth.CheckACRValue(v); err != nil {
			return Requirement{}, err
		}
		return Requirement{text: tok, kind: kindACR, alts: []string{v}}, nil
	}
	if v, ok := strings.CutPrefix(tok, MaxAgePrefix); ok {
		d, err := caddy.ParseDuration(v)
		switch {
		case strings.Contains(v, "|"):
			return Requirement{}, errors.New("max_age: cannot have alternatives")
		case err != nil:
			return Requirement{}, fmt.Errorf("max_age: %v (write a duration such as 10m)", err)
		case d < 0:
			return Requirement{}, errors.New("max_age: must not be negative")
		case d%time.Second != 0:
			return Requirement{}, errors.New("max_age: must be whole seconds (the provider's max_age is in seconds)")
		case d > oidcauth.MaxStepUpAge:
			return Requirement{}, fmt.Errorf("max_age: at most %s", oidcauth.MaxStepUpAge)
		}
		return Requirement{text: tok, kind: kindMaxAge, maxAge: d}, nil
	}
	q := Requirement{text: tok, kind: kindScopes}
	for alt := range strings.SplitSeq(tok, "|") {
		switch {
		case alt == "":
			return Requirement{}, errors.New("empty alternative")
		case alt == Authenticated, alt == Anonymous, strings.HasPrefix(alt, ACRPrefix), strings.HasPrefix(alt, MaxAgePrefix):
			return Requirement{}, fmt.Errorf("%s cannot be an alternative", alt)
		case alt == "*":
			return Requirement{}, errors.New("* is not a requirement: use anonymous or authenticated")
		}
		if alt[0] == '/' {
			return Requirement{}, errors.New("looks like a path pattern: put path patterns before requirements")
		}
		for i := 0; i < len(alt); i++ {
			if c := alt[i]; c < 0x21 || c > 0x7E || c == '"' || c == '\\' {
				return Requirement{}, fmt.Errorf("character %q is not allowed in a scope", c)
			}
		}
		q.alts = append(q.alts, alt)
	}
	return q, nil
}

// Check reports whether a user meets every requirement: authenticated is
// false for an anonymous request, scopes are the user's scopes (see
// ScopesFrom). When not, it returns the first requirement not met, as
// written. The zero Requirements admit no one. Check cannot judge step-up
// terms (acr:, max_age:), which need the login's facts: requirements that
// have any are not met here (missing names them); see CheckScopes and
// StepUp.
func (rs Requirements) Check(authenticated bool, scopes []string) (ok bool, missing string) {
	ok, missing = rs.check(authenticated, scopeSet{list: scopes})
	if ok && rs.stepUp != nil {
		return false, rs.stepUp.String()
	}
	return ok, missing
}

// CheckScopes is Check with the step-up terms taken as met by any
// logged-in user: for callers that judge StepUp themselves (bff_apps
// lists an app whose step-up is unmet, with what opening it takes).
func (rs Requirements) CheckScopes(authenticated bool, scopes []string) (ok bool, missing string) {
	return rs.check(authenticated, scopeSet{list: scopes})
}

// check is Check over any representation of the scopes. It does not
// allocate.
func (rs Requirements) check(authenticated bool, scopes scopeSet) (bool, string) {
	if len(rs.list) == 0 {
		return false, ""
	}
	for i := range rs.list {
		q := &rs.list[i]
		switch q.kind {
		case kindAnonymous:
			// ParseRequirements keeps it alone.
			return true, ""
		case kindAuthenticated, kindACR, kindMaxAge:
			if !authenticated {
				return false, q.text
			}
		default:
			if !authenticated || !scopes.hasAny(q.alts) {
				return false, q.text
			}
		}
	}
	return true, ""
}

// ScopesFrom returns a user's scopes from the named claim of their claims:
// a space-separated string or an array of strings; a dotted name reaches
// into nested objects (`realm_access.roles`). An empty name means
// DefaultClaim; for it, granted (the scopes of the token response) stand in
// when the claim is absent. A claim of any other type holds no scopes.
func ScopesFrom(userClaims map[string]any, granted []string, claim string) []string {
	s := scopesOf(userClaims, granted, claim)
	if s.list != nil {
		return s.list
	}
	if s.arr != nil {
		return claims.Strings(s.arr)
	}
	return claims.Strings(s.str)
}

// scopeSet is the user's scopes in the form the claim holds them, so that
// checking them does not allocate. At most one field is set.
type scopeSet struct {
	list []string
	arr  []any
	str  string
}

func scopesOf(userClaims map[string]any, granted []string, claim string) scopeSet {
	if claim == "" {
		claim = DefaultClaim
	}
	v, ok := claims.Lookup(userClaims, claim)
	if !ok {
		if claim == DefaultClaim {
			return scopeSet{list: granted}
		}
		return scopeSet{}
	}
	switch v := v.(type) {
	case string:
		return scopeSet{str: v}
	case []any:
		return scopeSet{arr: v}
	case []string:
		return scopeSet{list: v}
	}
	return scopeSet{}
}

// hasAny reports whether the set holds one of the scopes.
func (s scopeSet) hasAny(want []string) bool {
	for _, w := range want {
		if s.has(w) {
			return true
		}
	}
	return false
}

func (s scopeSet) has(want string) bool {
	if want == "" {
		return false
	}
	for _, v := range s.list {
		if v == want {
			return true
		}
	}
	for _, v := range s.arr {
		if v, ok := v.(string); ok && v == want {
			return true
		}
	}
	for i := 0; i < len(s.str); {
		var f string
		f, i = claims.NextField(s.str, i)
		if f == want {
			return true
		}
	}
	return false
}
