package scopeauthz

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// pathCases are escaped request paths (as url.URL.EscapedPath returns
// them) and what CheckPath makes of them: the clean path, or the reason
// for refusing.
var pathCases = []struct {
	name, in, want string
	err            error
}{
	{"root", "/", "/", nil},
	{"plain", "/api/recipes", "/api/recipes", nil},
	{"trailing slash kept", "/api/recipes/", "/api/recipes/", nil},
	{"case kept", "/API/Recipes", "/API/Recipes", nil},
	{"encoded space", "/files/my%20file", "/files/my file", nil},
	{"encoded letters decoded", "/api/%72ecipes", "/api/recipes", nil},
	{"lower-case hex", "/a/%c3%a9", "/a/é", nil},
	{"raw utf-8", "/a/é", "/a/é", nil},
	{"literal percent", "/100%25", "/100%", nil},
	{"percent not before hex", "/a%25zz", "/a%zz", nil},
	{"percent u not before four hex", "/a%25u12/%25uzzzz", "/a%u12/%uzzzz", nil},
	{"encoded question mark mid-segment", "/a%3Fb", "", errEncodedDelim},
	{"dots inside segment", "/a/..b/c.d", "/a/..b/c.d", nil},
	{"encoded space inside", "/a/b%20c", "/a/b c", nil},
	{"accented letters", "/api/caf%C3%A9/%C3%89t%C3%A9", "/api/café/Été", nil},
	{"cyrillic and cjk", "/api/%D0%B6/%E4%B8%AD", "/api/ж/中", nil},
	{"three dots", "/a/.../b", "", errSegmentEnd},
	{"trailing dots", "/a/..b/c..", "", errSegmentEnd},
	{"trailing dot", "/api/admin./users", "", errSegmentEnd},
	{"trailing dot last", "/api/admin/users.", "", errSegmentEnd},
	{"encoded trailing dot", "/api/admin%2E/users", "", errSegmentEnd},
	{"encoded trailing space", "/api/admin%20/users", "", errSegmentEnd},
	{"trailing dot space", "/api/admin.%20/users", "", errSegmentEnd},
	{"trailing ogham space", "/api/admin%E1%9A%80/users", "", errSegmentEnd},
	{"trailing line separator", "/api/admin%E2%80%A8/users", "", errSegmentEnd},
	{"trailing NBSP", "/api/admin%C2%A0/users", "", errSegmentEnd},
	{"inner NBSP", "/api/a%C2%A0b", "", errFoldsASCII},
	{"zero-width space", "/api/admin%E2%80%8B/users", "", errInvisible},
	{"soft hyphen", "/api/ad%C2%ADmin", "", errInvisible},
	{"BOM", "/api/%EF%BB%BFadmin", "", errInvisible},
	{"word joiner", "/api/admin%E2%81%A0", "", errInvisible},
	{"mongolian vowel separator", "/api/admin%E1%A0%8E", "", errInvisible},
	{"bidi override", "/api/%E2%80%AEnimda", "", errInvisible},
	{"combining grapheme joiner", "/api/admin%CD%8F", "", errInvisible},
	{"variation selector", "/api/admin%EF%B8%8F", "", errInvisible},
	{"hangul filler", "/api/admin%E3%85%A4", "", errInvisible},
	{"encoded question mark", "/api/admin%3F/users", "", errEncodedDelim},
	{"encoded hash", "/api/admin%23/users", "", errEncodedDelim},
	{"encoded hash lower", "/api/x%23", "", errEncodedDelim},
	{"fullwidth a", "/api/%EF%BD%81dmin/users", "", errFoldsASCII},
	{"fullwidth A raw", "/api/Ａdmin", "", errFoldsASCII},
	{"dotless i", "/api/adm%C4%B1n", "", errFoldsASCII},
	{"dotted capital I", "/api/adm%C4%B0n", "", errFoldsASCII},
	{"kelvin sign", "/api/%E2%84%AAeys", "", errFoldsASCII},
	{"long s", "/api/%C5%BFecrets", "", errFoldsASCII},
	{"sharp s", "/api/stra%C3%9Fe", "", errFoldsASCII},
	{"ligature fi", "/api/%EF%AC%81le", "", errFoldsASCII},
	{"feminine ordinal", "/api/%C2%AAdmin", "", errFoldsASCII},
	{"mathematical bold a", "/api/%F0%9D%90%9Admin", "", errFoldsASCII},
	{"superscript two", "/api/x%C2%B2", "", errFoldsASCII},
	{"circled letter", "/api/%E2%93%90", "", errFoldsASCII},
	{"dz digraph", "/api/%C7%85", "", errFoldsASCII},
	{"dot file", "/.well-known/jwks.json", "/.well-known/jwks.json", nil},
	{"sub-delims", "/a/b:c@d!$&'()*+,=", "/a/b:c@d!$&'()*+,=", nil},
	{"tilde and dash", "/~user/a-b_c", "/~user/a-b_c", nil},

	{"empty", "", "", errNotAbsolute},
	{"relative", "api/recipes", "", errNotAbsolute},
	{"asterisk form", "*", "", errNotAbsolute},
	{"dot-dot", "/api/../admin", "", errDotSegment},
	{"dot", "/api/./admin", "", errDotSegment},
	{"trailing dot-dot", "/api/..", "", errDotSegment},
	{"trailing dot", "/api/.", "", errDotSegment},
	{"dot-dot slash end", "/api/../", "", errDotSegment},
	{"encoded dot-dot", "/api/%2e%2e/admin", "", errDotSegment},
	{"encoded dot-dot mixed case", "/api/%2e%2E/admin", "", errDotSegment},
	{"half-encoded dot-dot", "/api/.%2E/admin", "", errDotSegment},
	{"encoded dot", "/api/%2e/admin", "", errDotSegment},
	{"leading dot-dot", "/../etc/passwd", "", errDotSegment},
	{"double slash", "/api//admin", "", errEmptySegment},
	{"leading double slash", "//evil.example/a", "", errEmptySegment},
	{"trailing double slash", "/api//", "", errEmptySegment},
	{"encoded slash", "/api/a%2Fb", "", errEncodedSlash},
	{"encoded slash lower", "/api/a%2fb", "", errEncodedSlash},
	{"encoded slash dot-dot", "/api/..%2Fadmin", "", errEncodedSlash},
	{"backslash", "/api\\admin", "", errBackslash},
	{"encoded backslash", "/api/..%5Cadmin", "", errBackslash},
	{"encoded backslash lower", "/api/a%5cb", "", errBackslash},
	{"nul", "/api/a\x00b", "", errControl},
	{"encoded nul", "/api/a%00.json", "", errControl},
	{"encoded newline", "/api/a%0Ab", "", errControl},
	{"raw tab", "/api/a\tb", "", errControl},
	{"encoded del", "/api/%7F", "", errControl},
	{"encoded c1 control", "/api/%C2%85", "", errControl},
	{"semicolon", "/api/admin;jsessionid=x", "", errParameter},
	{"semicolon dot-dot", "/api/..;/admin", "", errParameter},
	{"encoded semicolon", "/api/admin%3bx", "", errParameter},
	{"truncated escape", "/api/%2", "", errBadEscape},
	{"escape at end", "/api/%", "", errBadEscape},
	{"bad hex", "/api/%zz", "", errBadEscape},
	{"bad hex second", "/api/%2g", "", errBadEscape},
	{"double encoded dot-dot", "/api/%252e%252e/admin", "", errDoubleEscape},
	{"double encoded slash", "/api/a%252Fb", "", errDoubleEscape},
	{"double encoded iis %u dot-dot", "/api/%25u002e%25u002e/admin", "", errDoubleEscape},
	{"double encoded iis %U slash", "/api/..%25U002Fadmin", "", errDoubleEscape},
	{"overlong dot", "/api/%C0%AE%C0%AE/admin", "", errBadUTF8},
	{"overlong slash", "/api/%C0%AFadmin", "", errBadUTF8},
	{"lone continuation byte", "/api/%80", "", errBadUTF8},
	{"truncated utf-8", "/api/%E2%82", "", errBadUTF8},
	{"surrogate", "/api/%ED%A0%80", "", errBadUTF8},
	{"raw invalid utf-8", "/api/\xff", "", errBadUTF8},
	{"fullwidth dots", "/api/%EF%BC%8E%EF%BC%8E/admin", "", errConfusable},
	{"fullwidth slash", "/api/a%EF%BC%8Fb", "", errConfusable},
	{"fullwidth backslash", "/api/a＼b", "", errConfusable},
	{"two dot leader", "/api/%E2%80%A5/admin", "", errConfusable},
	{"raw question mark", "/api?x", "", errRawDelimiter},
	{"raw hash", "/api#x", "", errRawDelimiter},
	{"raw space", "/api/a b", "", errRawDelimiter},
}

