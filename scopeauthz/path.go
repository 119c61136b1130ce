package scopeauthz

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Reasons CheckPath refuses a path. Their text is safe to show clients: it
// never echoes the path.
var (
	errNotAbsolute  = errors.New("path does not start with /")
	errBadEscape    = errors.New("invalid percent-encoding")
	errDotSegment   = errors.New("dot segment")
	errEmptySegment = errors.New("empty segment (repeated slash)")
	errEncodedSlash = errors.New("encoded slash")
	errBackslash    = errors.New("backslash")
	errControl      = errors.New("control character")
	errParameter    = errors.New("path parameter (;)")
	errDoubleEscape = errors.New("double percent-encoding")
	errBadUTF8      = errors.New("invalid UTF-8")
	errConfusable   = errors.New("character that normalises to a path delimiter")
	errFoldsASCII   = errors.New("character that case mapping or NFKC folds into ASCII")
	errSegmentEnd   = errors.New("segment ending in a dot or a space")
	errRawDelimiter = errors.New("unencoded ? or # or space")
	errEncodedDelim = errors.New("encoded ? or #")
	errInvisible    = errors.New("invisible (format or default-ignorable) character")
)

// confusables are the non-ASCII runes whose Unicode compatibility form
// (NFKC) is made of dots only, or contains /, \, % or ;. An upstream that
// normalises paths (some Java, .NET and Python stacks do) would turn them
// into dot segments, separators, escapes or parameters after our check.
// Derived with golang.org/x/text/unicode/norm over every rune.
var confusables = [...]rune{
	0x037E,                 // GREEK QUESTION MARK, canonically ';'
	0x2024, 0x2025, 0x2026, // one/two dot leader, ellipsis
	0x2100, 0x2101, 0x2105, 0x2106, // a/c a/s c/o c/u
	0xFE14, 0xFE19, 0xFE30, 0xFE52, 0xFE54, 0xFE68, 0xFE6A, // presentation forms
	0xFF05, 0xFF0E, 0xFF0F, 0xFF1B, 0xFF3C, // fullwidth % . / ; \
}

// CheckPath decodes a request path as the client sent it (escapedPath is
// url.URL.EscapedPath()) and returns the path the upstream will see, or an
// error when the path is ambiguous: when a server, proxy or framework
// between us and the upstream could read it as another path than the one
// the policy judged. It refuses:
//
//   - a path not starting with /;
//   - invalid percent-encoding (% not followed by two hex digits);
//   - dot segments, . or .., plain or percent-encoded in any case (%2e%2E);
//   - empty segments (//), anywhere but a single trailing slash;
//   - an encoded slash (%2F), a backslash raw or encoded (%5C);
//   - ; raw or encoded (%3B): path parameters (RFC 3986 §3.3) that some
//     servers strip and others keep;
//   - control characters raw or encoded: C0 (NUL included), DEL and C1;
//   - an unencoded ?, # or space (not a valid escaped path), and an
//     encoded ? or # (%3F, %23), which a proxy that decodes once more
//     turns into the start of a query or fragment;
//   - double encoding: a decoded % followed by two hex digits (%252e),
//     or by u and four hex digits (%25u002e: IIS's %uXXXX form);
//   - decoded bytes that are not valid UTF-8, overlong forms included
//     (%C0%AE);
//   - runes whose compatibility form is a dot, slash, backslash, % or ;
//     (fullwidth ．／＼ and the like), which normalising upstreams fold;
//   - a segment ending in a dot or a space (raw or encoded, any Unicode
//     space): Windows, IIS and .NET trim them, so /api/admin./x and
//     /api/admin%20/x are /api/admin/x there;
//   - any rune that NFKC, a simple or full case mapping or case folding
//     turns into ASCII (fullwidth letters, dotless ı, İ, the Kelvin sign,
//     long ſ, ß, ligatures, mathematical letters, NBSP and other spaces;
//     see fold_table.go): upstreams that normalise or compare ignoring
//     case would read them as ASCII letters another rule speaks of;
//   - invisible characters: format characters (Cf: zero-width space and
//     joiners, soft hyphen, BOM, bidi controls) and the other
//     default-ignorable code points and variation selectors, which
//     NFKC_Casefold and culture-aware comparisons drop (/api/admin<ZWSP>/x
//     is /api/admin/x there).
//
// A single trailing slash is kept and is significant, as in Caddy's path
// matcher: /api/recipes/ is not /api/recipes. Case is kept in the result;
// the policy compares paths ignoring case, as Caddy's path matcher does.
// Apart from a trailing slash, an accepted path is its own path.Clean.
// CheckPath does not allocate unless the path holds percent-escapes.
func CheckPath(escapedPath string) (clean string, err error) {
	p := escapedPath
	if p == "" || p[0] != '/' {
		return "", errNotAbsolute
	}
	escaped := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", errBadEscape
			}
			escaped = true
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if d == '/' {
				return "", errEncodedSlash
			}
			if d == '?' || d == '#' {
				return "", errEncodedDelim
			}
			if err := checkByte(d); err != nil {
				return "", err
			}
			i += 2
		case c == '?' || c == '#' || c == ' ':
			return "", errRawDelimiter
		default:
			if err := checkByte(c); err != nil {
				return "", err
			}
		}
	}
	clean = p
	if escaped {
		clean = unescape(p)
	}
	if err := checkDecoded(clean); err != nil {
		return "", err
	}
	return clean, nil
}

// checkByte refuses the bytes that are ambiguous raw or encoded.
func checkByte(c byte) error {
	switch {
	case c == '\\':
		return errBackslash
	case c == ';':
		return errParameter
	case c < 0x20 || c == 0x7F:
		return errControl
	}
	return nil
}

// checkDecoded checks the decoded path: segments, double escapes, UTF-8
// and runes that normalise to delimiters.
func checkDecoded(p string) error {
	// Segments by index: p[start:i] is the segment ending at i.
	start := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		seg := p[start:i]
		switch seg {
		case ".", "..":
			return errDotSegment
		case "":
			// An empty last segment is the root or a trailing slash.
			if i < len(p) {
				return errEmptySegment
			}
		}
		if seg != "" {
			if last, _ := utf8.DecodeLastRuneInString(seg); last == '.' || unicode.Is(unicode.Z, last) {
				return errSegmentEnd
			}
		}
		start = i + 1
	}
	for i := 0; i < len(p); {
		c := p[i]
		if c == '%' && isEscapeAt(p, i) {
			return errDoubleEscape
		}
		if c < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError && size <= 1 {
			return errBadUTF8
		}
		if r >= 0x80 && r <= 0x9F {
			return errControl
		}
		for _, c := range confusables {
			if r == c {
				return errConfusable
			}
		}
		if unicode.Is(foldsIntoASCII, r) {
			return errFoldsASCII
		}
		if unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) {
			return errInvisible
		}
		i += size
	}
	return nil
}

// isEscapeAt reports whether p[i] (a '%') starts an escape that a second
// decoding would decode: %XX, or %uXXXX as IIS and some other stacks read it.
func isEscapeAt(p string, i int) bool {
	if i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
		return true
	}
	return i+5 < len(p) && (p[i+1] == 'u' || p[i+1] == 'U') &&
		isHex(p[i+2]) && isHex(p[i+3]) && isHex(p[i+4]) && isHex(p[i+5])
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// unescape decodes %XX escapes; p has been checked to be well-formed.
func unescape(p string) string {
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' {
			b.WriteByte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
