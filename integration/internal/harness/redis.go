package harness

import (
	"testing"

	"github.com/caddy-bff/caddy-bff/internal/redistest"
)

// Redis is a redis-server process of a test (internal/redistest's, the
// one launcher both modules use), with the outage controls failing the
// test instead of returning errors.
type Redis struct {
	*redistest.Server
	t testing.TB
}

// StartRedis runs a fresh redis-server on a free loopback port, stopped on
// t.Cleanup. Without redis-server it fails in CI and skips loudly
// elsewhere.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return &Redis{Server: redistest.Start(t), t: t}
}

// Start restarts a stopped server on the same address, empty.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.Server.Start(); err != nil {
		r.t.Fatal(err)
	}
}

// Pause freezes the server (SIGSTOP): connections stay open and data
// stays, but nothing answers, as with a hung server or a partition.
// Resume thaws it. Cleanup resumes a paused server before stopping it.
func (r *Redis) Pause() {
	r.t.Helper()
	if err := r.Server.Pause(); err != nil {
		r.t.Fatal(err)
	}
}

// Resume undoes Pause.
func (r *Redis) Resume() {
	r.t.Helper()
	if err := r.Server.Resume(); err != nil {
		r.t.Fatal(err)
	}
}

// RedisCluster is a three-master Redis Cluster on loopback (no replicas),
// for tests that must hold on a Cluster: keys in different hash slots.
type RedisCluster struct {
	Nodes []*redistest.Server
}

// StartRedisCluster starts and joins the three nodes.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	return &RedisCluster{Nodes: redistest.StartCluster(t)}
}

// Addrs lists the nodes' host:port.
func (rc *RedisCluster) Addrs() []string {
	var out []string
	for _, n := range rc.Nodes {
		out = append(out, n.Addr())
	}
	return out
}
