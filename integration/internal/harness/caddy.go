// Package harness runs the gateway for end-to-end tests: it builds the
// project's Caddy binary once per test process, starts it on a Caddyfile
// with isolated state directories, captures its logs, and offers a
// recording upstream, free ports and a browser-like login.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RootModule is the module path of the plugin; BuildCaddy builds its cmd/caddy.
const RootModule = "github.com/caddy-bff/caddy-bff"

// BinEnv names an environment variable that, when set, points at a
// prebuilt caddy binary that BuildCaddy returns instead of building.
const BinEnv = "CADDY_BFF_BIN"

// StartTimeout bounds how long StartCaddy waits for Caddy to serve.
const StartTimeout = 30 * time.Second

var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// BuildCaddy builds the project's ./cmd/caddy (from the root module,
// located through this module's replace directive) into a temporary
// directory, once per process, reusing Go's build cache. Under `go test
// -race` it builds with -race as well, and a Caddy that reports a data
// race fails its test (see Caddy.Stop). Usable from TestMain; RemoveBuild
// deletes the result.
func BuildCaddy() (string, error) {
	build.once.Do(func() {
		if bin := os.Getenv(BinEnv); bin != "" {
			build.path, build.err = filepath.Abs(bin)
			return
		}
		root, err := rootDir()
		if err != nil {
			build.err = err
			return
		}
		dir, err := os.MkdirTemp("", "caddy-bff-build-")
		if err != nil {
			build.err = err
			return
		}
		build.dir = dir
		out := filepath.Join(dir, "caddy")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		args := []string{"build", "-o", out}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/caddy")...)
		cmd.Dir = root
		// Build the plugin's own module as users do, not within this
		// module's workspace or go.mod.
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/caddy in %s: %w\n%s", root, err, b)
			return
		}
		build.path = out
	})
	return build.path, build.err
}

// MustBuildCaddy is BuildCaddy that fails the test on error.
func MustBuildCaddy(t testing.TB) string {
	t.Helper()
	bin, err := BuildCaddy()
	if err != nil {
		t.Fatalf("building caddy: %v", err)
	}
	return bin
}

// RemoveBuild deletes the directory BuildCaddy built into (not a binary
// given through CADDY_BFF_BIN). Call it at the end of TestMain.
func RemoveBuild() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

// rootDir finds the plugin module's directory: the local replace
// directive of the current module (integration/go.mod points it at the
// repository root), else wherever the go command resolves the module.
func rootDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
		edit, err := exec.Command("go", "mod", "edit", "-json", gomod).Output()
		if err != nil {
			return "", fmt.Errorf("go mod edit -json %s: %w", gomod, err)
		}
		var mf struct {
			Replace []struct {
				Old, New struct{ Path, Version string }
			}
		}
		if err := json.Unmarshal(edit, &mf); err != nil {
			return "", fmt.Errorf("reading %s: %w", gomod, err)
		}
		for _, r := range mf.Replace {
			if r.Old.Path == RootModule && r.New.Version == "" {
				dir := r.New.Path
				if !filepath.IsAbs(dir) {
					dir = filepath.Join(filepath.Dir(gomod), dir)
				}
				return filepath.Clean(dir), nil
			}
		}
	}
	out, err = exec.Command("go", "list", "-m", "-f", "{{.Dir}}", RootModule).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m %s: %w: %s", RootModule, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s: %w", RootModule, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("go list -m %s: no directory", RootModule)
	}
	return dir, nil
}

// GlobalOptions is the standard global options block for tests: no admin
// endpoint, no automatic HTTPS, listeners on 127.0.0.1 only, debug logs as
// JSON on stderr.
const GlobalOptions = `{
	admin off
	auto_https off
	default_bind 127.0.0.1
	log {
		level DEBUG
		output stderr
		format json
	}
}
`

// Caddyfile prepends GlobalOptions, with any extra global options lines
// (e.g. "order x before y") added inside the block, to site.
func Caddyfile(site string, extraGlobals ...string) string {
	g := GlobalOptions
	if len(extraGlobals) > 0 {
		g = strings.TrimSuffix(g, "}\n") + "\t" + strings.Join(extraGlobals, "\n\t") + "\n}\n"
	}
	return g + "\n" + site
}

// isolatedEnv returns the process environment with HOME and the XDG
// directories moved under dir, so Caddy's data, config and autosave stay
// out of the user's, plus extra ("K=V").
func isolatedEnv(dir string, extra []string) ([]string, error) {
	moved := map[string]string{
		"HOME":            filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME": filepath.Join(dir, "config"),
		"XDG_DATA_HOME":   filepath.Join(dir, "data"),
		"XDG_CACHE_HOME":  filepath.Join(dir, "cache"),
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := moved[k]; !ok {
			env = append(env, kv)
		}
	}
	for k, v := range moved {
		if err := os.MkdirAll(v, 0o700); err != nil {
			return nil, err
		}
		env = append(env, k+"="+v)
	}
	return append(env, extra...), nil
}

