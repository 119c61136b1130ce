package scopeauthz

import (
	"errors"
	"path"
	"strings"
	"testing"
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
	{"encoded question mark", "/a%3Fb", "/a?b", nil},
	{"three dots", "/a/.../b", "/a/.../b", nil},
	{"dots inside segment", "/a/..b/c..", "/a/..b/c..", nil},
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
		// Checking is idempotent once the % are escaped again.
		again, err := CheckPath(strings.ReplaceAll(clean, "%", "%25"))
		if err == nil && again != clean {
			t.Fatalf("re-checking %q gives %q", clean, again)
		}
	})
}
