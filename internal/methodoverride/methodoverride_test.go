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
			for k, vs := range tc.hdr {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			if got := Strip(r); got != tc.ok {
				t.Fatalf("Strip = %v, want %v", got, tc.ok)
			}
			for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
				if r.Header.Get(h) != "" || len(r.Header.Values(h)) != 0 {
					t.Fatalf("%s survived", h)
				}
			}
		})
	}
}

func BenchmarkStripNone(b *testing.B) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		Strip(r)
	}
}
