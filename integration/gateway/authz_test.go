package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// authzPolicy is SPEC §3's policy plus one rule of every other kind: a
// segment wildcard, an `a|b` alternative, and `anonymous` on a path
// oidc_auth makes public (with a scoped sub-tree of it first).
const authzPolicy = `scope_authz {
			claim scope
			allow GET                /api/public/premium/*        recipes:read
			allow GET                /api/public/*                anonymous
			allow GET                /api/recipes /api/recipes/*  recipes:read
			allow POST PUT DELETE    /api/recipes/*               recipes:write
			allow *                  /api/admin/*                 admin
			allow GET                /api/me                      authenticated
			allow GET                /api/teams/*/members         recipes:read
			allow GET                /api/reports/*               admin|recipes:write
			default deny
		}`

// startAuthzGW runs our caddy with the policy above in front of a
// recording upstream. /api/public/* is public for oidc_auth (anonymous
// requests reach scope_authz there) and gets no token; everything outside
// /api is a 404, so only scope_authz's route reaches the upstream.
func startAuthzGW(t *testing.T) *gw {
	t.Helper()
	key := writeSigningKey(t)
	return startSiteGW(t, func(addr, issuer, upstream string) string {
		return fmt.Sprintf(`http://%[1]s {
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid profile email offline_access recipes:read recipes:write admin
		public /api/public/*
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /api/* {
		%[5]s
		@private not path /api/public/*
		bff_token @private {
			mode mint
			audience test-api
			issuer http://%[1]s
			signing_key %[4]s
		}
		reverse_proxy %[3]s
	}
	handle /welcome {
		respond "welcome" 200
	}
	handle {
		respond "not found" 404
	}
}
`, addr, issuer, upstream, key, authzPolicy)
	})
}

// startSiteGW runs our caddy with the site site(addr, issuer, upstream)
// writes, for the test provider (client bff, its secret in
// OIDC_CLIENT_SECRET) and a recording upstream, session key A in
// SESSION_KEY.
func startSiteGW(t *testing.T, site func(addr, issuer, upstream string) string) *gw {
	t.Helper()
	bin := harness.MustBuildCaddy(t)
	op := startOP(t, 0)
	up := harness.NewUpstream(t)
	addr := harness.FreeAddr(t)
	g := &gw{t: t, op: op, up: up, addr: addr, base: "http://" + addr, bin: bin}
	g.cfg = harness.Caddyfile(site(addr, op.Issuer(), up.Addr()))
	g.env = []string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKeyA}
	g.caddy = harness.StartCaddy(t, bin, g.cfg, g.env...)
	return g
}

func (g *gw) reader() *http.Client { return g.login(testop.ReaderUsername, testop.ReaderPassword) }

// authzCase is one request by one user. rule is the audit label of the
// rule scope_authz decides by ("default" when none matches), or "" when
// scope_authz never runs because oidc_auth answers first (anonymous on a
// protected path: 401 with login_url, no `missing`).
type authzCase struct {
	who          string // anonymous | reader | admin
	method, path string
	want         int
	rule         string
	missing      string
}

