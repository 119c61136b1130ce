package scopeauthz

import (
	"slices"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/oidcauth"
)

func TestParseRequirements(t *testing.T) {
	for _, tt := range []struct {
		name    string
		tokens  []string
		wantErr string
	}{
		{"scope", []string{"recipes:read"}, ""},
		{"alternatives", []string{"recipes:read|admin"}, ""},
		{"several", []string{"authenticated", "recipes:write", "a|b|c"}, ""},
		{"anonymous", []string{"anonymous"}, ""},
		{"url scope", []string{"https://api.example/recipes.read"}, ""},
		{"printable ascii", []string{"a!#$%&'()*+,-.:;<=>?@[]^_`{}~"}, ""},

		{"none", nil, "no requirement"},
		{"empty token", []string{""}, "empty requirement"},
		{"empty alternative", []string{"a||b"}, "empty alternative"},
		{"leading bar", []string{"|a"}, "empty alternative"},
		{"trailing bar", []string{"a|"}, "empty alternative"},
		{"bar alone", []string{"|"}, "empty alternative"},
		{"anonymous combined", []string{"anonymous", "admin"}, "cannot be combined"},
		{"anonymous after", []string{"admin", "anonymous"}, "cannot be combined"},
		{"anonymous alternative", []string{"admin|anonymous"}, "anonymous cannot be an alternative"},
		{"authenticated alternative", []string{"authenticated|admin"}, "authenticated cannot be an alternative"},
		{"star", []string{"*"}, "use anonymous or authenticated"},
		{"path", []string{"/api/me"}, "looks like a path pattern"},
		{"space", []string{"a b"}, `character ' '`},
		{"quote", []string{`a"b`}, "not allowed in a scope"},
		{"backslash", []string{`a\b`}, "not allowed in a scope"},
		{"control", []string{"a\x00"}, "not allowed in a scope"},
		{"non-ascii", []string{"rôle"}, "not allowed in a scope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := ParseRequirements(tt.tokens)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			case err == nil && rs.String() != strings.Join(tt.tokens, " "):
				t.Fatalf("String() = %q, want the tokens back", rs.String())
			}
		})
	}
}

func TestCheck(t *testing.T) {
	alice := &oidcauth.Identity{Subject: "alice"}
	for _, tt := range []struct {
		name        string
		reqs        []string
		id          *oidcauth.Identity
		scopes      []string
		wantOK      bool
		wantMissing string
	}{
		{"scope held", []string{"read"}, alice, []string{"read"}, true, ""},
		{"scope missing", []string{"read"}, alice, []string{"write"}, false, "read"},
		{"no scopes", []string{"read"}, alice, nil, false, "read"},
		{"anonymous user, scope", []string{"read"}, nil, []string{"read"}, false, "read"},
		{"either, first", []string{"read|admin"}, alice, []string{"read"}, true, ""},
		{"either, second", []string{"read|admin"}, alice, []string{"admin"}, true, ""},
		{"either, neither", []string{"read|admin"}, alice, []string{"write"}, false, "read|admin"},
		{"all held", []string{"read", "write"}, alice, []string{"write", "read"}, true, ""},
		{"second missing", []string{"read", "write"}, alice, []string{"read"}, false, "write"},
		{"authenticated, user", []string{"authenticated"}, alice, nil, true, ""},
		{"authenticated, anonymous", []string{"authenticated"}, nil, nil, false, "authenticated"},
		{"anonymous, anonymous", []string{"anonymous"}, nil, nil, true, ""},
		{"anonymous, user", []string{"anonymous"}, alice, nil, true, ""},
		{"prefix is not a scope", []string{"read"}, alice, []string{"reader", "rea"}, false, "read"},
		{"case matters", []string{"read"}, alice, []string{"READ"}, false, "read"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := ParseRequirements(tt.reqs)
			if err != nil {
				t.Fatal(err)
			}
			ok, missing := rs.Check(tt.id != nil, tt.scopes)
			if ok != tt.wantOK || missing != tt.wantMissing {
				t.Fatalf("Check = %v, %q; want %v, %q", ok, missing, tt.wantOK, tt.wantMissing)
			}
		})
	}
	t.Run("zero value admits no one", func(t *testing.T) {
		var rs Requirements
		if ok, _ := rs.Check(true, []string{"read"}); ok {
			t.Fatal("zero Requirements admitted a user")
		}
		if ok, _ := rs.Check(false, nil); ok {
			t.Fatal("zero Requirements admitted anonymous")
		}
	})
}

func TestScopesFrom(t *testing.T) {
	claims := map[string]any{
		"scope":        "openid  profile\trecipes:read ",
		"roles":        []any{"admin", 42, "", "editor"},
		"groups":       []string{"g1", "g2"},
		"realm_access": map[string]any{"roles": []any{"realm-admin"}},
		"resource":     map[string]any{"api": map[string]any{"scope": "deep"}},
		"flat.dotted":  "top level wins",
		"flat":         map[string]any{"dotted": "nested"},
		"number":       7,
	}
	id := &oidcauth.Identity{Subject: "alice", Claims: claims, Scopes: []string{"from-identity"}}
	for _, tt := range []struct {
		name, claim string
		id          *oidcauth.Identity
		want        []string
	}{
		{"string claim", "scope", id, []string{"openid", "profile", "recipes:read"}},
		{"default claim", "", id, []string{"openid", "profile", "recipes:read"}},
		{"array claim", "roles", id, []string{"admin", "editor"}},
		{"string array", "groups", id, []string{"g1", "g2"}},
		{"nested", "realm_access.roles", id, []string{"realm-admin"}},
		{"deeply nested", "resource.api.scope", id, []string{"deep"}},
		{"top-level dotted name", "flat.dotted", id, []string{"top", "level", "wins"}},
		{"absent", "nope", id, nil},
		{"absent nested", "realm_access.nope", id, nil},
		{"wrong type", "number", id, nil},
		{"object", "realm_access", id, nil},
		{"anonymous", "scope", nil, nil},
		{"scope absent: Identity.Scopes", "scope", &oidcauth.Identity{Scopes: []string{"x", "y"}}, []string{"x", "y"}},
		{"other claim absent: nothing", "roles", &oidcauth.Identity{Scopes: []string{"x"}}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var userClaims map[string]any
			var granted []string
			if tt.id != nil {
				userClaims, granted = tt.id.Claims, tt.id.Scopes
			}
			got := ScopesFrom(userClaims, granted, tt.claim)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ScopesFrom = %q, want %q", got, tt.want)
			}
			// The allocation-free set agrees with the slice.
			set := scopesOf(userClaims, granted, tt.claim)
			for _, s := range append(slices.Clone(tt.want), "absent", "") {
				if set.has(s) != slices.Contains(got, s) {
					t.Fatalf("has(%q) = %v, ScopesFrom disagrees", s, set.has(s))
				}
			}
		})
	}
}
