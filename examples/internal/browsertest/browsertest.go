// Package browsertest starts headless Chromium for the examples' end-to-end
// tests (the demo's and the browser client's) and collects what pages write
// to their console.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// chromiumNames are the names a Chromium the tests can drive goes by on
// PATH: Debian's package, Ubuntu's, Google's build.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome"}

// FindChromium returns the browser to drive: $CHROMIUM_PATH when set (a path
// or a name on PATH), otherwise the first of chromiumNames found on PATH.
func FindChromium() (string, error) {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("CHROMIUM_PATH=%s: %v", p, err)
		}
		return found, nil
	}
	for _, name := range chromiumNames {
		if found, err := exec.LookPath(name); err == nil {
			return found, nil
		}
	}
	return "", fmt.Errorf("none of %s is on PATH, and CHROMIUM_PATH is not set", strings.Join(chromiumNames, ", "))
}

// NeedChromium returns the browser to drive or fails the test, saying how
// to install one. Failing rather than skipping: a skipped test would hide
// that the page was never exercised.
func NeedChromium(t testing.TB) string {
	t.Helper()
	path, err := FindChromium()
	if err != nil {
		t.Fatalf("this end-to-end test needs Chromium: %v\n"+
			"Install it (Debian/Ubuntu) with:\n\tsudo apt-get update && sudo apt-get install -y chromium\n"+
			"or point CHROMIUM_PATH at a Chromium or Chrome binary.", err)
	}
	return path
}

// NewBrowser starts headless Chromium (the binary at path) with a fresh
// profile and returns the context of its first tab; the browser stops when
// the test ends or parent is done. The returned log collects what that tab
// writes to its console.
func NewBrowser(t testing.TB, parent context.Context, path string) (context.Context, *ConsoleLog) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Tabs the tests open in the background must keep their timers
		// and not be frozen: the tests measure what tabs do meanwhile.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()), // removed after the browser: cleanups run last-in first-out
		chromedp.WindowSize(900, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc() // waits for the browser to exit
	})

	// The first action starts the browser; then subscribe to the console.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx, WatchConsole(ctx)
}

// WatchConsole collects the console messages and exceptions of the tab of
// ctx, which must have been started.
func WatchConsole(ctx context.Context) *ConsoleLog {
	log := &ConsoleLog{}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			log.add(m)
		}
	}()
	return log
}

// ConsoleLog keeps the console messages of a tab, for failure reports.
type ConsoleLog struct {
	mu    sync.Mutex
	lines []string
	exc   []string
}

func (c *ConsoleLog) add(m chromedp.ConsoleMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	line := fmt.Sprintf("%s: %s", m.Type, m.Text)
	c.lines = append(c.lines, line)
	if m.IsException() {
		c.exc = append(c.exc, line)
	}
}

func (c *ConsoleLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) == 0 {
		return "(empty)"
	}
	return strings.Join(c.lines, "\n")
}

// Exceptions returns the uncaught exceptions the tab reported.
func (c *ConsoleLog) Exceptions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.exc...)
}

// JSString quotes s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