func TestCheckPath(t *testing.T) {
	for _, tt := range pathCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckPath(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("CheckPath(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("CheckPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCheckPathConfusables refuses every rune of the confusables table.
func TestCheckPathConfusables(t *testing.T) {
	for _, r := range confusables {
		if _, err := CheckPath("/a/" + string(r)); !errors.Is(err, errConfusable) {
			t.Errorf("%U: error = %v, want %v", r, err, errConfusable)
		}
	}
}

// TestCheckPathFoldTable refuses every rune of the fold table, raw and
// encoded, anywhere in a segment.
func TestCheckPathFoldTable(t *testing.T) {
	n := 0
	check := func(r rune) {
		n++
		for _, p := range []string{"/a/x" + string(r) + "y", "/a/" + url.PathEscape("x"+string(r)+"y")} {
			if _, err := CheckPath(p); err == nil {
				t.Errorf("%U in %q is accepted", r, p)
			}
		}
	}
	for _, rg := range foldsIntoASCII.R16 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r++ {
			check(r)
		}
	}
	for _, rg := range foldsIntoASCII.R32 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r++ {
			check(r)
		}
	}
	if n < 1000 {
		t.Fatalf("only %d runes in the fold table", n)
	}
}

// TestCheckPathAllocs: a path without escapes is checked in place.
func TestCheckPathAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = CheckPath("/api/teams/42/members/") }); n != 0 {
		t.Errorf("CheckPath allocates %v times, want 0", n)
	}
}

