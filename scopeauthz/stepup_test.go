package scopeauthz

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/oidcauth"
)

func TestParseStepUpRequirements(t *testing.T) {
	for _, tt := range []struct {
		name    string
		tokens  []string
		acr     string
		maxAge  time.Duration // -1: none
		wantErr string
	}{
		{"acr", []string{"payments:write", "acr:mfa"}, "mfa", -1, ""},
		{"max_age", []string{"max_age:10m"}, "", 10 * time.Minute, ""},
		{"both", []string{"acr:urn:mace:incommon:iap:silver", "max_age:0s"}, "urn:mace:incommon:iap:silver", 0, ""},
		{"days", []string{"max_age:1d"}, "", 24 * time.Hour, ""},
		{"no step-up", []string{"payments:write"}, "", -1, ""},

		{"empty acr", []string{"acr:"}, "", 0, "1 to 128 characters"},
		{"acr alternatives", []string{"acr:mfa|pwd"}, "", 0, "acr_levels"},
		{"acr as an alternative", []string{"admin|acr:mfa"}, "", 0, "cannot be an alternative"},
		{"max_age as an alternative", []string{"admin|max_age:1m"}, "", 0, "cannot be an alternative"},
		{"two acrs", []string{"acr:mfa", "acr:hwk"}, "", 0, "more than one acr"},
		{"two max_ages", []string{"max_age:1m", "max_age:2m"}, "", 0, "more than one max_age"},
		{"bad duration", []string{"max_age:soon"}, "", 0, "write a duration"},
		{"negative", []string{"max_age:-1m"}, "", 0, "negative"},
		{"fractional seconds", []string{"max_age:1500ms"}, "", 0, "whole seconds"},
		{"acr with >", []string{"acr:a>b"}, "", 0, "printable ASCII"},
		{"anonymous and acr", []string{"anonymous", "acr:mfa"}, "", 0, "cannot be combined"},
		{"upper-case acr", []string{"ACR:mfa"}, "", 0, "lower case"},
		{"mixed-case max_age", []string{"Max_Age:5m"}, "", 0, "lower case"},
		{"max_age beyond what a login takes", []string{"max_age:4000d"}, "", 0, "at most"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := ParseRequirements(tt.tokens)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			su, ok := rs.StepUp()
			if ok != (tt.acr != "" || tt.maxAge >= 0) || (ok && (su.ACR != tt.acr || su.MaxAge != tt.maxAge)) {
				t.Fatalf("StepUp() = %+v, %v; want acr %q max_age %v", su, ok, tt.acr, tt.maxAge)
			}
		})
	}
}

