package secret

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestResolveNeverEchoesTheValue(t *testing.T) {
	t.Setenv("SECRET_TEST_SET", "resolved-value")
	repl := caddy.NewReplacer()
	for _, tc := range []struct {
		v, want, errHas, errHasNot string
	}{
		{v: "plain-secret", want: "plain-secret"},
		{v: "{env.SECRET_TEST_SET}", want: "resolved-value"},
		{v: `lit\{eral\}`, want: "lit{eral}"},
		{v: "{env.SECRET_TEST_UNSET}", errHas: "{env.SECRET_TEST_UNSET}"},
		{v: "s3cr{et-part}x", errHas: "not shown", errHasNot: "et-part"},
		{v: "{s3cr3t-in-braces}", errHas: "not shown", errHasNot: "s3cr3t"},
		{v: `{"kty":"EC","d":"privatepart"}`, errHas: "not shown", errHasNot: "privatepart"},
		{v: "{file./no/such/file}", errHas: "{file./no/such/file}"},
		{v: "ab{cd} {ef}", errHas: "not shown", errHasNot: "cd"},
	} {
		got, err := Resolve(repl, "client_secret", tc.v)
		if tc.errHas == "" {
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q) = %q, %v; want %q", tc.v, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.HasPrefix(err.Error(), "client_secret: ") {
			t.Errorf("Resolve(%q) error %v, want one naming %q", tc.v, err, tc.errHas)
		}
		if tc.errHasNot != "" && err != nil && strings.Contains(err.Error(), tc.errHasNot) {
			t.Errorf("Resolve(%q) error %q repeats the value", tc.v, err)
		}
	}
}

func TestArgErr(t *testing.T) {
	d := caddyfile.NewTestDispenser("password correct horse")
	d.Next()
	d.NextArg()
	d.NextArg()
	err := ArgErr(d, "password")
	if strings.Contains(err.Error(), "horse") || !strings.Contains(err.Error(), "password takes exactly one value") {
		t.Fatalf("ArgErr = %v", err)
	}
}
