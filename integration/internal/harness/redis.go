package harness

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Redis is a redis-server process of a test, on 127.0.0.1 only, with no
// persistence.
type Redis struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string
	dir    string
	bin    string
	port   int
	paused bool
}

// RedisBinary finds Debian's redis-server. In CI (CI=true) a missing
// server fails the test; elsewhere the test is skipped, loudly.
func RedisBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not installed (make test installs it: apt-get install -y redis-server)")
		}
		t.Skipf("SKIPPED: redis-server is not installed; run `make deps` (apt-get install -y redis-server) to run this test")
	}
	return p
}

// StartRedis runs a fresh redis-server on a free loopback port, stopped on
// t.Cleanup.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: RedisBinary(t), dir: t.TempDir(), port: FreePort(t)}
	r.addr = fmt.Sprintf("127.0.0.1:%d", r.port)
	r.start()
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	r.cmd = exec.Command(r.bin,
		"--bind", "127.0.0.1", "--port", fmt.Sprint(r.port), "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "yes", "--logfile", filepath.Join(r.dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r.ping() == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	r.t.Fatalf("redis-server did not answer on %s:\n%s", r.addr, log)
}

func (r *Redis) ping() error {
	c, err := net.DialTimeout("tcp", r.addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

// Addr is host:port.
func (r *Redis) Addr() string { return r.addr }

// Stop kills the server (an outage); Start brings it back on the same
// port, empty.
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		if r.paused {
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			r.paused = false
		}
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Pause freezes the server (SIGSTOP): connections stay open and data
// stays, but nothing answers, as with a hung server or a partition.
// Resume thaws it. Cleanup resumes a paused server before stopping it.
func (r *Redis) Pause() {
	r.t.Helper()
	if r.cmd == nil || r.cmd.Process == nil {
		r.t.Fatal("redis: Pause of a stopped server")
	}
	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		r.t.Fatalf("redis: pause: %v", err)
	}
	r.paused = true
}

// Resume undoes Pause.
func (r *Redis) Resume() {
	r.t.Helper()
	if r.cmd != nil && r.cmd.Process != nil && r.paused {
		if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			r.t.Fatalf("redis: resume: %v", err)
		}
	}
	r.paused = false
}

// Start restarts a stopped server on the same address.
func (r *Redis) Start() {
	r.t.Helper()
	if r.cmd == nil {
		r.start()
	}
}

// Command runs one command with redis-cli semantics over RESP and returns
// the raw first reply line (for simple assertions like DBSIZE or KEYS).
func (r *Redis) Command(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	// Arrays: join the bulk strings with newlines.
	if strings.HasPrefix(line, "*") {
		var n int
		fmt.Sscanf(line[1:], "%d", &n)
		var out []string
		for i := 0; i < n; i++ {
			hdr, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(hdr, "$") {
				v, err := br.ReadString('\n')
				if err != nil {
					return "", err
				}
				out = append(out, strings.TrimRight(v, "\r\n"))
			}
		}
		return strings.Join(out, "\n"), nil
	}
	if strings.HasPrefix(line, "$") {
		if line == "$-1" {
			return "", nil
		}
		var n int
		fmt.Sscanf(line[1:], "%d", &n)
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

// RedisCluster is a three-master Redis Cluster on loopback (no replicas),
// for tests that must hold on a Cluster: keys in different hash slots.
type RedisCluster struct {
	Nodes []*Redis
}

// StartRedisCluster starts three redis-server nodes in cluster mode and
// joins them with redis-cli --cluster create.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	bin := RedisBinary(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is missing (Debian's redis-tools): %v", err)
	}
	rc := &RedisCluster{}
	var addrs []string
	for range 3 {
		n := &Redis{t: t, bin: bin, dir: t.TempDir(), port: FreePort(t)}
		n.addr = fmt.Sprintf("127.0.0.1:%d", n.port)
		n.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", fmt.Sprint(n.port), "--save", "", "--appendonly", "no",
			"--dir", n.dir, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(n.dir, "nodes.conf"),
			"--cluster-node-timeout", "2000", "--logfile", filepath.Join(n.dir, "redis.log"))
		if err := n.cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		t.Cleanup(n.Stop)
		deadline := time.Now().Add(10 * time.Second)
		for n.ping() != nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		rc.Nodes = append(rc.Nodes, n)
		addrs = append(addrs, n.addr)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, n := range rc.Nodes {
			info, err := n.Command("CLUSTER", "INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return rc
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the Redis Cluster did not reach cluster_state:ok")
	return nil
}

// Addrs lists the nodes' host:port.
func (rc *RedisCluster) Addrs() []string {
	var out []string
	for _, n := range rc.Nodes {
		out = append(out, n.addr)
	}
	return out
}
