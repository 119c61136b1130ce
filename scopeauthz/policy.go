package scopeauthz

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Rule is one `allow` line: requests whose method and path match are
// decided by its requirements.
type Rule struct {
	// Methods the rule applies to, in upper case: `GET`, `POST`, ...
	// Empty (the Caddyfile's `*`) means every method. Requests are
	// matched ignoring ASCII case, so `get` cannot slip past a GET rule.
	// GET does not imply HEAD: list HEAD too where it is served.
	Methods []string `json:"methods,omitempty"`

	// Paths are the path patterns the rule applies to, matched against
	// the decoded request path ignoring case, as Caddy's path matcher
	// does (/api/Admin/x is /api/admin/x):
	//
	//   - exact: `/api/me` matches /api/me only (not /api/me/);
	//   - prefix: a trailing `/*`, as in `/api/recipes/*`, matches
	//     /api/recipes/ and everything below it, but not /api/recipes
	//     itself (list both, like `/api/recipes /api/recipes/*`);
	//     `/*` matches every path;
	//   - segment wildcard: `*` as a whole segment elsewhere, as in
	//     `/api/teams/*/members`, matches any one non-empty segment.
	//
	// Patterns are written decoded (no percent-escapes) and cannot hold
	// what a request path cannot: dot or empty segments (a single trailing
	// slash aside), `\`, `;`, `?`, `#`, `%` or control characters.
	Paths []string `json:"paths,omitempty"`

	// Require are the requirements, all of which must hold: a scope, `a|b`
	// for either, `authenticated` for any logged-in user, or `anonymous`
	// (alone) for everyone.
	Require []string `json:"require,omitempty"`
}

// policy is the compiled form of the rules.
type policy struct {
	rules        []rule
	defaultAllow bool
}

type rule struct {
	methods  []string // nil: every method
	patterns []pattern
	reqs     Requirements
}

// pattern is a path pattern split into segments once, so that matching
// neither splits nor allocates.
type pattern struct {
	raw string
	// segs are the segments after the leading slash; "*" matches any one
	// non-empty segment. An exact pattern ending in a slash ends with "".
	segs []string
	// prefix: the pattern ended in "/*" (not part of segs).
	prefix bool
	// ascii: every segment is ASCII, so a path segment of another length
	// cannot equal one (lower-casing changes lengths only outside ASCII,
	// and CheckPath refused the runes that lower-case into ASCII).
	ascii bool
	// label names the rule and pattern in the audit log: "#2 GET /x/*".
	label string
}

// knownMethods are the methods of RFC 9110, PATCH (RFC 5789), WebDAV
// (RFC 4918, 3253, 4791, 5323) and QUERY; others only warn, as a typo
// (GTE) makes a rule that never applies.
var knownMethods = []string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "MKCALENDAR",
}

// compilePolicy checks and compiles the rules. Errors name the rule
// (`allow #2`, counting from 1); warnings are for Provision to log.
func compilePolicy(rules []Rule, def string) (*policy, []string, error) {
	p := &policy{rules: make([]rule, 0, len(rules))}
	switch def {
	case "", "deny":
	case "allow":
		p.defaultAllow = true
	default:
		return nil, nil, fmt.Errorf("default %q: want deny or allow", def)
	}
	var warnings []string
	for i, r := range rules {
		c, w, err := compileRule(i+1, r)
		if err != nil {
			return nil, nil, fmt.Errorf("allow #%d: %w", i+1, err)
		}
		p.rules = append(p.rules, c)
		warnings = append(warnings, w...)
	}
	if len(rules) == 0 && !p.defaultAllow {
		warnings = append(warnings, "no allow rules: every request is denied")
	}
	if p.defaultAllow {
		warnings = append(warnings, "default allow: requests no rule matches pass unchecked, whatever their method or path spelling")
	}
	return p, append(warnings, p.shadowed()...), nil
}

