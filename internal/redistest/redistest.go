// Package redistest runs Debian's redis-server for caddy-bff's tests and
// load benchmark: on 127.0.0.1 only, on a free port, without persistence.
// Server needs no testing.TB (the load benchmark uses it as is); Start and
// StartCluster are the wrappers tests call.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	bin    string
	dir    string
	port   int
	addr   string
	args   []string
	cmd    *exec.Cmd
	paused bool
}

// Binary finds redis-server, or says how to install it.
func Binary() (string, error) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server is not installed (make test installs it: apt-get install -y redis-server)")
	}
	return p, nil
}

// FreePort is a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// New starts a server on a free port keeping its files in dir; args are
// extra redis-server options (--cluster-enabled yes, ...). It returns once
// the server answers PING.
func New(dir string, args ...string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, port: port, addr: "127.0.0.1:" + strconv.Itoa(port), args: args}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// Start (re)starts a stopped server on the same address, empty.
func (s *Server) Start() error {
	if s.cmd != nil {
		return nil
	}
	args := append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(s.port),
		"--save", "", "--appendonly", "no", "--protected-mode", "yes",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}, s.args...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		// A cluster node that is not yet in a cluster still answers PING.
		if err == nil {
			return nil
		}
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	s.Stop()
	return fmt.Errorf("redis-server did not answer on %s:\n%s", s.addr, log)
}

// Stop kills the server (an outage, for a test); Start brings it back.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	if s.paused {
		_ = s.cmd.Process.Signal(syscall.SIGCONT)
		s.paused = false
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open and data
// stays, but nothing answers, as with a hung server or a partition.
func (s *Server) Pause() error {
	if s.cmd == nil {
		return errors.New("redis: Pause of a stopped server")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	s.paused = true
	return nil
}

// Resume undoes Pause.
func (s *Server) Resume() error {
	if s.cmd != nil && s.paused {
		if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			return err
		}
	}
	s.paused = false
	return nil
}

// Client is a new client of the server; close it when done.
func (s *Server) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
}

// Command runs one command and returns its reply as text: a string or
// number as it is, an array's members one per line, nil as "". A Redis
// error reply is an error.
func (s *Server) Command(args ...string) (string, error) {
	c := s.Client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a := make([]any, len(args))
	for i, v := range args {
		a[i] = v
	}
	v, err := c.Do(ctx, a...).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return text(v), nil
}

func text(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = text(e)
		}
		return strings.Join(parts, "\n")
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// Start runs a fresh server for t, stopped at cleanup. Without
// redis-server the test fails in CI (CI=true) and is skipped, loudly,
// elsewhere.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	Require(t)
	s, err := New(t.TempDir(), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Require fails t in CI, or skips it loudly elsewhere, when redis-server
// is missing.
func Require(t testing.TB) {
	t.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skipf("SKIPPED: %v", err)
	}
}

// StartCluster runs a three-master Redis Cluster (no replicas) for t and
// waits until it is ok: keys then live in different hash slots.
func StartCluster(t testing.TB) []*Server {
	t.Helper()
	Require(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is missing (Debian's redis-tools): %v", err)
	}
	var nodes []*Server
	var addrs []string
	for range 3 {
		dir := t.TempDir()
		n, err := New(dir, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Stop)
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ok := true
		for _, n := range nodes {
			info, err := n.Command("CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return nodes
		}
	}
	t.Fatal("the Redis Cluster did not reach cluster_state:ok")
	return nil
}

// Sentinel is a Redis Sentinel deployment of a test: a primary, a replica
// and three sentinels monitoring them as MasterName.
type Sentinel struct {
	Primary, Replica *Server
	Sentinels        []*Server
}

// MasterName is the name the sentinels monitor.
const MasterName = "mymaster"

// StartSentinel runs a primary, a replica of it and three sentinels (quorum
// 2, down after 1s) for t, and waits until every sentinel knows the
// replica.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	Require(t)
	primary := Start(t)
	replica := Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	s := &Sentinel{Primary: primary, Replica: replica}
	for range 3 {
		dir := t.TempDir()
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(dir, "sentinel.conf")
		cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\nsentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
			port, dir, filepath.Join(dir, "redis.log"), MasterName, primary.port, MasterName, MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		bin, _ := Binary()
		sv := &Server{bin: bin, dir: dir, port: port, addr: "127.0.0.1:" + strconv.Itoa(port)}
		cmd := exec.Command(bin, conf, "--sentinel")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting redis-sentinel: %v", err)
		}
		sv.cmd = cmd
		t.Cleanup(sv.Stop)
		s.Sentinels = append(s.Sentinels, sv)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok := true
		for _, sv := range s.Sentinels {
			out, err := sv.Command("SENTINEL", "REPLICAS", MasterName)
			if err != nil || !strings.Contains(out, strconv.Itoa(replica.port)) {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sentinels did not find the replica")
		}
	}
	// The sentinels list a replica before its first sync is done; a test
	// that writes now would wait on a full resync. Wait for the link.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, err := replica.Command("INFO", "replication")
		if err == nil && strings.Contains(out, "master_link_status:up") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never synced with the primary: %v %q", err, out)
		}
	}
}

// Addrs are the sentinels' host:port.
func (s *Sentinel) Addrs() []string {
	var out []string
	for _, sv := range s.Sentinels {
		out = append(out, sv.Addr())
	}
	return out
}

// Master is the address the sentinels give for the master now.
func (s *Sentinel) Master() string {
	out, err := s.Sentinels[0].Command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName)
	if err != nil {
		return ""
	}
	host, port, _ := strings.Cut(out, "\n")
	return host + ":" + port
}

// Failover asks a sentinel to fail over to the replica and waits until
// the sentinels name it the master.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	// A sentinel promotes only a replica in sync it has lately heard of
	// (NOGOODSLAVE until then).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		_, err := s.Sentinels[0].Command("SENTINEL", "FAILOVER", MasterName)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); s.Master() != s.Replica.Addr(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failover: the master is %s", s.Master())
		}
	}
}
