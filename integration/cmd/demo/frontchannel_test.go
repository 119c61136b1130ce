package main

import (
	"html"
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
	"github.com/caddy-bff/caddy-bff/integration/internal/testop"
)

// The demo's provider frames the demo gateway's front-channel logout URI
// on its logout page, and what the frame loads ends the session.
func TestDemoFrontchannelLogout(t *testing.T) {
	d := startDemo(t, true)
	gw := "http://" + d.o.gatewayAddr
	c := harness.NewClient(t)
	resp := harness.Login(t, c, gw+"/auth/login?return_to=/", testop.ReaderUsername, testop.ReaderPassword)
	resp.Body.Close()
	if code, _ := getJSON(t, c, gw+"/auth/user?touch=false"); code != http.StatusOK {
		t.Fatalf("/auth/user after login: %d", code)
	}
	resp, err := c.Get(d.op.Issuer() + testop.FrontchannelLogoutPath)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`<iframe src="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("the provider's logout page frames nothing:\n%s", page)
	}
	// What the browser would load in the frame.
	frame, err := c.Get(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatal(err)
	}
	frame.Body.Close()
	if frame.StatusCode != http.StatusOK || frame.Request.URL.Host != d.o.gatewayAddr {
		t.Fatalf("the frame: %d from %s", frame.StatusCode, frame.Request.URL.Host)
	}
	if code, _ := getJSON(t, c, gw+"/auth/user?touch=false"); code != http.StatusUnauthorized {
		t.Fatalf("/auth/user after the provider's logout page: %d, want 401", code)
	}
}
