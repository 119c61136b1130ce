// Package browser runs Debian's headless Chromium for end-to-end tests,
// driven with chromedp, confined to loopback, with a fresh profile per
// test, and saves a screenshot and the console log of every failing test.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ArtifactsEnv names the directory failing tests write screenshots and
// console logs to; default integration/testdata/artifacts.
const ArtifactsEnv = "BFF_TEST_ARTIFACTS"

// Path finds Debian's chromium. In CI (CI=true) a missing browser fails
// the test; elsewhere the test is skipped with a loud message.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (make test installs it: apt-get install -y chromium)")
	}
	t.Skip("SKIPPED: chromium is not installed; run `make deps` (apt-get install -y chromium) to run the browser tests")
	return ""
}

// Browser is one Chromium process with one tab.
type Browser struct {
	t       testing.TB
	ctx     context.Context
	cancel  func()
	mu      sync.Mutex
	console []string
}

// Options tune a browser.
type Options struct {
	// IgnoreCertErrors accepts the self-signed certificates of Caddy's
	// `tls internal` (the browser cannot reach beyond loopback anyway).
	IgnoreCertErrors bool
}

// Start launches Chromium with the flags the project requires, a fresh
// user-data dir, a 1280x800 window, and host resolution restricted to
// loopback, so no page can make it reach the network.
func Start(t testing.TB, o Options) *Browser {
	t.Helper()
	path := Path(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	if o.IgnoreCertErrors {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors", true))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{t: t, ctx: ctx}
	b.cancel = func() { cancel(); acancel() }
	// Start the browser now, so a broken install fails here, clearly. The
	// first run must use the tab's own context: the browser lives as long
	// as the context that started it.
	timer := time.AfterFunc(30*time.Second, b.cancel)
	_, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1"))
	timer.Stop()
	if err != nil {
		b.cancel()
		t.Fatalf("starting chromium: %v", err)
	}
	go func() {
		for msg, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			b.log(fmt.Sprintf("%s: %s", msg.Type, msg.Text))
		}
	}()
	t.Cleanup(b.close)
	return b
}

func (b *Browser) log(line string) {
	b.mu.Lock()
	b.console = append(b.console, time.Now().Format("15:04:05.000 ")+line)
	b.mu.Unlock()
}

// Console returns the page console lines seen so far.
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// Ctx is the tab's context, for chromedp calls.
func (b *Browser) Ctx() context.Context { return b.ctx }

// Do runs steps in the tab, in order, within 20s.
func (b *Browser) Do(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// MustDo is Do that fails the test.
func (b *Browser) MustDo(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := b.Do(steps...); err != nil {
		b.t.Fatalf("browser: %v\nconsole:\n%s", err, strings.Join(b.Console(), "\n"))
	}
}

// Get runs one action with a result within 20s.
func Get[T any](b *Browser, a chromedp.Action[T]) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// MustGet is Get that fails the test.
func MustGet[T any](b *Browser, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := Get(b, a)
	if err != nil {
		b.t.Fatalf("browser: %v\nconsole:\n%s", err, strings.Join(b.Console(), "\n"))
	}
	return v
}

// Eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its value.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	return MustGet(b, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// ArtifactsDir is where failing tests leave their screenshot and console.
func ArtifactsDir() string {
	if d := os.Getenv(ArtifactsEnv); d != "" {
		return d
	}
	_, err := os.Stat("go.mod")
	dir := "testdata/artifacts"
	for i := 0; err != nil && i < 4; i++ { // run from a package dir: find integration/
		dir = "../" + dir
		_, err = os.Stat(filepath.Join(filepath.Dir(filepath.Dir(dir)), "go.mod"))
	}
	return dir
}

// Screenshot saves a full-page PNG under name in the artifacts dir and
// returns its path.
func (b *Browser) Screenshot(name string) (string, error) {
	png, err := Get(b, chromedp.FullScreenshot(100))
	if err != nil {
		return "", err
	}
	dir := ArtifactsDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".png")
	return p, os.WriteFile(p, png, 0o644)
}

func (b *Browser) close() {
	if b.t.Failed() {
		name := b.t.Name()
		if p, err := b.Screenshot(name); err == nil {
			b.t.Logf("screenshot of the failing page: %s", p)
		}
		dir := ArtifactsDir()
		_ = os.MkdirAll(dir, 0o755)
		p := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".console.log")
		if err := os.WriteFile(p, []byte(strings.Join(b.Console(), "\n")+"\n"), 0o644); err == nil {
			b.t.Logf("console log: %s", p)
		}
	}
	b.cancel()
}

// WaitLocation polls the tab's URL until ok accepts it (navigations in
// between are expected), or fails the test after 15s.
func (b *Browser) WaitLocation(ok func(string) bool) string {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if loc, err := Get(b, chromedp.Location()); err == nil {
			last = loc
			if ok(loc) {
				return loc
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("browser: still at %q", last)
	return ""
}
