package testop

import (
	"path"
	"slices"
	"testing"

	"github.com/bmatcuk/doublestar/v4"
)

func TestPortWildcard(t *testing.T) {
	_, globs := splitGlobs([]string{"http://127.0.0.1:*/auth/callback"})
	_, logout := splitGlobs([]string{"http://127.0.0.1:*/", "http://127.0.0.1:*"})
	tests := []struct {
		uri  string
		want bool
	}{
		{"http://127.0.0.1:8080/auth/callback", true},
		{"http://127.0.0.1:1/auth/callback", true},
		{"http://127.0.0.1:65535/auth/callback", true},
		{"http://127.0.0.1:123456/auth/callback", false},
		{"http://127.0.0.1:/auth/callback", false},
		{"http://127.0.0.1:1@evil.example/auth/callback", false},
		{"http://127.0.0.1:80.evil.example/auth/callback", false},
		{"http://127.0.0.1:8080/auth/callback/x", false},
		{"http://127.0.0.1:8080/x/auth/callback", false},
	}
	for _, tt := range tests {
		got := slices.ContainsFunc(globs, func(g string) bool { ok, _ := doublestar.Match(g, tt.uri); return ok })
		if got != tt.want {
			t.Errorf("redirect %s matched = %v, want %v (globs %v)", tt.uri, got, tt.want, globs)
		}
	}
	for uri, want := range map[string]bool{
		"http://127.0.0.1:8080/":             true,
		"http://127.0.0.1:8080":              true,
		"http://127.0.0.1:1@evil.example/":   false,
		"http://127.0.0.1:8080/logged-out":   false,
		"http://127.0.0.1:8080@evil.example": false,
	} {
		got := slices.ContainsFunc(logout, func(g string) bool { ok, _ := path.Match(g, uri); return ok })
		if got != want {
			t.Errorf("post-logout %s matched = %v, want %v", uri, got, want)
		}
	}
	if exact, globs := splitGlobs([]string{"http://127.0.0.1:8080/cb"}); len(globs) != 0 || len(exact) != 1 {
		t.Errorf("an exact URI became a glob: %v %v", exact, globs)
	}
}
