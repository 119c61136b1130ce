// Package claims reads values out of a token's claims the one way every
// caddy-bff handler does: dotted names reach into nested objects, and a
// list of strings may be a space-separated string or a JSON array.
package claims

// Lookup returns the claim called name. A name that is not itself a key
// and holds dots walks nested objects: "realm_access.roles" is
// claims["realm_access"]["roles"]. It does not allocate.
func Lookup(claims map[string]any, name string) (any, bool) {
	if v, ok := claims[name]; ok {
		return v, true
	}
	var cur any = claims
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			continue
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[name[start:i]]
		if !ok {
			return nil, false
		}
		start = i + 1
	}
	return cur, true
}

// Strings returns a claim that holds a list of strings (scopes, roles,
// groups): a string separated by ASCII white space (RFC 6749 §3.3 uses
// spaces; tabs and newlines are tolerated), or an array whose string
// members count and whose other members are ignored. Anything else holds
// none.
func Strings(v any) []string {
	switch v := v.(type) {
	case string:
		var out []string
		for i := 0; i < len(v); {
			var f string
			f, i = NextField(v, i)
			if f != "" {
				out = append(out, f)
			}
		}
		return out
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return v
	}
	return nil
}

// NextField returns the field of s at or after i, separated by ASCII
// white space, and the index after it, so a caller can walk the fields of
// a space-separated claim without allocating.
func NextField(s string, i int) (string, int) {
	for i < len(s) && IsSpace(s[i]) {
		i++
	}
	start := i
	for i < len(s) && !IsSpace(s[i]) {
		i++
	}
	return s[start:i], i
}

// IsSpace reports whether c is ASCII white space.
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