// Step-up requirements (RFC 9470 semantics) as a script and a browser see
// them: unmet, a script gets 401 insufficient_user_authentication with the
// acr_values, max_age and a login_url that asks for them; a navigation is
// sent to that login; met, the request passes.
func TestStepUp(t *testing.T) {
	cfg := `{"allow": [
		{"methods": ["POST"], "paths": ["/api/payments/*"], "require": ["payments:write", "acr:mfa", "max_age:10m"]},
		{"methods": ["GET"], "paths": ["/payments", "/payments/*"], "require": ["authenticated", "acr:mfa"]}
	]}`
	now := time.Now()
	for _, tt := range []struct {
		name     string
		method   string
		target   string
		acr      string
		authTime time.Time
		scopes   []string
		nav      bool
		anon     bool
		status   int
	}{
		{"met", "POST", "/api/payments/1", "mfa", now.Add(-time.Minute), []string{"payments:write"}, false, false, 204},
		{"weaker acr", "POST", "/api/payments/1", "pwd", now.Add(-time.Minute), []string{"payments:write"}, false, false, 401},
		{"no acr", "POST", "/api/payments/1", "", now.Add(-time.Minute), []string{"payments:write"}, false, false, 401},
		{"too old", "POST", "/api/payments/1", "mfa", now.Add(-11 * time.Minute), []string{"payments:write"}, false, false, 401},
		{"no auth_time", "POST", "/api/payments/1", "mfa", time.Time{}, []string{"payments:write"}, false, false, 401},
		{"scope missing first", "POST", "/api/payments/1", "pwd", now, nil, false, false, 403},
		{"navigation", "GET", "/payments/list?x=1", "pwd", now, nil, true, false, 302},
		{"navigation met", "GET", "/payments/list", "mfa", now, nil, true, false, 204},
		{"anonymous", "POST", "/api/payments/1", "", time.Time{}, nil, false, true, 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := mustLoad(t, json.RawMessage(cfg))
			var u *user
			if !tt.anon {
				u = &user{sub: "alice", scopes: tt.scopes}
			}
			r := newRequest(t, tt.method, tt.target, u)
			if id := oidcauth.IdentityFrom(r); id != nil {
				id.ACR, id.AuthTime = tt.acr, tt.authTime
			}
			r.Header.Set("Referer", "http://portal.example/checkout")
			if tt.nav {
				r.Header.Set("Sec-Fetch-Mode", "navigate")
			} else {
				r.Header.Set("Sec-Fetch-Mode", "cors")
			}
			w, called, p := serve(t, h, r)
			if w.Code != tt.status || called != (tt.status == 204) {
				t.Fatalf("status %d (upstream called %v), want %d; body %s", w.Code, called, tt.status, w.Body)
			}
			switch {
			case tt.status == 302:
				loc, err := url.Parse(w.Header().Get("Location"))
				if err != nil || loc.Path != "/auth/login" || loc.Query().Get("acr_values") != "mfa" ||
					loc.Query().Get("return_to") != tt.target || loc.Query().Has("max_age") {
					t.Fatalf("Location %q: want the login asking acr_values=mfa, returning to %s", w.Header().Get("Location"), tt.target)
				}
			case tt.status == 401 && tt.anon:
				// One login delivers both the session and the step-up.
				if p.Error != "" || !strings.Contains(p.LoginURL, "acr_values=mfa") || !strings.Contains(p.LoginURL, "max_age=600") {
					t.Fatalf("anonymous problem %+v", p)
				}
			case tt.status == 401:
				if p.Error != "insufficient_user_authentication" || p.ACRValues != "mfa" || p.MaxAge == nil || *p.MaxAge != 600 {
					t.Fatalf("problem %+v: want insufficient_user_authentication, acr_values mfa, max_age 600", p)
				}
				login, err := url.Parse(p.LoginURL)
				if err != nil || login.Path != "/auth/login" || login.Query().Get("acr_values") != "mfa" ||
					login.Query().Get("max_age") != "600" || login.Query().Get("return_to") != "/checkout" {
					t.Fatalf("login_url %q", p.LoginURL)
				}
				ch := w.Header().Get("WWW-Authenticate")
				if !strings.HasPrefix(ch, `Bearer error="insufficient_user_authentication"`) || !strings.Contains(ch, `acr_values="mfa"`) || !strings.Contains(ch, "max_age=600") {
					t.Fatalf("WWW-Authenticate %q", ch)
				}
			}
			if tt.status != 204 && tt.status != 403 && !tt.anon {
				e := logs.FilterLoggerName("audit").FilterMessage("authz").All()
				if len(e) != 1 || e[0].ContextMap()["outcome"] != "deny" || !strings.Contains(e[0].ContextMap()["missing"].(string), "acr:mfa") {
					t.Fatalf("audit %+v", e)
				}
			}
		})
	}
}

// Check cannot see the login, so it never admits on step-up terms;
// CheckScopes judges the rest for callers that check StepUp themselves.
func TestCheckFailsClosedOnStepUp(t *testing.T) {
	rs, err := ParseRequirements([]string{"payments:read", "acr:mfa"})
	if err != nil {
		t.Fatal(err)
	}
	if ok, missing := rs.Check(true, []string{"payments:read"}); ok || missing != "acr:mfa" {
		t.Fatalf("Check = %v %q, want false acr:mfa", ok, missing)
	}
	if ok, _ := rs.CheckScopes(true, []string{"payments:read"}); !ok {
		t.Fatal("CheckScopes refused a user with the scope")
	}
	if ok, missing := rs.CheckScopes(true, nil); ok || missing != "payments:read" {
		t.Fatalf("CheckScopes = %v %q without the scope", ok, missing)
	}
}
