// Package redisconf is the one `redis { … }` block of caddy-bff: the
// session store and the rate limiter configure Redis with the same grammar
// and share connection pools across config reloads.
package redisconf

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/internal/metrics"
	"github.com/caddy-bff/caddy-bff/internal/secret"
)

// Defaults.
const (
	DefaultAddress      = "127.0.0.1:6379"
	DefaultKeyPrefix    = "bff:"
	DefaultDialTimeout  = 2 * time.Second
	DefaultReadTimeout  = time.Second
	DefaultOpTimeout    = 2 * time.Second
	defaultPoolSize     = 64
	maxKeyPrefixLength  = 64
	clientNameForServer = "caddy-bff"
)

// Config configures a Redis connection: standalone (one address), Cluster
// (several addresses) or Sentinel (master_name set; the addresses are the
// sentinels'), through go-redis' universal client.
type Config struct {
	// host:port of the server, cluster nodes or sentinels. Default
	// 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`
	// Sentinel: the name of the monitored master.
	MasterName string `json:"master_name,omitempty"`
	// ACL user name (Redis 6+).
	Username string `json:"username,omitempty"`
	// Password; use a placeholder ({env.REDIS_PASSWORD}). It is resolved
	// when the config loads and never written into the autosaved config.
	Password string `json:"password,omitempty"`
	// Database number (standalone and Sentinel only).
	DB int `json:"db,omitempty"`
	// Connect with TLS.
	TLS bool `json:"tls,omitempty"`
	// TLS server name, when it differs from the address's host.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// Prefix of every key caddy-bff writes. Default "bff:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Connect timeout. Default 2s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// Socket read and write timeout. Default 1s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`
}

// UnmarshalCaddyfile reads the block after `redis`:
//
//	redis {
//		address         <host:port...>
//		master_name     <name>
//		username        <user>
//		password        <password>
//		db              <n>
//		tls
//		tls_server_name <name>
//		key_prefix      <prefix>
//		dial_timeout    <duration>
//		read_timeout    <duration>
//	}
//
// The dispenser must be on the `redis` token.
func (c *Config) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for n := d.Nesting(); d.NextBlock(n); {
		name := d.Val()
		if seen[name] {
			return d.Errf("redis: subdirective %q given more than once", name)
		}
		seen[name] = true
		switch name {
		case "address", "addresses":
			c.Addresses = d.RemainingArgs()
			if len(c.Addresses) == 0 {
				return d.ArgErr()
			}
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.TLS = true
		case "db":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("redis: db %q is not a database number", v)
			}
			c.DB = n
		case "dial_timeout", "read_timeout":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("redis: %s: bad duration %q", name, v)
			}
			if name == "dial_timeout" {
				c.DialTimeout = caddy.Duration(dur)
			} else {
				c.ReadTimeout = caddy.Duration(dur)
			}
		case "master_name", "username", "password", "tls_server_name", "key_prefix":
			var v string
			if !d.Args(&v) || d.NextArg() {
				if name == "password" || name == "username" {
					return secret.ArgErr(d, "redis: "+name)
				}
				return d.ArgErr()
			}
			switch name {
			case "master_name":
				c.MasterName = v
			case "username":
				c.Username = v
			case "password":
				c.Password = v
			case "tls_server_name":
				c.TLSServerName = v
			case "key_prefix":
				c.KeyPrefix = v
			}
		default:
			return d.Errf("redis: unrecognized subdirective %q", name)
		}
	}
	return nil
}

// Resolved is a Config with placeholders resolved and defaults applied.
type Resolved struct {
	opts      redis.UniversalOptions
	KeyPrefix string
	// OpTimeout bounds one operation (a request's Redis work fails closed
	// within it).
	OpTimeout time.Duration
	poolKey   string
}

