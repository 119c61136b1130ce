package caddybff

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"
)

// An application that needs a step-up is listed with what opening it
// takes, until the session has it; its other requirements still hide it.
func TestAppsStepUp(t *testing.T) {
	h := mustLoadApps(t, map[string]any{"applications": []map[string]any{
		{"name": "home", "entry": "/mfe/home.js", "route": "/"},
		{"name": "payments", "title": "Payments", "entry": "/mfe/payments.js", "route": "/payments",
			"require": "payments:read acr:mfa max_age:10m"},
	}})
	type stepUp struct {
		ACRValues string `json:"acr_values"`
		MaxAge    *int64 `json:"max_age"`
		LoginURL  string `json:"login_url"`
	}
	for _, tt := range []struct {
		name   string
		s      *session
		listed bool
		stepUp bool
	}{
		{"anonymous", nil, false, false},
		{"no scope", &session{key: "k", subject: "u", acr: "mfa", authTime: time.Now()}, false, false},
		{"scope, weak login", &session{key: "k", subject: "u", scopes: []string{"payments:read"}, acr: "pwd", authTime: time.Now()}, true, true},
		{"scope, old login", &session{key: "k", subject: "u", scopes: []string{"payments:read"}, acr: "mfa", authTime: time.Now().Add(-time.Hour)}, true, true},
		{"scope, step-up done", &session{key: "k", subject: "u", scopes: []string{"payments:read"}, acr: "mfa", authTime: time.Now()}, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			app := getApps(t, h, tt.s).app("payments")
			if (app != nil) != tt.listed {
				t.Fatalf("payments listed = %v, want %v", app != nil, tt.listed)
			}
			raw, has := app["step_up"]
			if has != tt.stepUp {
				t.Fatalf("step_up present = %v, want %v: %s", has, tt.stepUp, raw)
			}
			if !has {
				return
			}
			var su stepUp
			if err := json.Unmarshal(raw, &su); err != nil {
				t.Fatal(err)
			}
			lu, err := url.Parse(su.LoginURL)
			if su.ACRValues != "mfa" || su.MaxAge == nil || *su.MaxAge != 600 || err != nil ||
				lu.Query().Get("acr_values") != "mfa" || lu.Query().Get("max_age") != "600" || lu.Query().Get("return_to") != "/payments" {
				t.Fatalf("step_up %s", raw)
			}
		})
	}
}
