package requestid

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func prepared(r *http.Request) *http.Request {
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	return r.WithContext(ctx)
}

func TestEnsure(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		keep bool
	}{
		{"none", nil, false},
		{"uuid", []string{"3f2b8c1e-2d4a-4b9e-9f0a-1c2d3e4f5a6b"}, true},
		{"trace-like", []string{"abc.DEF_123:xyz-9"}, true},
		{"empty", []string{""}, false},
		{"too long", []string{strings.Repeat("a", MaxLen+1)}, false},
		{"max length", []string{strings.Repeat("a", MaxLen)}, true},
		{"newline injection", []string{"abc\r\nSet-Cookie: x=y"}, false},
		{"json breaker", []string{`abc","admin":true`}, false},
		{"space", []string{"a b"}, false},
		{"unicode", []string{"ａｂｃ"}, false},
		{"two headers", []string{"one", "two"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := prepared(httptest.NewRequest("GET", "/", nil))
			for _, v := range tc.in {
				r.Header.Add(Header, v)
			}
			w := httptest.NewRecorder()
			id := Ensure(w, r)
			if tc.keep != (len(tc.in) > 0 && id == tc.in[0]) {
				t.Fatalf("Ensure = %q for %q (keep %v)", id, tc.in, tc.keep)
			}
			if !Valid(id) {
				t.Fatalf("Ensure produced an invalid id %q", id)
			}
			if r.Header.Get(Header) != id || w.Header().Get(Header) != id || len(r.Header.Values(Header)) != 1 {
				t.Fatal("the id is not on the request (upstream) and the response")
			}
			if again := Ensure(w, r); again != id || From(r) != id {
				t.Fatal("a second Ensure changed the id")
			}
			repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if v, _ := repl.GetString("http.request_id"); v != id {
				t.Fatalf("placeholder = %q", v)
			}
		})
	}
	if New() == New() {
		t.Fatal("two generated ids are equal")
	}
}
