package scopeauthz

import (
	"encoding/json"
	"github.com/caddy-bff/caddy-bff/internal/adapttest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// caddyfileCases are Caddyfile snippets and the error each must give, from
// parsing or from loading (Provision, Validate); "" means valid.
var caddyfileCases = []struct {
	name, input, wantErr string
}{
	{"bare", "scope_authz", ""},
	{"empty block", "scope_authz {\n}", ""},
	{"spec example", "scope_authz {\n claim scope\n allow GET /api/recipes /api/recipes/* recipes:read\n allow POST PUT DELETE /api/recipes/* recipes:write\n allow * /api/admin/* admin\n allow GET /api/me authenticated\n}", ""},
	{"all forms", "scope_authz {\n claim realm_access.roles\n allow GET HEAD /a /b/* /c/*/d a|b c authenticated\n allow * / anonymous\n default allow\n}", ""},
	{"default deny", "scope_authz {\n allow GET /a x\n default deny\n}", ""},
	{"custom method", "scope_authz {\n allow M-SEARCH /a x\n}", ""},

	{"argument on directive", "scope_authz deny", "wrong argument count"},
	{"unknown subdirective", "scope_authz {\n deny GET /a x\n}", `unrecognized subdirective "deny"`},
	{"nested block", "scope_authz {\n allow GET /a x {\n }\n}", "subdirectives take no block"},
	{"claim twice", "scope_authz {\n claim a\n claim b\n}", `"claim" given more than once`},
	{"claim without value", "scope_authz {\n claim\n}", "wrong argument count"},
	{"claim with two values", "scope_authz {\n claim a b\n}", "wrong argument count"},
	{"claim empty part", "scope_authz {\n claim realm..roles\n}", "empty part"},
	{"claim trailing dot", "scope_authz {\n claim realm.\n}", "empty part"},
	{"default twice", "scope_authz {\n default deny\n default deny\n}", `"default" given more than once`},
	{"default without value", "scope_authz {\n default\n}", "wrong argument count"},
	{"default unknown", "scope_authz {\n default permit\n}", `default "permit": want deny or allow`},
	{"allow without arguments", "scope_authz {\n allow\n}", "wrong argument count"},
	{"no path", "scope_authz {\n allow GET recipes:read\n}", "no path pattern"},
	{"no method", "scope_authz {\n allow /api/me authenticated\n}", "methods or * must come before"},
	{"no requirement", "scope_authz {\n allow GET /api/me\n}", "no requirement"},
	{"lower-case method", "scope_authz {\n allow get /a x\n}", `invalid method "get"`},
	{"method with comma", "scope_authz {\n allow GET,POST /a x\n}", `invalid method "GET,POST"`},
	{"star among methods", "scope_authz {\n allow GET * /a x\n}", `method "*" must stand alone`},
	{"requirement before path", "scope_authz {\n allow GET read /a\n}", `invalid method "read"`},
	{"path after requirement", "scope_authz {\n allow GET /a read /b\n}", `path pattern "/b" after the requirements`},
	{"empty alternative", "scope_authz {\n allow GET /a a||b\n}", "empty alternative"},
	{"leading bar", "scope_authz {\n allow GET /a |a\n}", "empty alternative"},
	{"bad scope character", "scope_authz {\n allow GET /a \"a\\\\b\"\n}", "not allowed in a scope"},
	{"star requirement", "scope_authz {\n allow GET /a *\n}", "use anonymous or authenticated"},
	{"anonymous combined", "scope_authz {\n allow GET /a anonymous admin\n}", "cannot be combined"},
	{"anonymous alternative", "scope_authz {\n allow GET /a admin|anonymous\n}", "cannot be an alternative"},
	{"dot-dot pattern", "scope_authz {\n allow GET /a/../b x\n}", "dot segments"},
	{"double slash pattern", "scope_authz {\n allow GET /a//b x\n}", "empty segments"},
	{"encoded pattern", "scope_authz {\n allow GET /a%2Fb x\n}", "without percent-escapes"},
	{"partial wildcard", "scope_authz {\n allow GET /a/b* x\n}", "whole segment"},
	{"semicolon pattern", "scope_authz {\n allow GET /a;b x\n}", "never appears"},
	{"line number", "scope_authz {\n allow GET /a x\n allow GET /b a||b\n}", "Caddyfile:3"},
}

// TestCaddyfile parses each snippet as the Caddyfile adapter does, then
// loads the JSON it becomes as Caddy does.
func TestCaddyfile(t *testing.T) {
	for _, tt := range caddyfileCases {
		t.Run(tt.name, func(t *testing.T) {
			tokens, err := caddyfile.Tokenize([]byte(tt.input), "Caddyfile")
			if err != nil {
				t.Fatal(err)
			}
			h := new(Handler)
			err = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
			if err == nil {
				_, err = loadModule(t, h)
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

// TestJSONErrors: a JSON config gets the same checks, naming the rule.
func TestJSONErrors(t *testing.T) {
	for _, tt := range []struct{ name, config, wantErr string }{
		{"unknown field", `{"rules": []}`, `unknown field "rules"`},
		{"default", `{"default": "permit"}`, `scope_authz: default "permit": want deny or allow`},
		{"claim", `{"claim": "a..b"}`, `scope_authz: claim "a..b": empty part`},
		{"no path", `{"allow": [{"require": ["x"]}]}`, "scope_authz: allow #1: no path pattern"},
		{"no requirement", `{"allow": [{"paths": ["/a"], "require": ["x"]}, {"paths": ["/b"]}]}`, "scope_authz: allow #2: no requirement"},
		{"method", `{"allow": [{"methods": ["get"], "paths": ["/a"], "require": ["x"]}]}`, `scope_authz: allow #1: invalid method "get"`},
		{"star with methods", `{"allow": [{"methods": ["*", "GET"], "paths": ["/a"], "require": ["x"]}]}`, `method "*" must stand alone`},
		{"relative pattern", `{"allow": [{"paths": ["a"], "require": ["x"]}]}`, `scope_authz: allow #1: path pattern "a": must start with /`},
		{"requirement", `{"allow": [{"paths": ["/a"], "require": ["a|"]}]}`, `scope_authz: allow #1: requirement "a|": empty alternative`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadModule(t, json.RawMessage(tt.config))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestProvisionWarnings: risky policies load, with a warning.
func TestProvisionWarnings(t *testing.T) {
	h, err := loadModule(t, json.RawMessage(`{"allow": [{"paths": ["/api/*"], "require": ["a"]}, {"methods": ["GET"], "paths": ["/api/x"], "require": ["b"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, warnings, _ := h.compile(); len(warnings) != 1 || !strings.Contains(warnings[0], "allow #2 never applies") {
		t.Fatalf("warnings = %q", warnings)
	}
}

// FuzzCaddyfile feeds arbitrary tokens to the parser: it must return an
// error or a config that survives a JSON round trip and whose checks do
// not panic.
func FuzzCaddyfile(f *testing.F) {
	for _, tt := range caddyfileCases {
		f.Add(tt.input)
	}
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("marshalling parsed config: %v", err)
		}
		var back Handler
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatalf("config does not round-trip: %v", err)
		}
		// The parser checks every rule: what it accepts compiles.
		if err := back.Validate(); err != nil {
			t.Fatalf("parsed config %s does not validate: %v", raw, err)
		}
	})
}

// TestCaddyfileAdapt compares whole Caddyfiles with the JSON they adapt to
// (or the error they give), as Caddy's own adapt tests do.
func TestCaddyfileAdapt(t *testing.T) { adapttest.Run(t, "testdata/caddyfile_adapt") }

// TestDirectiveOrder: listed backwards, the directives still run in the
// chain's order: oidc_auth, scope_authz, then forward_auth and the proxy.
// Only the handler names are compared, so oidc_auth's config may change.
func TestDirectiveOrder(t *testing.T) {
	input := `portal.example {
	reverse_proxy 127.0.0.1:9000
	forward_auth auth:9000 {
		uri /check
	}
	scope_authz {
		allow GET /api/* read
	}
	oidc_auth {
		issuer https://id.example
		client_id portal
	}
	basic_auth /legacy/* {
		alice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
}
`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	var handlers []string
	for _, m := range regexp.MustCompile(`"handler":"([a-z_]+)"`).FindAllSubmatch(out, -1) {
		if h := string(m[1]); !slices.Contains([]string{"subroute", "vars"}, h) {
			handlers = append(handlers, h)
		}
	}
	want := []string{"authentication", "oidc_auth", "scope_authz", "reverse_proxy", "reverse_proxy"}
	if !slices.Equal(handlers, want) {
		t.Fatalf("handler order %q, want %q", handlers, want)
	}
}
