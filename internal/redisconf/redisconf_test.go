package redisconf

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalAndResolve(t *testing.T) {
	t.Setenv("BFF_TEST_REDIS_PW", "s3cret-pw")
	for _, tc := range []struct {
		name, block, err string
	}{
		{"defaults", "redis", ""},
		{"full", "redis {\n address 10.0.0.1:6379\n username u\n password {env.BFF_TEST_REDIS_PW}\n db 2\n tls\n tls_server_name r.example\n key_prefix app:\n dial_timeout 1s\n read_timeout 500ms\n}", ""},
		{"cluster", "redis {\n address 10.0.0.1:7000 10.0.0.2:7000\n}", ""},
		{"sentinel", "redis {\n address 10.0.0.1:26379\n master_name mymaster\n db 1\n}", ""},
		{"unknown", "redis {\n hostname x\n}", `unrecognized subdirective "hostname"`},
		{"twice", "redis {\n db 1\n db 2\n}", `"db" given more than once`},
		{"bad db", "redis {\n db -1\n}", "not a database number"},
		{"bad duration", "redis {\n read_timeout soon\n}", "read_timeout: bad duration"},
		{"arg", "redis 127.0.0.1:6379", "wrong argument count"},
		{"no port", "redis {\n address localhost\n}", "is not host:port"},
		{"url", "redis {\n address redis://x:6379/0\n}", "is not host:port"},
		{"url with password", "redis {\n address rediss://default:s3cret-pw@x:6379\n}", "the value is not shown"},
		{"db on cluster", "redis {\n address a:1 b:2\n db 3\n}", "not a cluster"},
		{"sni without tls", "redis {\n tls_server_name x\n}", "needs tls"},
		{"unset password", "redis {\n password {env.BFF_TEST_UNSET_PW_XYZ}\n}", "BFF_TEST_UNSET_PW_XYZ"},
		{"prefix space", "redis {\n key_prefix \"a b\"\n}", "key_prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tc.block)
			d.Next()
			var c Config
			err := c.UnmarshalCaddyfile(d)
			var r *Resolved
			if err == nil {
				r, err = c.Resolve()
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if r.KeyPrefix == "" || r.OpTimeout <= 0 || len(r.opts.Addrs) == 0 {
					t.Fatalf("defaults not applied: %+v", r)
				}
				if strings.Contains(r.poolKey, "s3cret-pw") {
					t.Fatal("the password is in the pool key")
				}
				return
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
				t.Fatalf("the error repeats the password: %v", err)
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestPoolKeyDistinguishesCredentials(t *testing.T) {
	a, _ := (&Config{Password: "one"}).Resolve()
	b, _ := (&Config{Password: "two"}).Resolve()
	c, _ := (&Config{Password: "one"}).Resolve()
	if a.poolKey == b.poolKey || a.poolKey != c.poolKey {
		t.Fatal("pools must be shared by equal settings and only by them")
	}
}