// FuzzCheckPath: an accepted path is its own path.Clean (a single
// trailing slash aside) and holds nothing ambiguous.
func FuzzCheckPath(f *testing.F) {
	for _, tt := range pathCases {
		f.Add(tt.in)
	}
	for _, s := range []string{"/api/Admin/users", "/api/admin./x", "/api/admin%20/x", "/api/%EF%BD%81dmin", "/api/adm%C4%B1n", "/api/%E2%84%AA", "/api/%C5%BF", "/a/b%C2%A0", "/api/café"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		clean, err := CheckPath(in)
		if err != nil {
			if clean != "" {
				t.Fatalf("refused %q but returned %q", in, clean)
			}
			return
		}
		want := path.Clean(clean)
		if clean != want && clean != want+"/" {
			t.Fatalf("CheckPath(%q) = %q, path.Clean gives %q", in, clean, want)
		}
		for seg := range strings.SplitSeq(clean, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("CheckPath(%q) = %q has a dot segment", in, clean)
			}
		}
		if strings.ContainsAny(clean, "\\\x00;") {
			t.Fatalf("CheckPath(%q) = %q holds \\, NUL or ;", in, clean)
		}
		if strings.Contains(clean, "//") {
			t.Fatalf("CheckPath(%q) = %q holds //", in, clean)
		}
		for seg := range strings.SplitSeq(clean, "/") {
			if last, _ := utf8.DecodeLastRuneInString(seg); seg != "" && (last == '.' || unicode.IsSpace(last) || unicode.Is(unicode.Z, last)) {
				t.Fatalf("CheckPath(%q) = %q has a segment ending in a dot or a space", in, clean)
			}
		}
		for _, r := range clean {
			if r >= utf8.RuneSelf && (unicode.Is(foldsIntoASCII, r) || foldsToASCII(r)) {
				t.Fatalf("CheckPath(%q) = %q holds %U, which folds into ASCII", in, clean, r)
			}
		}
		// Checking is idempotent once the % are escaped again.
		again, err := CheckPath(strings.ReplaceAll(clean, "%", "%25"))
		if err == nil && again != clean {
			t.Fatalf("re-checking %q gives %q", clean, again)
		}
	})
}
