package oidcauth

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// replay turns a response's Set-Cookie headers into the next request's
// Cookie header, as a browser would.
func replay(t *testing.T, rec *httptest.ResponseRecorder, req *http.Request) {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge >= 0 {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
}

func TestSessionCookieChunks(t *testing.T) {
	for _, size := range []int{10, chunkSize, chunkSize + 1, 3*chunkSize + 7} {
		value := strings.Repeat("x", size)
		for _, tlsOn := range []bool{false, true} {
			r := httptest.NewRequest("GET", "/", nil)
			if tlsOn {
				r.TLS = &tls.ConnectionState{}
			}
			rec := httptest.NewRecorder()
			writeSessionCookie(rec, r, value, time.Hour)
			for _, c := range rec.Result().Cookies() {
				if !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || c.Secure != tlsOn {
					t.Fatalf("cookie %s has wrong attributes: %+v", c.Name, c)
				}
				if tlsOn != strings.HasPrefix(c.Name, "__Host-") {
					t.Fatalf("cookie %s: __Host- prefix iff TLS", c.Name)
				}
				if len(c.String()) > 4096 {
					t.Fatalf("cookie %s is %d bytes", c.Name, len(c.String()))
				}
			}
			next := httptest.NewRequest("GET", "/", nil)
			next.TLS = r.TLS
			replay(t, rec, next)
			got, ok := readSessionCookie(next)
			if !ok || got != value {
				t.Fatalf("size %d tls %v: read back %d bytes, ok %v", size, tlsOn, len(got), ok)
			}
		}
	}
}

func TestSessionCookieShrinkExpiresChunks(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	rec := httptest.NewRecorder()
	writeSessionCookie(rec, r, strings.Repeat("y", 3*chunkSize), time.Hour)
	next := httptest.NewRequest("GET", "/", nil)
	replay(t, rec, next)
	rec2 := httptest.NewRecorder()
	writeSessionCookie(rec2, next, "short", time.Hour)
	expired := map[string]bool{}
	for _, c := range rec2.Result().Cookies() {
		if c.MaxAge < 0 {
			expired[c.Name] = true
		}
	}
	if !expired["bff_session.1"] || !expired["bff_session.2"] {
		t.Fatalf("stale chunks not expired: %v", expired)
	}
}

func TestStripCookies(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "theme=dark; bff_session=abc; bff_session.1=def")
	r.Header.Add("Cookie", "__Host-bff_session=x; bff_login_AAAA=y; lang=en")
	stripCookies(r)
	got := r.Header.Get("Cookie")
	if got != "theme=dark; lang=en" {
		t.Fatalf("Cookie after strip = %q", got)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "bff_session=abc")
	stripCookies(r)
	if _, ok := r.Header["Cookie"]; ok {
		t.Fatal("empty Cookie header left behind")
	}
}

func TestIsNavigation(t *testing.T) {
	for _, tc := range []struct {
		method string
		hdr    map[string]string
		want   bool
	}{
		{"GET", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"GET", map[string]string{"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, false},
		{"GET", map[string]string{"Accept": "text/html,application/xhtml+xml"}, true},
		{"HEAD", map[string]string{"Accept": "text/html"}, true},
		{"GET", map[string]string{"Accept": "application/json"}, false},
		{"POST", map[string]string{"Sec-Fetch-Mode": "navigate"}, false},
		{"GET", nil, false},
	} {
		r := httptest.NewRequest(tc.method, "/x", nil)
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		if got := isNavigation(r); got != tc.want {
			t.Errorf("%s %v: isNavigation = %v, want %v", tc.method, tc.hdr, got, tc.want)
		}
	}
}

func TestReadSessionCookieParsing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    string
		present bool
	}{
		{"none", nil, "", false},
		{"other cookies", []string{"a=1; b=2"}, "", false},
		{"single", []string{"a=1; bff_session=abc; b=2"}, "abc", true},
		{"empty", []string{"bff_session="}, "", true},
		{"quoted", []string{`bff_session="abc"`}, "abc", true},
		{"chunks in order", []string{"bff_session=ab; bff_session.1=cd; bff_session.2=ef"}, "abcdef", true},
		{"chunks out of order", []string{"bff_session.2=ef; bff_session=ab", "bff_session.1=cd"}, "abcdef", true},
		{"gap stops", []string{"bff_session=ab; bff_session.2=ef"}, "ab", true},
		{"first wins", []string{"bff_session=first; bff_session=second"}, "first", true},
		{"chunk without base", []string{"bff_session.1=cd"}, "", false},
		{"look-alike names", []string{"bff_sessionX=1; bff_session.x=2; bff_session.10=3; bff_session.8=4; xbff_session=5"}, "", false},
		{"spaces", []string{"  bff_session=abc  ;c=d"}, "abc", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Cookie", h)
			}
			got, present := readSessionCookie(r)
			if got != tc.want || present != tc.present {
				t.Fatalf("readSessionCookie = %q, %v; want %q, %v", got, present, tc.want, tc.present)
			}
		})
	}
}

