package oidcauth

import (
	"testing"
	"time"
)

func nowFunc() func() time.Time { return time.Now }

func TestValidReturnTo(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"/", true},
		{"/recipes", true},
		{"/recipes/42?tab=notes#top", true},
		{"/search?u=https://example.com", true},
		{"/a%20b", true},
		{"", false},
		{"recipes", false},
		{"//evil.example", false},
		{"///evil.example", false},
		{"/\\evil.example", false},
		{"\\\\evil.example", false},
		{"https://evil.example", false},
		{"http:/evil.example", false},
		{"javascript:alert(1)", false},
		{"/%2F%2Fevil.example", false},
		{"/%2f/evil.example", false},
		{"/%5Cevil.example", false},
		{"/%5cevil.example", false},
		{"/\t/evil.example", false},
		{"/\n/evil.example", false},
		{"/%09/evil.example", false},
		{"/%0d%0aSet-Cookie:x=y", false},
		{"/a\x00b", false},
		{"/%zz", false},
		{" /x", false},
		{"/" + string(make([]byte, 3000)), false},
		{"/a\\b", false},
	} {
		if got := validReturnTo(tc.in); got != tc.ok {
			t.Errorf("validReturnTo(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

func FuzzReturnTo(f *testing.F) {
	for _, s := range []string{"/", "//evil", "/\\evil", "https://evil", "/%2F%2Fevil", "/\t/x", "/ok?x=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := returnToOr(v)
		if got == "/" {
			return
		}
		if got != v {
			t.Fatalf("returnToOr changed %q to %q", v, got)
		}
		if len(got) < 1 || got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) {
			t.Fatalf("accepted a non-local return path %q", got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x20 || got[i] == '\\' || got[i] == 0x7f {
				t.Fatalf("accepted control or backslash in %q", got)
			}
		}
	})
}
