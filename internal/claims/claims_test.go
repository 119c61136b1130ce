package claims

import (
	"slices"
	"testing"
)

func TestLookup(t *testing.T) {
	c := map[string]any{
		"a.b": "top",
		"a":   map[string]any{"b": "nested", "c": map[string]any{"d": 1}},
		"s":   "x",
	}
	for _, tt := range []struct {
		name string
		want any
		ok   bool
	}{
		{"a.b", "top", true},
		{"a.c.d", 1, true},
		{"a.x", nil, false},
		{"s.t", nil, false},
		{"", nil, false},
		{".", nil, false},
	} {
		got, ok := Lookup(c, tt.name)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Lookup(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := Lookup(nil, "a"); ok {
		t.Error("nil claims hold a claim")
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want []string
	}{
		{" a\tb\n c ", []string{"a", "b", "c"}},
		{"a\u00a0b", []string{"a\u00a0b"}}, // only ASCII white space separates
		{"", nil},
		{[]any{"a", 1, "", "b", nil}, []string{"a", "b"}},
		{[]string{"x"}, []string{"x"}},
		{42, nil},
		{map[string]any{"a": "b"}, nil},
	} {
		if got := Strings(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Strings(%#v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