// syncBuffer is a bytes.Buffer safe for the process's writers and the test's readers.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	cond *sync.Cond
}

func newSyncBuffer() *syncBuffer {
	b := &syncBuffer{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	b.cond.Broadcast()
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Caddy is a running Caddy process.
type Caddy struct {
	t    testing.TB
	cmd  *exec.Cmd
	dir  string
	file string
	logs *syncBuffer

	done    chan struct{} // closed when the process has exited
	waitErr error

	stopOnce sync.Once
}

// StartCaddy writes caddyfile to a fresh t.TempDir(), runs
// `bin run --config FILE --adapter caddyfile` with its own HOME and XDG
// directories and the extra environment variables env ("K=V"), and
// returns once Caddy logs that it serves the config (it logs that only
// after every server listens). The test fails, with Caddy's output, if
// Caddy exits or does not get there within StartTimeout. The process is
// stopped on t.Cleanup.
func StartCaddy(t testing.TB, bin, caddyfile string, env ...string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatalf("writing Caddyfile: %v", err)
	}
	environ, err := isolatedEnv(dir, env)
	if err != nil {
		t.Fatalf("caddy env: %v", err)
	}
	c := &Caddy{t: t, dir: dir, file: file, logs: newSyncBuffer(), done: make(chan struct{})}
	c.cmd = exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	c.cmd.Dir = dir
	c.cmd.Env = environ
	c.cmd.Stdout = c.logs
	c.cmd.Stderr = c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.done)
		c.logs.mu.Lock()
		c.logs.cond.Broadcast()
		c.logs.mu.Unlock()
	}()
	t.Cleanup(c.Stop)

	if !c.waitFor(func(s string) bool { return strings.Contains(s, "serving initial configuration") }, StartTimeout) {
		select {
		case <-c.done:
			t.Fatalf("caddy exited before serving (%v):\n%s", c.waitErr, c.Logs())
		default:
			c.Stop()
			t.Fatalf("caddy did not serve within %v:\n%s", StartTimeout, c.Logs())
		}
	}
	return c
}

// waitFor blocks until cond holds for the logs, the process exits, or the timeout passes.
func (c *Caddy) waitFor(cond func(string) bool, timeout time.Duration) bool {
	timer := time.AfterFunc(timeout, func() {
		c.logs.mu.Lock()
		c.logs.cond.Broadcast()
		c.logs.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	c.logs.mu.Lock()
	defer c.logs.mu.Unlock()
	for {
		if cond(c.logs.buf.String()) {
			return true
		}
		select {
		case <-c.done:
			return cond(c.logs.buf.String())
		default:
		}
		if !time.Now().Before(deadline) {
			return false
		}
		c.logs.cond.Wait()
	}
}

// WaitLog waits until Caddy's output contains substr, at most timeout.
func (c *Caddy) WaitLog(substr string, timeout time.Duration) bool {
	return c.waitFor(func(s string) bool { return strings.Contains(s, substr) }, timeout)
}

// Logs returns everything Caddy wrote to stdout and stderr so far.
func (c *Caddy) Logs() string { return c.logs.String() }

// LogEntries parses Caddy's JSON log lines (others are skipped).
func (c *Caddy) LogEntries() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(c.Logs()))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Dir is the process's working directory (the t.TempDir() holding the Caddyfile).
func (c *Caddy) Dir() string { return c.dir }

// Exited reports whether the process has ended.
func (c *Caddy) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Stop interrupts Caddy (SIGINT, its graceful stop), kills it if it has
// not exited within 10s, and waits. It fails the test if Caddy's output
// holds a data race report (a -race build). It is safe to call more than
// once; StartCaddy registers it with t.Cleanup.
func (c *Caddy) Stop() {
	c.stopOnce.Do(func() {
		if !c.Exited() {
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
		}
		if logs := c.Logs(); strings.Contains(logs, "WARNING: DATA RACE") {
			c.t.Errorf("caddy reported a data race:\n%s", logs)
		}
	})
}

// Validate runs `bin validate --config FILE --adapter caddyfile` on
// caddyfile in a temporary directory and returns its combined output; err
// is non-nil when Caddy rejects the config.
func Validate(bin, caddyfile string, env ...string) (string, error) {
	dir, err := os.MkdirTemp("", "caddy-bff-validate-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		return "", err
	}
	environ, err := isolatedEnv(dir, env)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "validate", "--config", file, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr is FreePort as "127.0.0.1:PORT".
func FreeAddr(t testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// WaitHTTP polls url with GET until it answers with any HTTP status,
// failing the test after timeout.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	deadline := time.Now().Add(timeout)
	backoff := 10 * time.Millisecond
	for {
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within %v: %v", url, timeout, err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}
