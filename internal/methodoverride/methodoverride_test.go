package methodoverride

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestStrip(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		hdr          map[string][]string
		ok           bool
	}{
		{"none", "POST", nil, true},
		{"other method", "POST", map[string][]string{"X-HTTP-Method-Override": {"DELETE"}}, false},
		{"x-http-method", "GET", map[string][]string{"X-HTTP-Method": {"PUT"}}, false},
		{"x-method-override", "GET", map[string][]string{"x-method-override": {"PATCH"}}, false},
		{"same method", "POST", map[string][]string{"X-HTTP-Method-Override": {"post"}}, true},
		{"same and other", "POST", map[string][]string{"X-HTTP-Method-Override": {"POST", "DELETE"}}, false},
		{"empty value", "GET", map[string][]string{"X-HTTP-Method": {""}}, false},
		{"padded", "GET", map[string][]string{"X-HTTP-Method": {" GET "}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/", nil)
			r.Header.Set("X-Original-URL", "/api/admin/users")
			r.Header.Set("x-rewrite-url", "/api/admin/users")
			for k, vs := range tc.hdr {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := Strip(r); got != tc.ok {
				t.Fatalf("Strip = %v, want %v", got, tc.ok)
			}
			for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-URL", "X-Rewrite-URL"} {
				if r.Header.Get(h) != "" || len(r.Header.Values(h)) != 0 {
					t.Fatalf("%s survived", h)
				}
			}
		})
	}
}

func TestStripQueryParameter(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		ok             bool
	}{
		{"POST", "/api/items/1?_method=DELETE", false},
		{"POST", "/api/items/1?a=1&_method=delete", false},
		{"POST", "/api/items/1?%5Fmethod=PUT", false},
		{"POST", "/api/items/1?_method=POST", true},
		{"GET", "/api/items?_method_x=DELETE", true},
		{"GET", "/api/items?q=_method", true},
		{"GET", "/api/items?x=1", true},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if got := Strip(r); got != tc.ok {
			t.Errorf("%s %s: Strip = %v, want %v", tc.method, tc.target, got, tc.ok)
		}
	}
}

func BenchmarkStripNone(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		Strip(r)
	}
}