// compileRule checks and compiles rule number n.
func compileRule(n int, r Rule) (rule, []string, error) {
	var (
		c        rule
		warnings []string
		label    strings.Builder
	)
	label.WriteString("#" + strconv.Itoa(n))
	switch {
	case len(r.Methods) == 0 || len(r.Methods) == 1 && r.Methods[0] == "*":
		label.WriteString(" *")
	default:
		for _, m := range r.Methods {
			if err := checkMethod(m); err != nil {
				return rule{}, nil, err
			}
			if !slices.Contains(knownMethods, m) {
				warnings = append(warnings, fmt.Sprintf("allow #%d: unusual method %q", n, m))
			}
			c.methods = append(c.methods, m)
			label.WriteString(" " + m)
		}
	}
	if len(r.Paths) == 0 {
		return rule{}, nil, errors.New("no path pattern")
	}
	for _, raw := range r.Paths {
		pt, err := compilePattern(raw)
		if err != nil {
			return rule{}, nil, fmt.Errorf("path pattern %q: %w", raw, err)
		}
		pt.label = label.String() + " " + raw
		c.patterns = append(c.patterns, pt)
	}
	if len(r.Require) == 0 {
		return rule{}, nil, errors.New("no requirement")
	}
	reqs, err := ParseRequirements(r.Require)
	if err != nil {
		return rule{}, nil, err
	}
	c.reqs = reqs
	return c, warnings, nil
}

// checkMethod accepts upper-case method tokens (RFC 9110 §9.1 token,
// letters upper case).
func checkMethod(m string) error {
	if m == "*" {
		return errors.New(`method "*" must stand alone`)
	}
	if m == "" {
		return errors.New("empty method")
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9' && i > 0, (c == '-' || c == '_') && i > 0:
		default:
			return fmt.Errorf("invalid method %q: want upper-case HTTP methods or *", m)
		}
	}
	return nil
}

// compilePattern splits a path pattern into segments, refusing patterns
// that no path CheckPath accepts could match.
func compilePattern(raw string) (pattern, error) {
	pt := pattern{raw: raw}
	if !strings.HasPrefix(raw, "/") {
		return pattern{}, errors.New("must start with /")
	}
	if !utf8.ValidString(raw) {
		return pattern{}, errors.New("invalid UTF-8")
	}
	for _, c := range raw {
		switch {
		case c == '%':
			return pattern{}, errors.New("write patterns decoded, without percent-escapes: they are matched against the decoded path")
		case c == '\\', c == ';', c == '?', c == '#':
			return pattern{}, fmt.Errorf("%q never appears in an accepted request path", c)
		case c < 0x20, c == 0x7F, c >= 0x80 && c <= 0x9F, isConfusable(c), unicode.Is(foldsIntoASCII, c):
			return pattern{}, fmt.Errorf("character %U never appears in an accepted request path", c)
		}
	}
	rest := raw[1:]
	if rest == "*" {
		return pattern{raw: raw, prefix: true}, nil
	}
	if r, ok := strings.CutSuffix(rest, "/*"); ok {
		pt.prefix, rest = true, r
	}
	// Lower-cased once here, as Caddy's path matcher lower-cases its
	// patterns; paths are lower-cased as they are compared (equalLower).
	pt.segs = strings.Split(strings.ToLower(rest), "/")
	pt.ascii = !strings.ContainsFunc(rest, func(r rune) bool { return r >= utf8.RuneSelf })
	for i, s := range pt.segs {
		last := i == len(pt.segs)-1
		switch {
		case s == "." || s == "..":
			return pattern{}, errors.New("dot segments never appear in an accepted request path")
		case s == "" && (!last || pt.prefix):
			return pattern{}, errors.New("empty segments (//) never appear in an accepted request path")
		case s != "*" && strings.Contains(s, "*"):
			return pattern{}, errors.New("* must be a whole segment")
		case strings.HasSuffix(s, ".") || strings.HasSuffix(s, " "):
			return pattern{}, errors.New("segments ending in a dot or a space never appear in an accepted request path")
		}
	}
	return pt, nil
}

func isConfusable(r rune) bool {
	for _, c := range confusables {
		if r == c {
			return true
		}
	}
	return false
}

// match returns the first rule and pattern matching the request, or nil.
// It does not allocate.
func (p *policy) match(method, path string) (*rule, *pattern) {
	for i := range p.rules {
		r := &p.rules[i]
		if !r.matchMethod(method) {
			continue
		}
		for j := range r.patterns {
			if r.patterns[j].match(path) {
				return r, &r.patterns[j]
			}
		}
	}
	return nil, nil
}

