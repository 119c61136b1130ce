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

// RootDir is the plugin module's directory (the repository root).
func RootDir() (string, error) { return rootDir() }

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

// Process is a running caddy, without a testing.TB: the tests' Caddy
// wraps it, and the load benchmark runs one as it is.
type Process struct {
	cmd  *exec.Cmd
	dir  string
	file string
	logs *syncBuffer

	done    chan struct{} // closed when the process has exited
	waitErr error

	stopOnce sync.Once
}

// Run writes caddyfile to dir and runs `bin run --config FILE --adapter
// caddyfile` there, with HOME and the XDG directories moved under dir (so
// Caddy's data, config and autosave stay out of the user's) and the extra
// environment variables env ("K=V"). It returns once the process started;
// readiness is the caller's to check (WaitLog, or polling the sites).
func Run(bin, dir, caddyfile string, env ...string) (*Process, error) {
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		return nil, fmt.Errorf("writing Caddyfile: %w", err)
	}
	p, err := Start(dir, env, bin, "run", "--config", file, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	p.file = file
	return p, nil
}

// Start runs bin with args in dir, with HOME and the XDG directories
// moved under dir and the extra environment variables env ("K=V"),
// collecting its output for Logs: Run's way of running Caddy, for any
// program (the load benchmark runs its peers, such as oauth2-proxy, so).
func Start(dir string, env []string, bin string, args ...string) (*Process, error) {
	environ, err := isolatedEnv(dir, env)
	if err != nil {
		return nil, fmt.Errorf("%s env: %w", filepath.Base(bin), err)
	}
	p := &Process{dir: dir, logs: newSyncBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = environ
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(bin), err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
		p.logs.mu.Lock()
		p.logs.cond.Broadcast()
		p.logs.mu.Unlock()
	}()
	return p, nil
}

// waitFor blocks until cond holds for the logs, the process exits, or the timeout passes.
func (p *Process) waitFor(cond func(string) bool, timeout time.Duration) bool {
	timer := time.AfterFunc(timeout, func() {
		p.logs.mu.Lock()
		p.logs.cond.Broadcast()
		p.logs.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	p.logs.mu.Lock()
	defer p.logs.mu.Unlock()
	for {
		if cond(p.logs.buf.String()) {
			return true
		}
		select {
		case <-p.done:
			return cond(p.logs.buf.String())
		default:
		}
		if !time.Now().Before(deadline) {
			return false
		}
		p.logs.cond.Wait()
	}
}

// WaitLog waits until Caddy's output contains substr, at most timeout.
func (p *Process) WaitLog(substr string, timeout time.Duration) bool {
	return p.waitFor(func(s string) bool { return strings.Contains(s, substr) }, timeout)
}

// Logs returns everything Caddy wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// LogEntries parses Caddy's JSON log lines (others are skipped).
func (p *Process) LogEntries() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Logs()))
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

// Dir is the process's working directory (the one holding the Caddyfile).
func (p *Process) Dir() string { return p.dir }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil while it runs or after a clean exit).
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// Stop interrupts Caddy (SIGINT, its graceful stop), kills it if it has
// not exited within 10s, and waits. It is safe to call more than once.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
	})
}

// Caddy is a running Caddy process of a test.
type Caddy struct {
	*Process
	t         testing.TB
	raceCheck sync.Once
}

// StartCaddy runs caddyfile (see Run) in a fresh t.TempDir() and returns
// once Caddy logs that it serves the config (it logs that only after every
// server listens). The test fails, with Caddy's output, if Caddy exits or
// does not get there within StartTimeout. The process is stopped on
// t.Cleanup.
func StartCaddy(t testing.TB, bin, caddyfile string, env ...string) *Caddy {
	t.Helper()
	p, err := Run(bin, t.TempDir(), caddyfile, env...)
	if err != nil {
		t.Fatal(err)
	}
	c := &Caddy{Process: p, t: t}
	t.Cleanup(c.Stop)
	if !c.waitFor(func(s string) bool { return strings.Contains(s, "serving initial configuration") }, StartTimeout) {
		if c.Exited() {
			t.Fatalf("caddy exited before serving (%v):\n%s", c.waitErr, c.Logs())
		}
		c.Stop()
		t.Fatalf("caddy did not serve within %v:\n%s", StartTimeout, c.Logs())
	}
	return c
}

// Stop stops the process (see Process.Stop) and fails the test if
// Caddy's output holds a data race report (a -race build). StartCaddy
// registers it with t.Cleanup.
func (c *Caddy) Stop() {
	c.Process.Stop()
	c.raceCheck.Do(func() {
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