// Resolve applies defaults, resolves placeholders (an unset {env.X} is an
// error) and validates. It makes no network call.
func (c *Config) Resolve() (*Resolved, error) {
	repl := caddy.NewReplacer()
	res := func(what, v string) (string, error) {
		// Errors never repeat a secret's text (see internal/secret).
		out, err := secret.Resolve(repl, what, v)
		if err != nil {
			return "", fmt.Errorf("redis: %w", err)
		}
		return out, nil
	}
	addrs := c.Addresses
	if len(addrs) == 0 {
		addrs = []string{DefaultAddress}
	}
	var err error
	r := &Resolved{KeyPrefix: c.KeyPrefix}
	o := &r.opts
	for i, a := range addrs {
		a, err = res("address", a)
		if err != nil {
			return nil, err
		}
		if _, port, ok := strings.Cut(a, ":"); !ok || port == "" || strings.ContainsAny(a, "/@ ") {
			// A redis:// URL in an address holds the password: name the
			// setting, never the value.
			return nil, fmt.Errorf("redis: address %d of %d is not host:port (the value is not shown; "+
				"a redis:// URL is not accepted: give host:port here and the credentials in username and password)", i+1, len(addrs))
		}
		o.Addrs = append(o.Addrs, a)
	}
	if o.MasterName, err = res("master_name", c.MasterName); err != nil {
		return nil, err
	}
	if o.Username, err = res("username", c.Username); err != nil {
		return nil, err
	}
	if o.Password, err = res("password", c.Password); err != nil {
		return nil, err
	}
	if c.DB != 0 && len(o.Addrs) > 1 && o.MasterName == "" {
		return nil, errors.New("redis: db applies to a single server or Sentinel, not a cluster")
	}
	o.DB = c.DB
	if c.TLS {
		sn, err := res("tls_server_name", c.TLSServerName)
		if err != nil {
			return nil, err
		}
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: sn}
	} else if c.TLSServerName != "" {
		return nil, errors.New("redis: tls_server_name needs tls")
	}
	if r.KeyPrefix == "" {
		r.KeyPrefix = DefaultKeyPrefix
	}
	if len(r.KeyPrefix) > maxKeyPrefixLength || strings.ContainsAny(r.KeyPrefix, " \t\r\n") {
		return nil, fmt.Errorf("redis: key_prefix %q is too long or has white space", r.KeyPrefix)
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 {
		return nil, errors.New("redis: dial_timeout and read_timeout must be positive")
	}
	o.DialTimeout = cmp.Or(time.Duration(c.DialTimeout), DefaultDialTimeout)
	o.ReadTimeout = cmp.Or(time.Duration(c.ReadTimeout), DefaultReadTimeout)
	o.WriteTimeout = o.ReadTimeout
	o.PoolSize = defaultPoolSize
	o.MaxRetries = 1
	o.ClientName = clientNameForServer
	// Don't send CLIENT SETINFO: older servers and proxies reject it.
	o.DisableIdentity = true
	r.OpTimeout = max(DefaultOpTimeout, o.ReadTimeout+o.DialTimeout)

	// Pools are shared by every config that names the same server with the
	// same credentials; the password enters the key only as a hash.
	h := sha256.New()
	fmt.Fprintf(h, "%q|%q|%q|%q|%d|%v|%q|%v|%v", o.Addrs, o.MasterName, o.Username, o.Password, o.DB, c.TLS, c.TLSServerName, o.DialTimeout, o.ReadTimeout)
	r.poolKey = "redis|" + hex.EncodeToString(h.Sum(nil))
	return r, nil
}

var pools = caddy.NewUsagePool()

type pooledClient struct{ redis.UniversalClient }

func (p pooledClient) Destruct() error { return p.Close() }

// Client returns the shared client for this configuration; call release
// (from Cleanup) when done with it. Connections are made lazily, so a Redis
// that is down at start only fails the requests that need it.
func (r *Resolved) Client() (redis.UniversalClient, func(), error) {
	v, _, err := pools.LoadOrNew(r.poolKey, func() (caddy.Destructor, error) {
		opts := r.opts
		return pooledClient{redis.NewUniversalClient(&opts)}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return v.(pooledClient).UniversalClient, func() { _, _ = pools.Delete(r.poolKey) }, nil
}

// Ctx bounds one Redis operation made for a request: it survives the
// client going away mid-write (a half-done logout is worse than a finished
// one) but not OpTimeout.
func (r *Resolved) Ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(parent), r.OpTimeout)
}

// Name is the server as an operator reads it in a readiness check and in
// caddy_bff_redis_up: its address(es), never its credentials.
func (r *Resolved) Name() string {
	n := strings.Join(r.opts.Addrs, ",")
	if r.opts.MasterName != "" {
		n += " (master " + r.opts.MasterName + ")"
	}
	return n
}

// Probe is a readiness check of the server through c: a PING within
// OpTimeout, recorded in caddy_bff_redis_up.
func (r *Resolved) Probe(c redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, r.OpTimeout)
		defer cancel()
		err := c.Ping(ctx).Err()
		metrics.RedisUp(r.Name(), err == nil)
		return err
	}
}

// DB is the database number.
func (r *Resolved) DB() int { return r.opts.DB }