func (r *rule) matchMethod(m string) bool {
	if r.methods == nil {
		return true
	}
	for _, want := range r.methods {
		if equalFoldASCII(m, want) {
			return true
		}
	}
	return false
}

// equalFoldASCII compares ignoring ASCII case only: Unicode folding would
// make "POſT" equal "POST".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// equalLower reports whether seg, lower-cased, is low (a pattern segment
// lower-cased at compile time): Caddy's path matcher compares
// strings.ToLower of both. It does not allocate, and for ASCII it is a
// byte loop. CheckPath refused the runes whose case mapping or NFKC
// reaches ASCII, so no other spelling of an ASCII pattern gets this far.
func equalLower(seg, low string) bool {
	i, j := 0, 0
	for i < len(seg) && j < len(low) {
		c, d := seg[i], low[j]
		if c < utf8.RuneSelf && d < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != d {
				return false
			}
			i, j = i+1, j+1
			continue
		}
		ra, na := utf8.DecodeRuneInString(seg[i:])
		rb, nb := utf8.DecodeRuneInString(low[j:])
		if unicode.ToLower(ra) != rb {
			return false
		}
		i, j = i+na, j+nb
	}
	return i == len(seg) && j == len(low)
}

// match reports whether the clean path p (as CheckPath returns it)
// matches. Segments are walked by index: no splitting, no allocation.
func (pt *pattern) match(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	i := 1 // start of the current segment
	for _, want := range pt.segs {
		if i > len(p) {
			return false // the path has fewer segments
		}
		end := strings.IndexByte(p[i:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += i
		}
		seg := p[i:end]
		if want == "*" {
			if seg == "" {
				return false
			}
		} else if len(seg) != len(want) && pt.ascii || !equalLower(seg, want) {
			return false
		}
		i = end + 1
	}
	if pt.prefix {
		// The matched segments must be followed by a slash: i is past it.
		return i <= len(p)
	}
	return i == len(p)+1
}

// covers reports whether every path b matches is matched by a.
func (a *pattern) covers(b *pattern) bool {
	if !a.prefix {
		if b.prefix || len(a.segs) != len(b.segs) {
			return false
		}
	} else if len(b.segs) < len(a.segs) || len(b.segs) == len(a.segs) && !b.prefix {
		return false
	}
	for k, s := range a.segs {
		switch {
		case s == "*":
			if b.segs[k] == "" {
				return false
			}
		case s != b.segs[k]: // both lower-cased at compile time
			return false
		}
	}
	return true
}

// coversMethods reports whether r applies to every method o applies to.
func (r *rule) coversMethods(o *rule) bool {
	if r.methods == nil {
		return true
	}
	if o.methods == nil {
		return false
	}
	for _, m := range o.methods {
		if !slices.Contains(r.methods, m) {
			return false
		}
	}
	return true
}

// shadowed warns about patterns an earlier rule always decides first:
// same or broader methods and a pattern matching every path they match.
func (p *policy) shadowed() []string {
	var warnings []string
	for j := range p.rules {
		later := &p.rules[j]
		var msgs []string
		first := ""
		for k := range later.patterns {
			b := &later.patterns[k]
			if by := p.shadowedBy(j, later, b); by != "" {
				msgs = append(msgs, fmt.Sprintf("allow #%d: pattern %s is shadowed by rule %s, which decides first", j+1, b.raw, by))
				if first == "" {
					first = by
				}
			}
		}
		if len(msgs) == len(later.patterns) {
			warnings = append(warnings, fmt.Sprintf("allow #%d never applies: earlier rules (%s) match all its requests", j+1, first))
			continue
		}
		warnings = append(warnings, msgs...)
	}
	return warnings
}

// shadowedBy returns the label of the first pattern of a rule before
// rule j that matches all of b's requests, or "".
func (p *policy) shadowedBy(j int, later *rule, b *pattern) string {
	for i := range p.rules[:j] {
		earlier := &p.rules[i]
		if !earlier.coversMethods(later) {
			continue
		}
		for l := range earlier.patterns {
			if earlier.patterns[l].covers(b) {
				return earlier.patterns[l].label
			}
		}
	}
	return ""
}