func TestAuthzPolicy(t *testing.T) {
	g := startAuthzGW(t)
	clients := map[string]*http.Client{"anonymous": bare(), "reader": g.reader(), "admin": g.admin()}
	subs := map[string]string{"anonymous": "", "reader": testop.ReaderSubject, "admin": testop.AdminSubject}
	g.up.Reset()

	const (
		rPremium = "#1 GET /api/public/premium/*"
		rPublic  = "#2 GET /api/public/*"
		rList    = "#3 GET /api/recipes"
		rRecipe  = "#3 GET /api/recipes/*"
		rWrite   = "#4 POST PUT DELETE /api/recipes/*"
		rAdmin   = "#5 * /api/admin/*"
		rMe      = "#6 GET /api/me"
		rTeams   = "#7 GET /api/teams/*/members"
		rReports = "#8 GET /api/reports/*"
		def      = "default"
	)
	cases := []authzCase{
		// Exact and prefix patterns, recipes:read.
		{"anonymous", "GET", "/api/recipes", 401, "", ""},
		{"reader", "GET", "/api/recipes", 200, rList, ""},
		{"admin", "GET", "/api/recipes", 200, rList, ""},
		{"anonymous", "GET", "/api/recipes/42", 401, "", ""},
		{"reader", "GET", "/api/recipes/42", 200, rRecipe, ""},
		{"reader", "GET", "/api/recipes/", 200, rRecipe, ""},
		{"admin", "GET", "/api/recipes/42", 200, rRecipe, ""},
		// Several methods, recipes:write.
		{"anonymous", "POST", "/api/recipes/42", 401, "", ""},
		{"reader", "POST", "/api/recipes/42", 403, rWrite, "recipes:write"},
		{"reader", "PUT", "/api/recipes/42", 403, rWrite, "recipes:write"},
		{"reader", "DELETE", "/api/recipes/42", 403, rWrite, "recipes:write"},
		{"admin", "POST", "/api/recipes/42", 200, rWrite, ""},
		{"admin", "PUT", "/api/recipes/42", 200, rWrite, ""},
		{"admin", "DELETE", "/api/recipes/42", 200, rWrite, ""},
		// A prefix pattern does not match its parent; a method no rule lists
		// falls to the default, whoever asks.
		{"admin", "POST", "/api/recipes", 403, def, ""},
		{"admin", "PATCH", "/api/recipes/42", 403, def, ""},
		{"reader", "PATCH", "/api/recipes/42", 403, def, ""},
		// Every method, admin.
		{"anonymous", "GET", "/api/admin/users", 401, "", ""},
		{"reader", "GET", "/api/admin/users", 403, rAdmin, "admin"},
		{"reader", "DELETE", "/api/admin/users/7", 403, rAdmin, "admin"},
		{"admin", "GET", "/api/admin/users", 200, rAdmin, ""},
		{"admin", "DELETE", "/api/admin/users/7", 200, rAdmin, ""},
		{"admin", "PATCH", "/api/admin/users/7", 200, rAdmin, ""},
		{"admin", "GET", "/api/admin", 403, def, ""},
		// authenticated, exact.
		{"anonymous", "GET", "/api/me", 401, "", ""},
		{"reader", "GET", "/api/me", 200, rMe, ""},
		{"admin", "GET", "/api/me", 200, rMe, ""},
		{"admin", "GET", "/api/me/", 403, def, ""},
		{"reader", "POST", "/api/me", 403, def, ""},
		// Segment wildcard: exactly one non-empty segment.
		{"anonymous", "GET", "/api/teams/7/members", 401, "", ""},
		{"reader", "GET", "/api/teams/7/members", 200, rTeams, ""},
		{"admin", "GET", "/api/teams/cooks/members", 200, rTeams, ""},
		{"reader", "GET", "/api/teams/7/members/9", 403, def, ""},
		{"reader", "GET", "/api/teams/7/owners", 403, def, ""},
		{"reader", "GET", "/api/teams/7/8/members", 403, def, ""},
		// a|b: either scope.
		{"anonymous", "GET", "/api/reports/q3", 401, "", ""},
		{"reader", "GET", "/api/reports/q3", 403, rReports, "admin|recipes:write"},
		{"admin", "GET", "/api/reports/q3", 200, rReports, ""},
		// anonymous on a public path, and a scoped sub-tree of it that
		// scope_authz (not oidc_auth) refuses anonymous users with 401.
		{"anonymous", "GET", "/api/public/news", 200, rPublic, ""},
		{"reader", "GET", "/api/public/news", 200, rPublic, ""},
		{"admin", "GET", "/api/public/news", 200, rPublic, ""},
		{"anonymous", "GET", "/api/public/premium/guide", 401, rPremium, "recipes:read"},
		{"reader", "GET", "/api/public/premium/guide", 200, rPremium, ""},
		{"admin", "GET", "/api/public/premium/guide", 200, rPremium, ""},
		{"anonymous", "POST", "/api/public/news", 401, def, "authenticated"},
		{"reader", "POST", "/api/public/news", 403, def, ""},
		// default deny.
		{"anonymous", "GET", "/api/unknown", 401, "", ""},
		{"reader", "GET", "/api/unknown", 403, def, ""},
		{"admin", "GET", "/api/unknown", 403, def, ""},
		// Paths are matched ignoring case, as Caddy's handle matcher does.
		{"admin", "GET", "/api/Recipes/42", 200, rRecipe, ""},
		{"reader", "GET", "/API/recipes", 200, rList, ""},
		{"reader", "GET", "/api/ADMIN/users", 403, rAdmin, "admin"},
	}

	rid := func(i int) string { return fmt.Sprintf("authz-case-%03d", i) }
	for i, tc := range cases {
		name := fmt.Sprintf("%s %s %s", tc.who, tc.method, tc.path)
		r := do(t, clients[tc.who], tc.method, g.base+tc.path, map[string]string{"X-Request-ID": rid(i), "Accept": "application/json"})
		if r.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d: %s", name, r.StatusCode, tc.want, r.body)
			continue
		}
		if r.Header.Get("X-Request-ID") != rid(i) {
			t.Errorf("%s: X-Request-ID %q, want %q", name, r.Header.Get("X-Request-ID"), rid(i))
		}
		if tc.want == 200 {
			continue
		}
		p := r.problem(t)
		if p["request_id"] != rid(i) {
			t.Errorf("%s: problem request_id %v", name, p["request_id"])
		}
		missing, _ := p["missing"].(string)
		if missing != tc.missing {
			t.Errorf("%s: missing %q, want %q: %s", name, missing, tc.missing, r.body)
		}
		loginURL, _ := p["login_url"].(string)
		if tc.want == 401 && !strings.HasPrefix(loginURL, "/auth/login") {
			t.Errorf("%s: 401 without login_url: %s", name, r.body)
		}
		if tc.want == 403 && loginURL != "" {
			t.Errorf("%s: 403 with login_url: %s", name, r.body)
		}
	}

	// The upstream saw exactly the allowed requests, in order, each
	// with a token unless on the public path, and nothing else.
	var want []string
	for i, tc := range cases {
		if tc.want == 200 {
			want = append(want, tc.method+" "+tc.path+" "+rid(i))
		}
	}
	var got []string
	for _, r := range g.up.Requests() {
		got = append(got, r.Method+" "+r.Path+" "+r.Header.Get("X-Request-ID"))
		// bff_token runs off the public tree only (@private).
		if wantToken := !strings.HasPrefix(r.Path, "/api/public/"); wantToken != (r.BearerToken() != "") {
			t.Errorf("%s %s: bearer token %t, want %t", r.Method, r.Path, !wantToken, wantToken)
		}
		if under, how := underAdmin(r.RequestURI); under && r.Header.Get("X-Request-ID") != "" {
			for i, tc := range cases {
				if rid(i) == r.Header.Get("X-Request-ID") && tc.who != "admin" {
					t.Errorf("%s's request %s reached the upstream as an /api/admin path (%s)", tc.who, r.RequestURI, how)
				}
			}
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("upstream saw:\n\t%s\nwant exactly the allowed requests:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	t.Logf("%d requests, %d allowed and forwarded, %d refused, none of them forwarded", len(cases), len(want), len(cases)-len(want))

	// Audit: one "authz" entry per decision, with request id, subject,
	// method, path, rule and outcome; none where scope_authz did not run.
	audit := auditEntries(t, g, rid(len(cases)-1))
	for i, tc := range cases {
		name := fmt.Sprintf("%s %s %s", tc.who, tc.method, tc.path)
		es := audit[rid(i)]
		if tc.rule == "" {
			if len(es) != 0 {
				t.Errorf("%s: oidc_auth answered, yet scope_authz logged %v", name, es)
			}
			continue
		}
		if len(es) != 1 {
			t.Errorf("%s: %d audit entries, want 1: %v", name, len(es), es)
			continue
		}
		e := es[0]
		outcome := "deny"
		if tc.want == 200 {
			outcome = "allow"
		}
		wantMissing := tc.missing
		if tc.want == 401 && tc.rule == def {
			wantMissing = "authenticated"
		}
		for k, v := range map[string]string{
			"sub": subs[tc.who], "method": tc.method, "path": tc.path, "rule": tc.rule, "outcome": outcome, "missing": wantMissing,
		} {
			if got, _ := e[k].(string); got != v {
				t.Errorf("%s: audit %s = %q, want %q (%v)", name, k, got, v, e)
			}
		}
	}
}

// auditEntries waits for the audit entry of lastID, then returns the
// scope_authz audit entries by request id, checking their shape.
func auditEntries(t *testing.T, g *gw, lastID string) map[string][]map[string]any {
	t.Helper()
	g.caddy.WaitLog(`"request_id":"`+lastID+`"`, 5*time.Second)
	out := map[string][]map[string]any{}
	for _, e := range g.caddy.LogEntries() {
		if e["logger"] != "http.handlers.scope_authz.audit" {
			continue
		}
		if e["msg"] != "authz" || e["level"] != "info" {
			t.Errorf("audit entry %v: want level info, message authz", e)
		}
		for _, k := range []string{"request_id", "sub", "method", "path", "rule", "outcome"} {
			if _, ok := e[k].(string); !ok {
				t.Errorf("audit entry lacks %s: %v", k, e)
			}
		}
		id, _ := e["request_id"].(string)
		out[id] = append(out[id], e)
	}
	return out
}

// underAdmin reports whether an upstream that reads request targets
// leniently could take target for a path under /api/admin: it decodes
// repeatedly (%XX, IIS %uXXXX, overlong UTF-8), folds Unicode
// compatibility forms (fullwidth dots and slashes), reads \ as /, cuts at
// NUL, drops ;parameters and trailing dots and spaces of segments,
// ignores case, and cleans dot segments. how names the reading.
func underAdmin(target string) (bool, string) {
	p, _, _ := strings.Cut(target, "?")
	if i := strings.Index(p, "://"); i >= 0 { // absolute-form
		rest := p[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			p = rest[j:]
		}
	}
	for range 4 {
		p = lenientUnescape(p)
	}
	p = norm.NFKC.String(p)
	p = strings.ReplaceAll(p, `\`, "/")
	if i := strings.IndexByte(p, 0); i >= 0 {
		p = p[:i]
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		if s != "." && s != ".." {
			s = strings.TrimRight(s, ". ")
		}
		segs[i] = strings.TrimSpace(s)
	}
	clean := strings.ToLower(path.Clean("/" + strings.Join(segs, "/")))
	return clean == "/api/admin" || strings.HasPrefix(clean, "/api/admin/"), clean
}

func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '%' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]):
			b.WriteByte(hexVal(s[i+1])<<4 | hexVal(s[i+2]))
			i += 2
		case s[i] == '%' && i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') &&
			isHexDigit(s[i+2]) && isHexDigit(s[i+3]) && isHexDigit(s[i+4]) && isHexDigit(s[i+5]):
			r := rune(hexVal(s[i+2]))<<12 | rune(hexVal(s[i+3]))<<8 | rune(hexVal(s[i+4]))<<4 | rune(hexVal(s[i+5]))
			b.WriteRune(r)
			i += 5
		default:
			b.WriteByte(s[i])
		}
	}
	// Overlong UTF-8 forms of '.', '/' and '\' that lax decoders accept.
	return strings.NewReplacer(
		"\xc0\xae", ".", "\xc0\xaf", "/", "\xc1\x9c", `\`,
		"\xe0\x80\xae", ".", "\xe0\x80\xaf", "/", "\xf0\x80\x80\xae", ".", "\xf0\x80\x80\xaf", "/",
	).Replace(b.String())
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// rawResult is the gateway's answer to a hand-written request.
type rawResult struct {
	status int
	ctype  string
	detail string
	body   string
}

// rawRequest writes "METHOD target HTTP/1.1" with the given cookie on a
// fresh connection, exactly as given: Go's client would normalise target.
func rawRequest(t *testing.T, addr, method, target, cookie, reqID string) rawResult {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\nX-Request-ID: %s\r\nConnection: close\r\n", method, target, addr, reqID)
	if cookie != "" {
		fmt.Fprintf(&req, "Cookie: %s\r\n", cookie)
	}
	req.WriteString("\r\n")
	if _, err := conn.Write([]byte(req.String())); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %q: reading the response: %v", method, target, err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
	res := rawResult{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: body.String()}
	if _, d, ok := strings.Cut(res.body, `"detail":"`); ok {
		res.detail, _, _ = strings.Cut(d, `"`)
	}
	return res
}

// pathVector is a request target aimed at /api/admin with a Reader's (or
// no) session. want is the status expected for the Reader: 400 when the
// path is ambiguous (refused before any rule, by scope_authz or by Go's
// HTTP server), 403 when it is unambiguous but not what the Reader may
// reach, 404 when Caddy's `handle /api/*` does not take it at all.
type pathVector struct {
	name, method, target string
	want                 int
}

func TestPathConfusion(t *testing.T) {
	g := startAuthzGW(t)
	readerCookie := g.cookieHeader(g.reader())
	g.up.Reset()
	host := "http://" + g.addr

	vectors := []pathVector{
		// Dot segments, plain and encoded in any case.
		{"plain dot-dot", "GET", "/api/recipes/../admin/x", 400},
		{"encoded dot-dot", "GET", "/api/recipes/%2e%2e/admin/x", 400},
		{"mixed-case encoded dot-dot", "GET", "/api/recipes/%2E%2e/admin/x", 400},
		{"half-encoded dot-dot", "GET", "/api/recipes/.%2e/admin/x", 400},
		{"half-encoded dot-dot 2", "GET", "/api/recipes/%2e./admin/x", 400},
		{"encoded dot-dot, trailing slash", "GET", "/api/recipes/%2E%2e/", 400},
		{"trailing dot-dot", "GET", "/api/recipes/admin/x/..", 400},
		{"single dot", "GET", "/api/./admin/x", 400},
		{"encoded single dot", "GET", "/api/recipes/%2e/../admin/x", 400},
		{"many dot-dots", "GET", "/api/recipes/a/b/%2e%2e/%2e%2e/%2e%2e/admin/x", 400},
		// Encoded slashes and backslashes.
		{"dot-dot encoded slash", "GET", "/api/recipes/..%2fadmin/x", 400},
		{"dot-dot encoded slash upper", "GET", "/api/recipes/..%2Fadmin/x", 400},
		{"all encoded", "GET", "/api/recipes%2f%2e%2e%2fadmin%2fx", 400},
		{"encoded slash alone", "GET", "/api%2fadmin/x", 400},
		{"encoded backslash", "GET", "/api/recipes/..%5cadmin/x", 400},
		{"encoded backslash upper", "GET", "/api/recipes/%2e%2e%5Cadmin/x", 400},
		{"raw backslash", "GET", `/api/recipes/..\admin/x`, 400},
		// Repeated slashes.
		{"leading double slash", "GET", "//api/admin/x", 400},
		{"inner double slash", "GET", "/api//admin/x", 400},
		{"double slash dot-dot", "GET", "/api/recipes//../admin/x", 400},
		// Path parameters.
		{";jsessionid", "GET", "/api/admin;jsessionid=0123/x", 400},
		{"tomcat ..;/", "GET", "/api/recipes/..;/admin/x", 400},
		{"encoded ;", "GET", "/api/recipes/%2e%2e%3b/admin/x", 400},
		{"encoded ; upper", "GET", "/api/admin%3Bx=1/x", 400},
		// Control characters.
		{"NUL", "GET", "/api/admin%00/x", 400},
		{"NUL dot-dot", "GET", "/api/recipes/%00/../admin/x", 400},
		{"LF", "GET", "/api/recipes/x%0a/../../admin/x", 400},
		{"CR LF", "GET", "/api/recipes/x%0d%0a/../../admin/x", 400},
		{"tab", "GET", "/api/admin%09/x", 400},
		{"DEL", "GET", "/api/admin%7f/x", 400},
		{"C1 NEL", "GET", "/api/admin%c2%85/x", 400},
		// Overlong UTF-8 and bad escapes.
		{"overlong dot 2-byte", "GET", "/api/recipes/%c0%ae%c0%ae/admin/x", 400},
		{"overlong slash", "GET", "/api/recipes/..%c0%afadmin/x", 400},
		{"overlong dot 3-byte", "GET", "/api/recipes/%e0%80%ae%e0%80%ae/admin/x", 400},
		{"overlong backslash", "GET", "/api/recipes/..%c1%9cadmin/x", 400},
		{"lone continuation byte", "GET", "/api/admin%80/x", 400},
		{"IIS %u escape", "GET", "/api/recipes/%u002e%u002e/admin/x", 400},
		{"truncated escape", "GET", "/api/admin/x%2", 400},
		// Double encoding.
		{"double-encoded dot-dot", "GET", "/api/recipes/%252e%252e/admin/x", 400},
		{"double-encoded slash", "GET", "/api/recipes/..%252fadmin/x", 400},
		{"double-encoded, escaped digits", "GET", "/api/recipes/%25%32%65%25%32%65/admin/x", 400},
		{"double-encoded IIS %u dot-dot", "GET", "/api/recipes/%25u002e%25u002e/admin/x", 400},
		{"double-encoded IIS %u slash", "GET", "/api/recipes/..%25u002fadmin/x", 400},
		{"double-encoded IIS %U upper", "GET", "/api/recipes/%25U002E%25U002E/admin/x", 400},
		// Unicode compatibility forms.
		{"fullwidth dots encoded", "GET", "/api/recipes/%ef%bc%8e%ef%bc%8e/admin/x", 400},
		{"fullwidth dots raw", "GET", "/api/recipes/．．/admin/x", 400},
		{"fullwidth solidus", "GET", "/api/recipes/..%ef%bc%8fadmin/x", 400},
		{"fullwidth reverse solidus", "GET", "/api/recipes/..%ef%bc%bcadmin/x", 400},
		{"two dot leader", "GET", "/api/recipes/%e2%80%a5/admin/x", 400},
		{"one dot leader x2", "GET", "/api/recipes/%e2%80%a4%e2%80%a4/admin/x", 400},
		{"small full stop", "GET", "/api/recipes/%ef%b9%92%ef%b9%92/admin/x", 400},
		// Raw delimiters inside the target.
		{"fragment dot-dot", "GET", "/api/recipes/x#/../../admin/x", 400},
		{"space in target", "GET", "/api/admin /x", 400},
		// Absolute-form targets are judged by their path too.
		{"absolute-form dot-dot", "GET", host + "/api/recipes/%2e%2e/admin/x", 400},
		// Segments ending in a dot or a space, and characters that fold
		// into ASCII: trimmed or folded by lenient upstreams.
		{"trailing dot segment", "GET", "/api/admin./x", 400},
		{"trailing dots segment", "GET", "/api/admin../x", 400},
		{"encoded trailing dot", "GET", "/api/admin%2e/x", 400},
		{"trailing encoded space", "GET", "/api/admin%20/x", 400},
		{"triple dot", "GET", "/api/.../admin/x", 400},
		{"NFKC letter ª", "GET", "/api/%c2%aadmin/x", 400},
		// Unambiguous spellings that simply are not the Reader's.
		{"upper-case prefix", "GET", "/API/admin/x", 403},
		{"upper-case segment", "GET", "/api/ADMIN/x", 403},
		{"mixed case", "GET", "/Api/Admin/X", 403},
		{"encoded letter", "GET", "/%61pi/admin/x", 403},
		{"encoded letter 2", "GET", "/api/%61dmin/x", 403},
		{"lower-case method", "get", "/api/admin/x", 403},
		{"DELETE", "DELETE", "/api/admin/users/1", 403},
		{"unknown method", "PURGE", "/api/admin/x", 403},
		{"wildcard segment named admin", "GET", "/api/teams/admin/members", 200 /* the Reader's own rule: not /api/admin */},
		// Pivots from rules the Reader (or anyone) passes.
		{"segment wildcard pivot 2", "GET", "/api/teams/x/..%2f..%2fadmin/members", 400},
		{"segment wildcard dot-dot", "GET", "/api/teams/%2e%2e/admin/members", 400},
		{"public prefix pivot", "GET", "/api/public/..%2f..%2fapi/admin/x", 400},
		{"public prefix dot-dot", "GET", "/api/public/%2e%2e/admin/x", 400},
		{"me pivot", "GET", "/api/me/..%2fadmin/x", 400},
		// Spellings Caddy's matcher cleans into oidc_auth's public tree.
		{"into public, encoded dot-dot", "GET", "/api/admin/%2e%2e/public/x", 400},
		{"into public, encoded slash", "GET", "/api/admin/..%2fpublic/x", 400},
		// Outside `handle /api/*` as Caddy's path matcher reads them (it
		// decodes, cleans and lower-cases; `api;x`, `api.` and `api\admin\x`
		// are other first segments): the catch-all answers, scope_authz
		// never sees them. (Were that catch-all a reverse_proxy to the same
		// API, it would forward them unchecked: policy goes on every route
		// that reaches a service.)
		{"parameter on /api", "GET", "/api;x/admin/x", 404},
		{"encoded ; on /api", "GET", "/api%3b/admin/x", 404},
		{"trailing dot on /api", "GET", "/api./admin/x", 404},
		{"fullwidth a", "GET", "/%ef%bd%81pi/admin/x", 404},
		{"NFKC letter ª in /api", "GET", "/%c2%aapi/admin/x", 404},
		{"dot-dot above /api", "GET", "/api/recipes/../../../admin/x", 404},
		{"encoded dot-dots above /api", "GET", "/api/teams/..%2f..%2fadmin/members", 404},
		{"backslashes only", "GET", `/api\admin\x`, 404},
	}
	// The one vector the Reader may pass is excluded from the count.
	aimed := 0
	for _, v := range vectors {
		if v.want != 200 {
			aimed++
		}
	}
	if aimed < 25 {
		t.Fatalf("only %d vectors", aimed)
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\n%-32s %-52s %-6s %-40s %s\n", "vector", "request target", "status", "Reader: answered by", "anonymous")
	rid := func(who string, i int) string { return fmt.Sprintf("vec-%s-%03d", who, i) }
	refused := map[int]bool{400: true, 401: true, 403: true, 404: true}
	byReader := make([]string, len(vectors))
	byAnon := make([]string, len(vectors))
	for i, v := range vectors {
		r := rawRequest(t, g.addr, v.method, v.target, readerCookie, rid("r", i))
		a := rawRequest(t, g.addr, v.method, v.target, "", rid("a", i))
		by := answeredBy(r)
		byReader[i], byAnon[i] = by, answeredBy(a)
		fmt.Fprintf(&table, "%-32s %-52q %-6d %-40s %s\n", v.name, v.target, r.status, by, byAnon[i])
		if r.status != v.want {
			t.Errorf("%s: %s %q as the Reader: %d (%s), want %d: %.200s", v.name, v.method, v.target, r.status, by, v.want, r.body)
		}
		if v.want != 200 && !refused[r.status] {
			t.Errorf("%s: %s %q as the Reader: %d, want 400, 401, 403 or 404", v.name, v.method, v.target, r.status)
		}
		if !refused[a.status] && v.want != 200 {
			t.Errorf("%s: %s %q anonymous: %d, want 400, 401, 403 or 404", v.name, v.method, v.target, a.status)
		}
		if a.status == 200 {
			t.Errorf("%s: %s %q anonymous: 200", v.name, v.method, v.target)
		}
		if r.status == 400 && !strings.HasPrefix(by, "scope_authz 400") && !strings.HasPrefix(by, "Go HTTP server 400") {
			t.Errorf("%s: a 400 from neither scope_authz nor Go's server: %s", v.name, r.body)
		}
	}
	t.Log(table.String())

	// The upstream got only the one request the Reader may make, and no
	// lenient reading of anything it got is under /api/admin.
	reqs := g.up.Requests()
	for _, r := range reqs {
		if under, clean := underAdmin(r.RequestURI); under {
			t.Errorf("the upstream received %s %q (read leniently: %s)", r.Method, r.RequestURI, clean)
		}
	}
	if len(reqs) != 1 || reqs[0].RequestURI != "/api/teams/admin/members" {
		var got []string
		for _, r := range reqs {
			got = append(got, r.Method+" "+r.RequestURI)
		}
		t.Errorf("upstream saw %d requests, want only GET /api/teams/admin/members: %q", len(reqs), got)
	}

	// Every answer of scope_authz has its audit entry (400s as rule
	// "path"); requests it never saw have none. The last request is one
	// scope_authz surely logs, so that every entry before it is in.
	rawRequest(t, g.addr, "GET", "/api/admin/last", readerCookie, "vec-last")
	audit := auditEntries(t, g, "vec-last")
	for i, v := range vectors {
		for _, who := range []struct {
			id, by, sub string
		}{{rid("r", i), byReader[i], testop.ReaderSubject}, {rid("a", i), byAnon[i], ""}} {
			es := audit[who.id]
			if !strings.HasPrefix(who.by, "scope_authz") && who.by != "upstream" {
				if len(es) != 0 {
					t.Errorf("%s: scope_authz logged a request it did not answer (%s): %v", v.name, who.by, es)
				}
				continue
			}
			outcome, rule := "deny", "a policy rule"
			switch {
			case who.by == "upstream":
				outcome = "allow"
			case strings.HasPrefix(who.by, "scope_authz 400"):
				rule = "path"
			}
			if len(es) != 1 || es[0]["outcome"] != outcome || es[0]["sub"] != who.sub || es[0]["method"] != v.method ||
				(es[0]["rule"] == "path") != (rule == "path") {
				t.Errorf("%s: audit %v, want one %s by %s for %q", v.name, es, outcome, rule, who.sub)
			}
		}
	}
}

// answeredBy tells who refused a request: scope_authz (its problem
// bodies), oidc_auth's 401, the catch-all 404, or Go's HTTP server (plain
// text 400 before Caddy sees the request).
func answeredBy(r rawResult) string {
	problem := r.ctype == "application/problem+json"
	switch {
	case problem && r.status == 400 && strings.HasPrefix(r.detail, "ambiguous request path: "):
		return "scope_authz 400: " + strings.TrimPrefix(r.detail, "ambiguous request path: ")
	case problem && r.status == 403:
		return "scope_authz 403: " + r.detail
	case problem && r.status == 401 && r.detail == "authentication required":
		return "oidc_auth 401"
	case problem && r.status == 401:
		return "scope_authz 401: " + r.detail
	case r.status == 404 && r.body == "not found":
		return "catch-all handle 404"
	case !problem && r.status == 400:
		return "Go HTTP server 400: " + strings.TrimSpace(strings.SplitN(r.body, "\n", 2)[0])
	case r.status == 200:
		return "upstream"
	}
	return fmt.Sprintf("? %d %s", r.status, r.body)
}

// broadPolicy puts a specific rule before a broad one: the shape whose
// specific rule another spelling of a path used to miss, so that the broad
// rule admitted it.
const broadPolicy = `scope_authz {
			allow *   /api/admin/* admin
			allow GET /api/*       authenticated
			default deny
		}`

// Item 7 of issue 9: other spellings of /api/admin/users (case, trailing
// dots and spaces, characters that case mapping or NFKC fold into ASCII)
// never step around the admin rule to the broad one. Case variants are
// matched by the admin rule (403); the rest are refused before any rule.
func TestPathSpellingsCannotSidestepPolicy(t *testing.T) {
	g := startSiteGW(t, func(addr, issuer, upstream string) string {
		return fmt.Sprintf(`http://%[1]s {
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid profile email offline_access recipes:read recipes:write admin
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /api/* {
		%[4]s
		reverse_proxy %[3]s
	}
	handle /welcome {
		respond "welcome" 200
	}
	handle {
		respond "not found" 404
	}
}
`, addr, issuer, upstream, broadPolicy)
	})
	reader := g.cookieHeader(g.reader())
	g.up.Reset()

	for _, v := range []pathVector{
		// Matched by the admin rule whatever the case, as Caddy's own path
		// matcher and case-insensitive upstreams read them.
		{"upper-case segment", "GET", "/api/Admin/users", 403},
		{"all upper", "GET", "/api/ADMIN/users", 403},
		{"encoded upper", "GET", "/api/%41dmin/users", 403},
		{"upper prefix and segment", "GET", "/api/aDmIn/USERS", 403},
		// Trailing dots and spaces (Windows, IIS and .NET trim them).
		{"trailing dot", "GET", "/api/admin./users", 400},
		{"trailing dots", "GET", "/api/admin../users", 400},
		{"encoded trailing dot", "GET", "/api/admin%2e/users", 400},
		{"encoded trailing space", "GET", "/api/admin%20/users", 400},
		{"trailing dot and space", "GET", "/api/admin.%20/users", 400},
		{"trailing NBSP", "GET", "/api/admin%c2%a0/users", 400},
		{"trailing ideographic space", "GET", "/api/admin%e3%80%80/users", 400},
		{"trailing dot, last segment", "GET", "/api/admin/users.", 400},
		{"triple dot segment", "GET", "/api/.../admin/users", 400},
		// Characters that case mapping or NFKC fold into ASCII.
		{"fullwidth a", "GET", "/api/%ef%bd%81dmin/users", 400},
		{"fullwidth A raw", "GET", "/api/Ａdmin/users", 400},
		{"dotless i", "GET", "/api/adm%c4%b1n/users", 400},
		{"dotted capital I", "GET", "/api/adm%c4%b0n/users", 400},
		{"Kelvin sign", "GET", "/api/%e2%84%aaeys", 400},
		{"long s", "GET", "/api/admin/%c5%bfecrets", 400},
		{"sharp s", "GET", "/api/admin/stra%c3%9fe", 400},
		{"ligature ff", "GET", "/api/admin/%ef%ac%80", 400},
		{"feminine ordinal", "GET", "/api/%c2%aadmin/users", 400},
		{"mathematical a", "GET", "/api/%f0%9d%90%9admin/users", 400},
		{"superscript one", "GET", "/api/admin%c2%b9/users", 400},
		{"circled a", "GET", "/api/%e2%93%90dmin/users", 400},
		// Invisible characters NFKC_Casefold and culture-aware comparisons
		// drop, and delimiters a second decoding would make.
		{"zero-width space", "GET", "/api/admin%e2%80%8b/users", 400},
		{"soft hyphen", "GET", "/api/ad%c2%admin/users", 400},
		{"BOM", "GET", "/api/%ef%bb%bfadmin/users", 400},
		{"encoded question mark", "GET", "/api/admin%3f/users", 400},
		{"encoded hash", "GET", "/api/admin%23/users", 400},
		// Still the Reader's: the broad rule, with unambiguous letters.
		{"accented letter", "GET", "/api/caf%c3%a9", 200},
		{"plain", "GET", "/api/recipes", 200},
	} {
		r := rawRequest(t, g.addr, v.method, v.target, reader, "spell-"+v.name)
		if r.status != v.want {
			t.Errorf("%s: %s %q as the Reader: %d (%s), want %d", v.name, v.method, v.target, r.status, answeredBy(r), v.want)
		}
		if v.want == 400 && !strings.HasPrefix(answeredBy(r), "scope_authz 400") {
			t.Errorf("%s: refused by %s, want scope_authz", v.name, answeredBy(r))
		}
	}
	for _, r := range g.up.Requests() {
		if under, clean := underAdmin(r.RequestURI); under {
			t.Errorf("the upstream received %s %q (read leniently: %s)", r.Method, r.RequestURI, clean)
		}
		if strings.Contains(strings.ToLower(r.RequestURI), "admin") {
			t.Errorf("the upstream received %q", r.RequestURI)
		}
	}
	if n := len(g.up.Requests()); n != 2 {
		t.Errorf("the upstream saw %d requests, want the Reader's 2", n)
	}
}
