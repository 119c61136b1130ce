package caddybff

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-bff/caddy-bff/internal/problem"
)

const appsID = "http.handlers.bff_apps"

func mustLoadApps(t testing.TB, cfg any) *Apps {
	t.Helper()
	m, err := loadModule(t, appsID, cfg)
	if err != nil {
		t.Fatalf("loading bff_apps: %v", err)
	}
	return m.(*Apps)
}

// appsAnswer is a decoded answer of bff_apps.
type appsAnswer struct {
	Applications []map[string]json.RawMessage `json:"applications"`
}

func (a appsAnswer) names() []string {
	out := []string{}
	for _, app := range a.Applications {
		var n string
		_ = json.Unmarshal(app["name"], &n)
		out = append(out, n)
	}
	return out
}

func (a appsAnswer) app(name string) map[string]json.RawMessage {
	for _, app := range a.Applications {
		if string(app["name"]) == `"`+name+`"` {
			return app
		}
	}
	return nil
}

// getApps serves GET /applications as s and checks what every answer
// must carry.
func getApps(t testing.TB, h *Apps, s *session) appsAnswer {
	t.Helper()
	r := newRequest(t, http.MethodGet, "/applications?scope=admin", s)
	r.Header.Set("X-Scopes", "admin") // a client cannot claim scopes
	w, up := serve(t, h, r)
	if up != nil {
		t.Fatal("bff_apps called the next handler")
	}
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "no-store",
		"Vary":                   "Cookie",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if w.Header().Get("X-Request-ID") == "" {
		t.Error("no X-Request-ID")
	}
	if !bytes.HasSuffix(w.Body.Bytes(), []byte("}\n")) {
		t.Errorf("body does not end with a newline: %q", w.Body)
	}
	var ans appsAnswer
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		t.Fatalf("answer is not {\"applications\": [...]}: %v", err)
	}
	if ans.Applications == nil {
		t.Fatal(`"applications" is not an array`)
	}
	for _, app := range ans.Applications {
		if _, ok := app["require"]; ok {
			t.Errorf("answer reveals require: %v", app)
		}
		for _, k := range []string{"name", "title", "entry", "route"} {
			if _, ok := app[k]; !ok {
				t.Errorf("app %s lacks %s", app["name"], k)
			}
		}
	}
	return ans
}

func user(scopes ...string) *session {
	return &session{key: "k", subject: "u1", scopes: scopes}
}

