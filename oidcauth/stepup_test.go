package oidcauth

import (
	"net/url"
	"testing"
	"time"
)

func TestACRRanking(t *testing.T) {
	h := &Handler{ACRLevels: []string{"phr", "mfa", "pwd"}}
	for _, tt := range []struct {
		have, want string
		ok         bool
	}{
		{"mfa", "mfa", true},
		{"phr", "mfa", true},
		{"mfa", "phr", false},
		{"pwd", "mfa", false},
		{"other", "other", true},
		{"other", "pwd", false},
		{"phr", "other", false},
		{"", "pwd", false},
	} {
		id := &Identity{ACR: tt.have, handler: h}
		if got := id.MeetsACR(tt.want); got != tt.ok {
			t.Errorf("acr %q meets %q = %v, want %v", tt.have, tt.want, got, tt.ok)
		}
	}
	// Without acr_levels only equality counts.
	if (&Identity{ACR: "phr"}).MeetsACR("mfa") {
		t.Error("an unranked acr met another value")
	}
}

// The callback's check: a provider that ignored acr_values or max_age does
// not satisfy them.
func TestStepUpDelivered(t *testing.T) {
	h := &Handler{ACRLevels: []string{"mfa", "pwd"}}
	start := time.Unix(1_800_000_000, 0)
	ls := func(acr []string, maxAge int64) *loginState {
		s := &loginState{Expires: start.Add(loginTTL).Unix(), ACR: acr}
		if maxAge >= 0 {
			s.MaxAge = &maxAge
		}
		return s
	}
	for _, tt := range []struct {
		name     string
		ls       *loginState
		acr      string
		authTime time.Time
		ok       bool
	}{
		{"nothing asked", ls(nil, -1), "", time.Time{}, true},
		{"acr delivered", ls([]string{"mfa"}, -1), "mfa", time.Time{}, true},
		{"stronger delivered", ls([]string{"pwd"}, -1), "mfa", time.Time{}, true},
		{"one of several", ls([]string{"hwk", "mfa"}, -1), "mfa", time.Time{}, true},
		{"weaker delivered", ls([]string{"mfa"}, -1), "pwd", time.Time{}, false},
		{"no acr", ls([]string{"mfa"}, -1), "", time.Time{}, false},
		{"fresh enough", ls(nil, 300), "", start.Add(-299 * time.Second), true},
		{"within leeway", ls(nil, 0), "", start.Add(-5 * time.Second), true},
		{"too old", ls(nil, 300), "", start.Add(-time.Hour), false},
		{"max_age 0, old login", ls(nil, 0), "", start.Add(-time.Minute), false},
		{"no auth_time", ls(nil, 300), "", time.Time{}, false},
		{"both, acr missing", ls([]string{"mfa"}, 300), "pwd", start, false},
		{"max_age 0, fresh", ls(nil, 0), "", start.Add(time.Second), true},
	} {
		if got := h.stepUpDelivered(tt.ls, tt.acr, tt.authTime); got != tt.ok {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestLoginStepUpParameters(t *testing.T) {
	for _, tt := range []struct {
		query  string
		acr    int
		maxAge int64
		ok     bool
	}{
		{"", 0, -1, true},
		{"acr_values=mfa+hwk", 2, -1, true},
		{"max_age=0", 0, 0, true},
		{"max_age=600&acr_values=mfa", 1, 600, true},
		{"acr_values=", 0, 0, false},
		{"acr_values=a%7Cb", 0, 0, false},
		{"max_age=", 0, 0, false},
		{"max_age=+5", 0, 0, false},
		{"max_age=05", 0, 0, false},
		{"max_age=-1", 0, 0, false},
		{"max_age=999999999", 0, 0, false},
		{"max_age=1&max_age=1", 0, 0, false},
		{"acr_values=a&acr_values=b", 0, 0, false},
	} {
		q, _ := url.ParseQuery(tt.query)
		acr, maxAge, ok := loginStepUp(q)
		if ok != tt.ok || (ok && (len(acr) != tt.acr || maxAge != tt.maxAge)) {
			t.Errorf("%q: %v %d %v, want %d values, max_age %d, ok %v", tt.query, acr, maxAge, ok, tt.acr, tt.maxAge, tt.ok)
		}
	}
}

func TestStepUpPrompt(t *testing.T) {
	for _, tt := range []struct {
		prompt   string
		addLogin bool
		want     string
		changed  bool
	}{
		{"", false, "", false},
		{"", true, "login", true},
		{"consent", true, "login consent", true},
		{"none", false, "", true},
		{"none", true, "login", true},
		{"consent", false, "consent", false},
		{"login consent", true, "login consent", false},
	} {
		h := &Handler{Prompt: tt.prompt}
		if got, changed := h.stepUpPrompt(tt.addLogin); got != tt.want || changed != tt.changed {
			t.Errorf("prompt %q, addLogin %v: %q %v, want %q %v", tt.prompt, tt.addLogin, got, changed, tt.want, tt.changed)
		}
	}
}