func TestDeflateRoundTrip(t *testing.T) {
	small := []byte(`{"i":"x"}`)
	if got := deflate(small); string(got) != string(small) {
		t.Fatal("a payload that does not shrink must stay as it is")
	}
	big := []byte(`{"c":{"name":"` + strings.Repeat("Ada Lovelace ", 100) + `"}}`)
	z := deflate(big)
	if z[0] != markDeflate || len(z) >= len(big) {
		t.Fatalf("not compressed: %d bytes from %d", len(z), len(big))
	}
	back, err := inflate(z)
	if err != nil || string(back) != string(big) {
		t.Fatalf("round trip: %v", err)
	}
	bomb := deflate(make([]byte, 10*maxSessionJSON))
	if _, err := inflate(bomb); err == nil {
		t.Fatal("an oversized payload inflated")
	}
	if _, err := inflate([]byte("zgarbage")); err == nil {
		t.Fatal("garbage inflated")
	}
}

// parseStrict is the standard library's strict Cookie header parser over
// every line, or false when any line is not valid RFC 6265 syntax.
func parseStrict(lines []string) ([]*http.Cookie, bool) {
	var all []*http.Cookie
	for _, l := range lines {
		cs, err := http.ParseCookie(l)
		if err != nil {
			return nil, false
		}
		all = append(all, cs...)
	}
	return all, true
}

// FuzzReadSessionCookie feeds hostile Cookie headers to the hand-written
// session cookie reader. It must never panic or return more than it was
// sent, and whenever the header is valid syntax it must agree with the
// standard library's parser: the first cookie of each chunk name wins and
// the chunks join in order up to the first missing one.
func FuzzReadSessionCookie(f *testing.F) {
	f.Add("bff_session=abc", "", false)
	f.Add("theme=dark; bff_session=abc; bff_session.1=def", "bff_session.2=ghi", false)
	f.Add(`__Host-bff_session="q"; __Host-bff_session.1=r`, "", true)
	f.Add("bff_session.1=x; bff_session=; bff_session=y", "", false)
	f.Add("bff_session.9=x;bff_session.10=y; bff_sessionx=z; bff_session", "bff_session=a=b", false)
	f.Add(";;  ; bff_session = spaced ;", "\x00bff_session=\xff", false)
	f.Fuzz(func(t *testing.T, line1, line2 string, tlsOn bool) {
		r := httptest.NewRequest("GET", "/", nil)
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		r.Header["Cookie"] = lines
		got, present := readSessionCookie(r)
		if len(got) > len(line1)+len(line2) {
			t.Fatalf("read %d bytes from %d", len(got), len(line1)+len(line2))
		}
		if got != "" && !present {
			t.Fatal("a value without a cookie")
		}
		cookies, ok := parseStrict(lines)
		if !ok {
			return
		}
		base := sessionCookieName(r)
		var chunks [maxChunks]*http.Cookie
		for _, c := range cookies {
			for i := range maxChunks {
				if c.Name == chunkName(base, i) && chunks[i] == nil {
					chunks[i] = c
				}
			}
		}
		want := ""
		if chunks[0] != nil {
			want = chunks[0].Value
			for i := 1; i < maxChunks && chunks[i] != nil && chunks[0].Value != ""; i++ {
				want += chunks[i].Value
			}
		}
		if present != (chunks[0] != nil) || got != want {
			t.Fatalf("%q: read (%q, %v), the standard library sees %q", lines, got, present, want)
		}
	})
}

// FuzzStripCookies checks that no upstream ever sees one of our cookies,
// however the header is spelled, and that the application's cookies pass
// unchanged and in order whenever the header is valid syntax.
func FuzzStripCookies(f *testing.F) {
	f.Add("theme=dark; bff_session=abc; bff_session.1=def", "__Host-bff_session=x; bff_login_AAAA=y; lang=en")
	f.Add("bff_session=abc", "")
	f.Add(" ;bff_session ; bff_session=x=y;lang=en;", "\tbff_login_=1\r")
	f.Add("a=1; __Host-bff_login_x=2;b=\"3\"", "bff_sessionfoo=1")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		r := httptest.NewRequest("GET", "/", nil)
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		r.Header["Cookie"] = slices.Clone(lines)
		before, strict := parseStrict(lines)
		stripCookies(r)
		for _, c := range r.Cookies() {
			if isOurCookie(c.Name) {
				t.Fatalf("%q: cookie %q survives in %q", lines, c.Name, r.Header["Cookie"])
			}
		}
		for _, tlsOn := range []bool{false, true} {
			r.TLS = nil
			if tlsOn {
				r.TLS = &tls.ConnectionState{}
			}
			if v, present := readSessionCookie(r); present {
				t.Fatalf("%q: the session (%q) survives in %q", lines, v, r.Header["Cookie"])
			}
		}
		if !strict {
			return
		}
		var want []string
		for _, c := range before {
			if !isOurCookie(c.Name) {
				want = append(want, c.String())
			}
		}
		after, ok := parseStrict(r.Header["Cookie"])
		if len(want) == 0 {
			if len(r.Header["Cookie"]) != 0 {
				t.Fatalf("%q: left %q", lines, r.Header["Cookie"])
			}
			return
		}
		if !ok {
			t.Fatalf("%q: valid header became invalid %q", lines, r.Header["Cookie"])
		}
		var got []string
		for _, c := range after {
			got = append(got, c.String())
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: kept %q, want %q", lines, got, want)
		}
	})
}
