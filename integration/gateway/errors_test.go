package gateway

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// exampleHandleErrors returns Caddyfile.example's own handle_errors block,
// so that the test proves the block operators copy.
func exampleHandleErrors(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	start := -1
	for _, line := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "handle_errors") {
			start = strings.Index(s, line)
			break
		}
	}
	if start < 0 {
		t.Fatal("Caddyfile.example has no handle_errors block")
	}
	depth := 0
	for i := start; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[start : i+1]
			}
		}
	}
	t.Fatal("Caddyfile.example: unbalanced handle_errors block")
	return ""
}

// Upstream failures are problem+json with the request id, rendered by
// Caddyfile.example's handle_errors: 502 when the service is down (a closed
// port), 504 when it does not answer in time; nothing about the upstream
// (address, Go error text) or the token leaks to the browser.
func TestUpstreamErrors(t *testing.T) {
	bin := harness.MustBuildCaddy(t)
	op := startOP(t, 0)
	up := harness.NewUpstream(t)
	up.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Second)
	}))
	closed := harness.FreeAddr(t) // nothing listens there
	addr := harness.FreeAddr(t)
	g := &gw{t: t, op: op, up: up, addr: addr, base: "http://" + addr, bin: bin}
	g.cfg = harness.Caddyfile(fmt.Sprintf(`http://%[1]s {
	log {
		output stderr
		format json
	}
	oidc_auth {
		issuer %[2]s
		client_id bff
		client_secret {env.OIDC_CLIENT_SECRET}
		scopes openid profile email offline_access recipes:read
		public /status/* /slow/*
		session {
			keys {env.SESSION_KEY}
		}
	}
	handle /api/* {
		bff_token {
			mode mint
			audience test-api
			issuer http://%[1]s
			signing_key %[5]s
		}
		reverse_proxy %[3]s
	}
	handle /status/* {
		reverse_proxy %[3]s
	}
	handle /slow/* {
		reverse_proxy %[4]s {
			transport http {
				response_header_timeout 500ms
			}
		}
	}
	handle /welcome {
		respond "welcome"
	}

	%[6]s
}
`, addr, op.Issuer(), closed, up.Addr(), writeSigningKey(t), exampleHandleErrors(t)))
	g.env = []string{"OIDC_CLIENT_SECRET=" + op.ClientSecret(), "SESSION_KEY=" + sessionKeyA}
	g.caddy = harness.StartCaddy(t, bin, g.cfg, g.env...)
	admin := g.admin()

	for _, tc := range []struct {
		name   string
		c      *http.Client
		path   string
		reqID  string
		status int
		title  string
	}{
		{"service down, anonymous", bare(), "/status/x", "", 502, "Bad Gateway"},
		{"service down, given request id", bare(), "/status/x", "client-chosen-id.42", 502, "Bad Gateway"},
		{"service down, logged in", admin, "/api/recipes", "", 502, "Bad Gateway"},
		{"service too slow", bare(), "/slow/x", "", 504, "Gateway Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Accept": "application/json"}
			if tc.reqID != "" {
				hdr["X-Request-ID"] = tc.reqID
			}
			r := do(t, tc.c, "GET", g.base+tc.path, hdr)
			if r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, tc.status, r.body)
			}
			p := r.problem(t)
			id, _ := p["request_id"].(string)
			if strings.ContainsAny(id, "{}") || id != r.Header.Get("X-Request-ID") {
				t.Errorf("request_id %q, X-Request-ID header %q", id, r.Header.Get("X-Request-ID"))
			}
			if tc.reqID != "" && id != tc.reqID {
				t.Errorf("request_id %q, want the client's %q", id, tc.reqID)
			}
			if p["title"] != tc.title || p["type"] != "about:blank" {
				t.Errorf("problem %s: want title %q, type about:blank", r.body, tc.title)
			}
			for _, leak := range []string{closed, up.Addr(), "dial", "timeout", "eyJ", "{"} {
				if strings.Contains(r.body[1:], leak) {
					t.Errorf("the problem body reveals %q: %s", leak, r.body)
				}
			}
			// The access log has the failure under the same request id.
			g.caddy.WaitLog(`"request_id":"`+id+`"`, 5*time.Second)
			found := false
			for _, e := range g.caddy.LogEntries() {
				if e["request_id"] == id && strings.HasPrefix(fmt.Sprint(e["logger"]), "http.log.access") {
					found = e["status"] == float64(tc.status)
				}
			}
			if !found {
				t.Errorf("no access log entry with request_id %s and status %d", id, tc.status)
			}
		})
	}
}
