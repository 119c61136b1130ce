package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveBuild()
	os.Exit(code)
}

func TestCaddyfileHelper(t *testing.T) {
	got := Caddyfile("example.com {\n}\n", "order a before b")
	for _, want := range []string{"admin off", "auto_https off", "format json", "\torder a before b\n}\n\nexample.com {"} {
		if !strings.Contains(got, want) {
			t.Errorf("Caddyfile() lacks %q:\n%s", want, got)
		}
	}
}

func TestStartCaddyAndUpstream(t *testing.T) {
	bin := MustBuildCaddy(t)
	up := NewUpstream(t)
	addr := FreeAddr(t)
	c := StartCaddy(t, bin, Caddyfile(fmt.Sprintf(`http://%s {
	handle /hello {
		respond "hello {env.GREETING}"
	}
	reverse_proxy %s
}
`, addr, up.Addr())), "GREETING=world")

	resp, err := http.Get("http://" + addr + "/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello world" {
		t.Errorf("GET /hello = %q, want the env placeholder expanded", b)
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/a%2Fb/c?x=1", nil)
	req.Header.Set("Authorization", "Bearer abc")
	req.AddCookie(&http.Cookie{Name: "k", Value: "v"})
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var echo map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&echo)
	resp.Body.Close()
	if echo["authorization"] != true || echo["method"] != "GET" {
		t.Errorf("upstream echo = %v", echo)
	}
	last, ok := up.Last()
	if !ok || last.BearerToken() != "abc" || last.RawPath != "/a%2Fb/c" || last.Query != "x=1" ||
		len(last.Cookies) != 1 || last.Cookies[0].Value != "v" {
		t.Errorf("recorded %+v", last)
	}
	up.Reset()
	if len(up.Requests()) != 0 {
		t.Error("Reset kept requests")
	}

	if !c.WaitLog(`"msg":"upstream roundtrip"`, 5*time.Second) {
		t.Errorf("no debug log of the proxied request:\n%s", c.Logs())
	}
	if len(c.LogEntries()) == 0 {
		t.Error("no JSON log entries parsed")
	}
	c.Stop()
	if !c.Exited() {
		t.Error("caddy still running after Stop")
	}
}

func TestStartCaddyBadConfigFails(t *testing.T) {
	bin := MustBuildCaddy(t)
	out, err := Validate(bin, Caddyfile("http://127.0.0.1:1 {\n\tno_such_directive\n}\n"))
	if err == nil || !strings.Contains(out, "no_such_directive") {
		t.Errorf("Validate of a bad config: err %v, output:\n%s", err, out)
	}
	out, err = Validate(bin, Caddyfile("http://127.0.0.1:1 {\n\trespond ok\n}\n"))
	if err != nil {
		t.Errorf("Validate of a good config: %v\n%s", err, out)
	}
}