func TestAppsServe(t *testing.T) {
	h := mustLoadApps(t, map[string]any{"file": "testdata/apps/portal.json"})
	tests := []struct {
		name string
		s    *session
		want []string
	}{
		{"anonymous", nil, []string{"home"}},
		{"logged in, no scopes", user(), []string{"home", "profile"}},
		{"reader", user("openid", "recipes:read"), []string{"home", "recipes", "profile"}},
		{"writer", user("recipes:read", "recipes:write"), []string{"home", "recipes", "editor", "profile"}},
		{"admin", user("recipes:read", "recipes:write", "admin"), []string{"home", "recipes", "editor", "admin", "profile", "reports"}},
		{"auditor without recipes:read", user("auditor"), []string{"home", "profile"}},
		{"auditor and reader", user("recipes:read", "auditor"), []string{"home", "recipes", "profile", "reports"}},
		{"admin only", user("admin"), []string{"home", "admin", "profile"}},
		{"scope claim wins", &session{key: "k", subject: "u1", claims: map[string]any{"scope": "admin recipes:read"}}, []string{"home", "recipes", "admin", "profile", "reports"}},
		{"scope claim as array", &session{key: "k", subject: "u1", claims: map[string]any{"scope": []any{"recipes:write", 7, nil}}}, []string{"home", "editor", "profile"}},

		{"attack: scope prefix", user("recipes:readx", "adminx"), []string{"home", "profile"}},
		{"attack: scope suffix", user("xrecipes:read", "sadmin"), []string{"home", "profile"}},
		{"attack: case", user("Admin", "RECIPES:READ"), []string{"home", "profile"}},
		{"attack: alternative as a scope", user("recipes:read|admin"), []string{"home", "profile"}},
		{"attack: keyword as a scope", user("anonymous", "authenticated", "*"), []string{"home", "profile"}},
		{"attack: scopes in another claim", &session{key: "k", subject: "u1", claims: map[string]any{"roles": []any{"admin"}, "scp": "admin"}}, []string{"home", "profile"}},
		{"attack: scope claim of another type", &session{key: "k", subject: "u1", scopes: []string{"admin"}, claims: map[string]any{"scope": map[string]any{"admin": true}}}, []string{"home", "profile"}},
		{"attack: empty scopes", user("", " "), []string{"home", "profile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := getApps(t, h, tt.s).names()
			if !slices.Equal(got, tt.want) {
				t.Errorf("applications %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAppsExtraFields(t *testing.T) {
	h := mustLoadApps(t, map[string]any{"file": "testdata/apps/portal.json"})
	ans := getApps(t, h, user("recipes:read", "admin"))

	recipes := ans.app("recipes")
	want := map[string]string{
		"name":  `"recipes"`,
		"title": `"Recipes"`,
		"entry": `"/apps/recipes/index.js"`,
		"route": `"/recipes"`,
		"icon":  `"/apps/recipes/icon.svg"`,
		"order": `1.5`,
		"beta":  `false`,
		"team":  `{"name":"food","oncall":["ana","bo"]}`,
		"tags":  `null`,
	}
	if len(recipes) != len(want) {
		t.Errorf("recipes has fields %v, want %d", recipes, len(want))
	}
	for k, v := range want {
		if got := string(recipes[k]); got != v {
			t.Errorf("recipes.%s = %s, want %s", k, got, v)
		}
	}
	// An app without a title is shown by its name.
	if got := string(ans.app("profile")["title"]); got != `"profile"` {
		t.Errorf("profile's title = %s, want its name", got)
	}
	if got := string(ans.app("reports")["entry"]); got != `"https://cdn.example/reports/remote.js"` {
		t.Errorf("reports' entry = %s", got)
	}
}

func TestAppsMethods(t *testing.T) {
	h := mustLoadApps(t, map[string]any{"file": "testdata/apps/portal.json"})
	get, _ := serve(t, h, newRequest(t, http.MethodGet, "/applications", user("admin")))

	head, up := serve(t, h, newRequest(t, http.MethodHead, "/applications", user("admin")))
	if up != nil || head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Errorf("HEAD: %d, %d bytes", head.Code, head.Body.Len())
	}
	if got, want := head.Header().Get("Content-Length"), get.Header().Get("Content-Length"); got != want || got == "" {
		t.Errorf("HEAD Content-Length %q, GET %q", got, want)
	}

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
		t.Run(m, func(t *testing.T) {
			r := newRequest(t, m, "/applications", user("admin"))
			r.Header.Set("X-Request-ID", "req-42")
			w, up := serve(t, h, r)
			if up != nil {
				t.Fatal("called the next handler")
			}
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
				t.Fatalf("%d Allow %q, want 405 with Allow: GET, HEAD", w.Code, w.Header().Get("Allow"))
			}
			if ct := w.Header().Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type %q", ct)
			}
			var p problem.Details
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != 405 || p.RequestID != "req-42" {
				t.Errorf("problem %+v (%v)", p, err)
			}
			if strings.Contains(w.Body.String(), "recipes") {
				t.Error("405 lists applications")
			}
		})
	}
}

func TestAppsBareArray(t *testing.T) {
	h := mustLoadApps(t, map[string]any{"file": "testdata/apps/bare.json"})
	for _, tt := range []struct {
		s    *session
		want []string
	}{
		{nil, []string{"public"}},
		{user(), []string{"public"}},
		{user("recipes:read"), []string{"recipes", "public"}},
	} {
		if got := getApps(t, h, tt.s).names(); !slices.Equal(got, tt.want) {
			t.Errorf("%v: %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestAppsInlineJSON(t *testing.T) {
	cfg := json.RawMessage(`{
		"claim": "realm_access.roles",
		"applications": [
			{"name": "a", "entry": "/a.js", "route": "/a", "require": "x|y", "icon": "a.svg", "n": 3},
			{"name": "b", "title": "B", "entry": "/b.js", "route": "/b", "require": ["x", "z"]},
			{"name": "c", "entry": "/c.js", "route": "/c"}
		]}`)
	h := mustLoadApps(t, cfg)
	for _, tt := range []struct {
		roles []any
		want  []string
	}{
		{nil, []string{"c"}},
		{[]any{"y"}, []string{"a", "c"}},
		{[]any{"x", "z"}, []string{"a", "b", "c"}},
		{[]any{"z"}, []string{"c"}},
	} {
		s := &session{key: "k", subject: "u", scopes: []string{"x", "y", "z"}, // not the claim configured
			claims: map[string]any{"realm_access": map[string]any{"roles": tt.roles}}}
		ans := getApps(t, h, s)
		if got := ans.names(); !slices.Equal(got, tt.want) {
			t.Errorf("roles %v: %v, want %v", tt.roles, got, tt.want)
		}
		if a := ans.app("a"); a != nil && (string(a["icon"]) != `"a.svg"` || string(a["n"]) != "3") {
			t.Errorf("a's extra fields: %v", a)
		}
	}

	// The config survives a JSON round trip, as Caddy's autosave does it.
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	h2 := mustLoadApps(t, json.RawMessage(raw))
	if !slices.EqualFunc(h2.Applications, h.Applications, appEqual) {
		t.Errorf("round trip changed the config: %s", raw)
	}
}

func appEqual(a, b App) bool {
	if a.Name != b.Name || a.Title != b.Title || a.Entry != b.Entry || a.Route != b.Route ||
		!slices.Equal(a.Require, b.Require) || len(a.Extra) != len(b.Extra) {
		return false
	}
	for k, v := range a.Extra {
		var x, y bytes.Buffer
		if json.Compact(&x, v) != nil || json.Compact(&y, b.Extra[k]) != nil || x.String() != y.String() {
			return false
		}
	}
	return true
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// appsFileCases are applications files and the error each gives; ""
// means valid.
var appsFileCases = []struct {
	name, content, wantErr string
}{
	{"object", `{"applications": [{"name": "a", "entry": "/a.js", "route": "/a"}]}`, ""},
	{"bare array", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": "x"}]`, ""},
	{"empty list", `{"applications": []}`, ""},
	{"byte order mark", "\uFEFF[]", ""},
	{"absolute entry", `[{"name": "a", "entry": "https://cdn.example:8443/a/remote.js?v=2", "route": "/a/b"}]`, ""},
	{"unicode", `[{"name": "rezepte", "title": "Rezepte für alle", "entry": "/apps/r%C3%BC/index.js", "route": "/rezepte", "beschreibung": "Küche"}]`, ""},
	{"all requirement forms", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": " x|y  authenticated\tz "}, {"name": "b", "entry": "/b.js", "route": "/b", "require": ["anonymous"]}]`, ""},

	{"empty file", ``, "invalid JSON"},
	{"truncated", `{"applications": [`, "invalid JSON"},
	{"syntax error position", "{\n\t\"applications\": [\n\t\t{\"name\": \"a\",}\n\t]\n}", "invalid JSON at line 3, column 16"},
	{"trailing data", `[] []`, "invalid JSON"},
	{"comment", "// apps\n[]", "invalid JSON"},
	{"string", `"apps"`, `want {"applications": [...]} or an array`},
	{"null", `null`, `want {"applications": [...]} or an array`},
	{"unknown top-level field", `{"applications": [], "apps": []}`, `unknown field "apps"`},
	{"no applications", `{}`, `want an "applications" array`},
	{"applications not an array", `{"applications": {"a": {}}}`, `want an "applications" array`},
	{"applications null", `{"applications": null}`, `want an "applications" array`},
	{"app not an object", `[1]`, "application 1: an application is a JSON object, not a number"},
	{"app null", `[null]`, "application 1: an application is a JSON object, not null"},
	{"no name", `[{"entry": "/a.js", "route": "/a"}]`, "application 1: name is required"},
	{"name not a string", `[{"name": 1, "entry": "/a.js", "route": "/a"}]`, "application 1: name: want a string, got a number"},
	{"name with space", `[{"name": "a b", "entry": "/a.js", "route": "/a"}]`, "contains white space"},
	{"name with control", `[{"name": "a\u0000", "entry": "/a.js", "route": "/a"}]`, "control characters"},
	{"name too long", `[{"name": "` + strings.Repeat("n", 129) + `", "entry": "/a.js", "route": "/a"}]`, "longer than 128"},
	{"duplicate names", `[{"name": "a", "entry": "/a.js", "route": "/a"}, {"name": "a", "entry": "/b.js", "route": "/b"}]`, `application 2 ("a"): name "a" is taken by`},
	{"no entry", `[{"name": "ok", "entry": "/ok.js", "route": "/ok"}, {"name": "a", "route": "/a"}]`, `application 2 ("a"): entry is required`},
	{"empty entry", `[{"name": "a", "entry": "", "route": "/a"}]`, `application 1 ("a"): entry is required`},
	{"no route", `[{"name": "a", "entry": "/a.js"}]`, `application 1 ("a"): route is required`},
	{"relative route", `[{"name": "a", "entry": "/a.js", "route": "a"}]`, `route "a": must start with a single /`},
	{"scheme-relative route", `[{"name": "a", "entry": "/a.js", "route": "//evil.example"}]`, `must start with a single /`},
	{"route with backslash", `[{"name": "a", "entry": "/a.js", "route": "/\\evil.example"}]`, `backslashes`},
	{"route with space", `[{"name": "a", "entry": "/a.js", "route": "/a b"}]`, `white space`},
	{"javascript entry", `[{"name": "a", "entry": "javascript:alert(1)", "route": "/a"}]`, `entry "javascript:alert(1)": want a path on this site`},
	{"data entry", `[{"name": "a", "entry": "data:text/javascript,alert(1)", "route": "/a"}]`, `want a path on this site`},
	{"scheme-relative entry", `[{"name": "a", "entry": "//cdn.evil/a.js", "route": "/a"}]`, `scheme-relative`},
	{"relative entry", `[{"name": "a", "entry": "apps/a.js", "route": "/a"}]`, `want a path on this site`},
	{"ftp entry", `[{"name": "a", "entry": "ftp://cdn.example/a.js", "route": "/a"}]`, `want a path on this site`},
	{"entry with credentials", `[{"name": "a", "entry": "https://u:p@cdn.example/a.js", "route": "/a"}]`, `want a path on this site`},
	{"entry with newline", `[{"name": "a", "entry": "/a.js\n", "route": "/a"}]`, `white space`},
	{"title not a string", `[{"name": "a", "title": ["A"], "entry": "/a.js", "route": "/a"}]`, `application 1 ("a"): title: want a string, got an array`},
	{"entry null", `[{"name": "a", "entry": null, "route": "/a"}]`, `entry: want a string, got null`},
	{"require a number", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": 1}]`, `require: want a string or an array of strings`},
	{"require empty string", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": " "}]`, `require: empty`},
	{"require empty array", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": []}]`, `require: empty`},
	{"require array of numbers", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": [1]}]`, `require: item 1: want a string`},
	{"require empty alternative", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": "x||y"}]`, `application 1 ("a"): require: requirement "x||y": empty alternative`},
	{"require anonymous combined", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": "anonymous admin"}]`, `cannot be combined`},
	{"require star", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": "*"}]`, `use anonymous or authenticated`},
	{"require with space in item", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": ["x y"]}]`, `not allowed in a scope`},
	{"require path", `[{"name": "a", "entry": "/a.js", "route": "/a", "require": "/admin"}]`, `looks like a path pattern`},
	{"misspelt require", `[{"name": "a", "entry": "/a.js", "route": "/a", "Require": "admin"}]`, `did you mean "require"`},
	{"plural require", `[{"name": "a", "entry": "/a.js", "route": "/a", "requires": "admin"}]`, `did you mean "require"`},
	{"upper-case entry", `[{"name": "a", "Entry": "/a.js", "route": "/a"}]`, `did you mean "entry"`},
	{"too large", `[{"name": "a", "entry": "/a.js", "route": "/a", "pad": "` + strings.Repeat("x", maxAppsFileSize) + `"}]`, "larger than 1048576 bytes"},
}

func TestAppsFileErrors(t *testing.T) {
	dir := t.TempDir()
	for i, tt := range appsFileCases {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.Repeat("x", i%3)+"apps.json", tt.content)
			_, err := loadModule(t, appsID, map[string]any{"file": path})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr == "":
				return
			case err == nil || !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			case !strings.Contains(err.Error(), "bff_apps: "+path):
				t.Errorf("error does not name the directive and file: %v", err)
			}
		})
	}

	for _, tt := range []struct{ name, file, wantErr string }{
		{"missing file", filepath.Join(dir, "missing.json"), "missing.json: no such file"},
		{"directory", dir, "bff_apps: reading applications file"},
		{"unset placeholder", "{env.BFF_APPS_TEST_UNSET}", `bff_apps: file "{env.BFF_APPS_TEST_UNSET}"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadModule(t, appsID, map[string]any{"file": tt.file})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestAppsConfigErrors(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "apps.json", `[{"name": "a", "entry": "/a.js", "route": "/a"}]`)
	for _, tt := range []struct {
		name    string
		cfg     string
		wantErr string
	}{
		{"nothing", `{}`, "bff_apps: no applications"},
		{"bad claim", `{"file": "` + file + `", "claim": "a..b"}`, `bff_apps: claim "a..b": empty part`},
		{"inline duplicate of the file's", `{"file": "` + file + `", "applications": [{"name": "a", "entry": "/b.js", "route": "/b"}]}`, `bff_apps: app "a": name "a" is taken by ` + file + `: application 1 ("a")`},
		{"inline duplicates", `{"applications": [{"name": "b", "entry": "/b.js", "route": "/b"}, {"name": "b", "entry": "/b.js", "route": "/b"}]}`, `name "b" is taken by app "b"`},
		{"inline bad requirement", `{"applications": [{"name": "b", "entry": "/b.js", "route": "/b", "require": "a|"}]}`, `bff_apps: app "b": require: requirement "a|": empty alternative`},
		{"inline not an object", `{"applications": ["b"]}`, `an application is a JSON object`},
		{"inline no route", `{"applications": [{"name": "b", "entry": "/b.js"}]}`, `bff_apps: app "b": route is required`},
		{"unknown field", `{"file": "` + file + `", "apps": []}`, `unknown field "apps"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadModule(t, appsID, json.RawMessage(tt.cfg))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// A config reload provisions a new handler, which reads the file again; the
// old one keeps serving what it read until Caddy swaps them, and a broken
// file fails the reload, not the running config.
func TestAppsReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "apps.json")
	t.Setenv("BFF_APPS_TEST_FILE", path)
	cfg := map[string]any{"file": "{env.BFF_APPS_TEST_FILE}"}
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	write(`[{"name": "a", "entry": "/a.js", "route": "/a"}, {"name": "b", "entry": "/b.js", "route": "/b", "require": "admin"}]`)
	first := mustLoadApps(t, cfg)
	if got := getApps(t, first, user("admin")).names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first load: %v", got)
	}

	write(`{"applications": [{"name": "c", "entry": "/c.js", "route": "/c", "require": "admin", "v": 2}]}`)
	second := mustLoadApps(t, cfg)
	if got := getApps(t, second, user("admin")).names(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("after the reload: %v, want [c]", got)
	}
	if got := getApps(t, first, user("admin")).names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("the old config changed under its feet: %v", got)
	}

	write(`[{"name": "c", "entry": "/c.js"`)
	if _, err := loadModule(t, appsID, cfg); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("reload with a broken file: %v, want an error naming %s", err, path)
	}
	if got := getApps(t, second, user("admin")).names(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("a failed reload changed the running config: %v", got)
	}
}

// appsCaddyfileCases are Caddyfile snippets and the error each must give,
// from parsing or from loading; "" means valid. FILE is a valid
// applications file.
var appsCaddyfileCases = []struct {
	name, input, wantErr string
}{
	{"file argument", "bff_apps FILE", ""},
	{"file subdirective", "bff_apps {\n file FILE\n claim realm_access.roles\n}", ""},
	{"inline", "bff_apps {\n app recipes {\n  title \"Recipes for all\"\n  entry /apps/recipes/index.js\n  route /recipes\n  require recipes:read|admin authenticated\n  icon /apps/recipes/icon.svg\n  team food\n }\n app profile {\n  entry https://cdn.example/profile.js\n  route /me\n }\n}", ""},
	{"file and inline", "bff_apps FILE {\n app other {\n  entry /o.js\n  route /o\n  require anonymous\n }\n}", ""},

	{"two arguments", "bff_apps FILE FILE", "wrong argument count"},
	{"nothing", "bff_apps", "bff_apps: no applications"},
	{"empty block", "bff_apps {\n}", "bff_apps: no applications"},
	{"file twice", "bff_apps {\n file FILE\n file FILE\n}", `"file" given more than once`},
	{"file argument and subdirective", "bff_apps FILE {\n file FILE\n}", `"file" given more than once`},
	{"file without value", "bff_apps {\n file\n}", "wrong argument count"},
	{"claim twice", "bff_apps FILE {\n claim a\n claim b\n}", `"claim" given more than once`},
	{"claim with two values", "bff_apps FILE {\n claim a b\n}", "wrong argument count"},
	{"bad claim", "bff_apps FILE {\n claim a.\n}", `claim "a.": empty part`},
	{"unknown subdirective", "bff_apps FILE {\n application x\n}", `unrecognized subdirective "application"`},
	{"block on file", "bff_apps {\n file FILE {\n }\n}", "take no block"},
	{"app without name", "bff_apps {\n app {\n  entry /a.js\n  route /a\n }\n}", "wrong argument count"},
	{"app with two names", "bff_apps {\n app a b {\n  entry /a.js\n  route /a\n }\n}", "wrong argument count"},
	{"app without block", "bff_apps {\n app a\n}", `app "a": entry is required`},
	{"app twice", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n }\n app a {\n  entry /a.js\n  route /a\n }\n}", `app "a" defined more than once`},
	{"app duplicate of the file's", "bff_apps FILE {\n app recipes {\n  entry /a.js\n  route /a\n }\n}", `name "recipes" is taken by`},
	{"app field twice", "bff_apps {\n app a {\n  entry /a.js\n  entry /b.js\n  route /a\n }\n}", `app "a": "entry" given more than once`},
	{"app extra twice", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  icon x\n  icon y\n }\n}", `app "a": "icon" given more than once`},
	{"app name field", "bff_apps {\n app a {\n  name b\n  entry /a.js\n  route /a\n }\n}", "the name is the app's argument"},
	{"title with two values", "bff_apps {\n app a {\n  title A B\n  entry /a.js\n  route /a\n }\n}", "wrong argument count"},
	{"require without values", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  require\n }\n}", "wrong argument count"},
	{"extra without value", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  icon\n }\n}", "wrong argument count"},
	{"extra with two values", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  icon a b\n }\n}", "wrong argument count"},
	{"misspelt require", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  requires admin\n }\n}", `did you mean "require"`},
	{"block in app", "bff_apps {\n app a {\n  entry /a.js {\n  }\n  route /a\n }\n}", `app "a": fields take no block`},
	{"no route", "bff_apps {\n app a {\n  entry /a.js\n }\n}", `app "a": route is required`},
	{"bad route", "bff_apps {\n app a {\n  entry /a.js\n  route a\n }\n}", `route "a": must start`},
	{"bad entry", "bff_apps {\n app a {\n  entry javascript:alert(1)\n  route /a\n }\n}", `want a path on this site`},
	{"bad requirement", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  require a||b\n }\n}", `app "a": require: requirement "a||b": empty alternative`},
	{"anonymous combined", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  require anonymous x\n }\n}", `cannot be combined`},
	{"line number", "bff_apps {\n app a {\n  entry /a.js\n  route /a\n  require x|\n }\n}", "Caddyfile:6"},
	{"missing file", "bff_apps FILE.missing", "no such file"},
}

func TestAppsCaddyfile(t *testing.T) {
	file := writeFile(t, t.TempDir(), "apps.json", `[{"name": "recipes", "entry": "/r.js", "route": "/r"}]`)
	for _, tt := range appsCaddyfileCases {
		t.Run(tt.name, func(t *testing.T) {
			input := strings.ReplaceAll(tt.input, "FILE", file)
			tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
			if err != nil {
				t.Fatal(err)
			}
			h := new(Apps)
			err = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
			if err == nil {
				var raw []byte
				if raw, err = json.Marshal(h); err != nil {
					t.Fatal(err)
				}
				_, err = loadModule(t, appsID, json.RawMessage(raw))
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestAppsCaddyfileServe(t *testing.T) {
	input := "bff_apps {\n app recipes {\n  title \"Recipes for all\"\n  entry /apps/recipes/index.js\n  route /recipes\n  require recipes:read|admin\n  icon /apps/recipes/icon.svg\n  order 2\n }\n app profile {\n  entry /apps/profile/index.js\n  route /me\n }\n app welcome {\n  entry /apps/welcome/index.js\n  route /welcome\n  require anonymous\n }\n}"
	tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg := new(Apps)
	if err := cfg.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		t.Fatal(err)
	}
	h := mustLoadApps(t, cfg)

	if got := getApps(t, h, nil).names(); !slices.Equal(got, []string{"welcome"}) {
		t.Errorf("anonymous: %v", got)
	}
	if got := getApps(t, h, user("other")).names(); !slices.Equal(got, []string{"profile", "welcome"}) {
		t.Errorf("no scopes: %v", got)
	}
	ans := getApps(t, h, user("admin"))
	if got := ans.names(); !slices.Equal(got, []string{"recipes", "profile", "welcome"}) {
		t.Errorf("admin: %v", got)
	}
	r := ans.app("recipes")
	// Extra fields from a Caddyfile are strings.
	if string(r["title"]) != `"Recipes for all"` || string(r["icon"]) != `"/apps/recipes/icon.svg"` || string(r["order"]) != `"2"` {
		t.Errorf("recipes: %v", r)
	}
}

// FuzzAppsFile feeds arbitrary files to the parser: it must return an
// error or applications whose answers are valid JSON objects carrying the
// fields they were given, never panic.
func FuzzAppsFile(f *testing.F) {
	for _, tt := range appsFileCases {
		if len(tt.content) < 4096 {
			f.Add([]byte(tt.content))
		}
	}
	portal, err := os.ReadFile("testdata/apps/portal.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(portal)
	f.Fuzz(func(t *testing.T, data []byte) {
		apps, err := parseAppsFile("apps.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "apps.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for i := range apps {
			app := &apps[i]
			c, err := app.compile()
			if err != nil {
				continue
			}
			var out map[string]json.RawMessage
			if err := json.Unmarshal(c.body, &out); err != nil {
				t.Fatalf("answer of %q is not a JSON object: %v: %s", app.Name, err, c.body)
			}
			var name string
			if json.Unmarshal(out["name"], &name) != nil || name != app.Name {
				t.Fatalf("answer names %s, want %q", out["name"], app.Name)
			}
			if _, ok := out["require"]; ok {
				t.Fatal("answer reveals require")
			}
			if len(out) != 4+len(app.Extra) {
				t.Fatalf("answer has %d fields, want %d", len(out), 4+len(app.Extra))
			}
			// An application survives a round trip through the config.
			raw, err := json.Marshal(app)
			if err != nil {
				t.Fatal(err)
			}
			var back App
			if err := json.Unmarshal(raw, &back); err != nil || !appEqual(back, *app) {
				t.Fatalf("round trip: %v: %s", err, raw)
			}
		}
	})
}

// FuzzAppsCaddyfile feeds arbitrary tokens to the parser: it must return
// an error or a config that survives a JSON round trip, never panic.
func FuzzAppsCaddyfile(f *testing.F) {
	for _, tt := range appsCaddyfileCases {
		f.Add(tt.input)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		h := new(Apps)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("marshalling parsed config: %v", err)
		}
		back := new(Apps)
		if err := json.Unmarshal(raw, back); err != nil {
			t.Fatalf("config does not round-trip: %v: %s", err, raw)
		}
		if !slices.EqualFunc(back.Applications, h.Applications, appEqual) {
			t.Fatalf("round trip changed the apps: %s", raw)
		}
		for i := range back.Applications {
			if _, err := back.Applications[i].compile(); err != nil {
				t.Fatalf("parser accepted an app that does not compile: %v", err)
			}
		}
		_ = back.Validate()
	})
}
