package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/examples/internal/browsertest"
)

// TestDemoEndToEnd starts the whole demo in this process (embedded Redis,
// auth API, Caddy with the notify handler) and drives its page in headless
// Chromium: sign in as alice, receive alice's notifications and never bob's,
// and send a test notification to oneself with the page's button.
//
// Set DEMO_SCREENSHOT=/path/to/file.png to save a screenshot of the page.
func TestDemoEndToEnd(t *testing.T) {
	chromium := browsertest.NeedChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)

	demo := startDemo(t)
	opts, err := redis.ParseURL(demo.RedisURL)
	if err != nil {
		t.Fatalf("demo Redis URL %q: %v", demo.RedisURL, err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })

	browser, console := browsertest.NewBrowser(t, ctx, chromium)
	page := &pageDriver{t: t, ctx: browser, console: console}

	// Sign in as alice; the page sets the cookie and opens the stream.
	page.do("opening the page", chromedp.Navigate(demo.URL), chromedp.WaitVisible(chromedp.ID("login-alice")))
	page.do("clicking alice", chromedp.Click(chromedp.ID("login-alice")))
	page.waitFor("status connected", `document.getElementById('status').textContent === 'connected'`)
	// The page streams with the browser client (client/notify.js), whose
	// state says which tab holds the stream.
	page.waitFor("the client's leader state", `document.getElementById('status-detail').textContent.includes('this tab holds the stream')`)

	// Bob streams too, from Go, so that his message has a receiver and
	// "never shown to alice" means routing, not loss.
	bob := openStream(t, ctx, demo.URL+"events", "bob-token")

	nonce := time.Now().Format("150405.000000")
	aliceFirst := "for alice, first " + nonce
	forBob := "for bob only " + nonce
	aliceSecond := "for alice, second " + nonce
	publish(t, ctx, rdb, "alice", aliceFirst)
	publish(t, ctx, rdb, "bob", forBob)
	publish(t, ctx, rdb, "alice", aliceSecond)

	page.waitForText(aliceFirst)
	page.waitForText(aliceSecond)
	// Messages reach a stream in the order they were published: with
	// alice's second message shown, bob's would be there too by now.
	if list := page.listText(); strings.Contains(list, forBob) {
		t.Fatalf("bob's notification %q reached alice's page; the list is:\n%s", forBob, list)
	}
	got := bob.waitFor(t, forBob)
	if strings.Contains(got, aliceFirst) {
		t.Fatalf("alice's notification reached bob's stream: %s", got)
	}

	// The page's button publishes a notification for the signed-in user.
	selfText := "sent from the page " + nonce
	page.do("sending a test notification",
		chromedp.SendKeys(chromedp.ID("send-text"), selfText),
		chromedp.Click(chromedp.ID("send")))
	page.waitFor("the self-notification, with type test", `[...document.querySelectorAll('#notifications li')]
		.some((li) => li.dataset.type === 'test' && li.textContent.includes(`+browsertest.JSString(selfText)+`))`)

	// /send takes the recipient from the token, never from the body.
	spoof := "bob trying to write to alice " + nonce
	status, body := postSend(t, ctx, demo.URL+"send", "bob-token", `{"text":`+browsertest.JSString(spoof)+`,"recipient_id":"alice"}`)
	if status != http.StatusOK {
		t.Fatalf("POST /send as bob: HTTP %d %s", status, body)
	}
	bob.waitFor(t, spoof)
	marker := "after the spoof " + nonce
	publish(t, ctx, rdb, "alice", marker)
	page.waitForText(marker)
	if list := page.listText(); strings.Contains(list, spoof) {
		t.Fatalf("POST /send as bob with recipient_id alice reached alice's page; the list is:\n%s", list)
	}
	if status, body := postSend(t, ctx, demo.URL+"send", "", `{"text":"anonymous"}`); status != http.StatusUnauthorized {
		t.Fatalf("POST /send without a token: HTTP %d %s, want 401", status, body)
	}

	if path := os.Getenv("DEMO_SCREENSHOT"); path != "" {
		png := page.run("taking a screenshot", chromedp.CaptureScreenshot())
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatalf("saving the screenshot: %v", err)
		}
		t.Logf("screenshot saved to %s", path)
	}

	// A second tab resumes as alice (the cookie) and is relayed the
	// stream. Signing out in the first ends the stream in both: the page
	// calls the client's signOut(); with close(), the second tab would take
	// the stream over and stay connected.
	tabCtx, closeTab := chromedp.NewContext(browser)
	defer closeTab()
	if err := chromedp.Do(tabCtx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("opening a second tab: %v", err)
	}
	tab2 := &pageDriver{t: t, ctx: tabCtx, console: browsertest.WatchConsole(tabCtx)}
	tab2.do("opening the page in a second tab", chromedp.Navigate(demo.URL))
	tab2.waitFor("the second tab relayed", `document.getElementById('status').textContent === 'connected'
		&& document.getElementById('status-detail').textContent.includes('relayed by another tab')`)
	page.do("signing out", chromedp.Click(chromedp.ID("logout")))
	page.waitFor("the first tab signed out", `document.getElementById('status').textContent === 'signed out'
		&& document.getElementById('notifications').children.length === 0`)
	tab2.waitFor("the second tab signed out by the first", `document.getElementById('status').textContent === 'signed out'
		&& document.getElementById('status-detail').textContent === 'signed out in another tab'`)

	// mallory is refused on purpose, and the page says so beside her.
	page.waitFor("the note on mallory", `document.getElementById('note-mallory').textContent
		.includes('the auth API answers 401') && document.getElementById('note-mallory').checkVisibility()`)
	page.do("clicking mallory", chromedp.Click(chromedp.ID("login-mallory")))
	page.waitFor("status error for an invalid token", `document.getElementById('status').textContent === 'error'
		&& document.getElementById('status-detail').textContent.includes('401')
		&& document.getElementById('status-detail').textContent.includes('the client stopped')`)

	for _, log := range []*browsertest.ConsoleLog{console, tab2.console} {
		if exc := log.Exceptions(); len(exc) > 0 {
			t.Fatalf("the page threw JavaScript exceptions:\n%s", strings.Join(exc, "\n"))
		}
	}
}

// startDemo runs the demo in this process on free ports and stops it when
// the test ends, failing the test if it does not stop cleanly.
func startDemo(t *testing.T) addrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	go func() {
		cfg := demoConfig{Addr: "127.0.0.1:0", MiniredisAddr: "127.0.0.1:0", LogLevel: "ERROR"}
		done <- run(ctx, cfg, func(a addrs) { ready <- a })
	}()
	select {
	case a := <-ready:
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("the demo stopped with an error: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("the demo did not stop within 10s")
			}
		})
		if !a.Embedded {
			t.Fatalf("the demo should use its embedded Redis, uses %s", a.RedisAddr)
		}
		return a
	case err := <-done:
		cancel()
		t.Fatalf("the demo did not start: %v", err)
	case <-time.After(15 * time.Second):
		cancel()
		t.Fatalf("the demo did not start within 15s")
	}
	panic("unreachable")
}

// pageDriver runs browser steps and fails the test with the page's state.
type pageDriver struct {
	t       *testing.T
	ctx     context.Context
	console *browsertest.ConsoleLog
}

func (p *pageDriver) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.fail(what, err)
	}
}

func (p *pageDriver) run(what string, a chromedp.Action[[]byte]) []byte {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, a)
	if err != nil {
		p.fail(what, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it holds, for up to 10s.
func (p *pageDriver) waitFor(what, cond string) {
	p.t.Helper()
	err := chromedp.Do(p.ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(25*time.Millisecond),
		chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		p.fail("waiting for "+what, err)
	}
}

// waitForText waits until the notification list shows text.
func (p *pageDriver) waitForText(text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("notification %q", text),
		`document.getElementById('notifications').textContent.includes(`+browsertest.JSString(text)+`)`)
}

func (p *pageDriver) listText() string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById('notifications').innerText`))
	if err != nil {
		p.fail("reading the notification list", err)
	}
	return s
}

func (p *pageDriver) fail(what string, err error) {
	p.t.Helper()
	// Best effort: this fails too when p.ctx is what expired.
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	state, serr := chromedp.Run(ctx, chromedp.Evaluate[string](`['status: ' + document.getElementById('status').textContent
		+ ' (' + document.getElementById('status-detail').textContent + ')',
		'send result: ' + document.getElementById('send-result').textContent,
		'notifications:\n' + document.getElementById('notifications').innerText].join('\n')`))
	if serr != nil {
		state = "(cannot read the page: " + serr.Error() + ")"
	}
	p.t.Fatalf("%s: %v\npage state:\n%s\nbrowser console:\n%s", what, err, state, p.console)
}

func publish(t *testing.T, ctx context.Context, rdb *redis.Client, recipient, text string) {
	t.Helper()
	msg, _ := json.Marshal(map[string]string{"recipient_id": recipient, "type": "e2e", "text": text})
	n, err := rdb.Publish(ctx, channel, msg).Result()
	if err != nil {
		t.Fatalf("PUBLISH %s: %v", msg, err)
	}
	if n < 1 {
		t.Fatalf("PUBLISH %s reached %d subscribers: the notify hub is not subscribed", msg, n)
	}
}

func postSend(t *testing.T, ctx context.Context, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

// sseStream is an SSE stream read from Go; data collects its data lines.
type sseStream struct {
	mu   sync.Mutex
	data []string
	more chan struct{} // signalled on each new line
	done chan struct{} // closed when the stream ends
	err  error
}

func openStream(t *testing.T, ctx context.Context, url, token string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: HTTP %d %s, want a 200 event stream", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{more: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				s.mu.Lock()
				s.data = append(s.data, line)
				s.mu.Unlock()
				select {
				case s.more <- struct{}{}:
				default:
				}
			}
		}
		s.mu.Lock()
		s.err = sc.Err()
		s.mu.Unlock()
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// waitFor waits up to 10s for a data line containing text and returns
// everything received so far.
func (s *sseStream) waitFor(t *testing.T, text string) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	ended := false
	for {
		s.mu.Lock()
		all, err := strings.Join(s.data, "\n"), s.err
		s.mu.Unlock()
		if strings.Contains(all, text) {
			return all
		}
		if ended {
			t.Fatalf("the stream ended (error: %v) before %q arrived; it carried:\n%s", err, text, all)
		}
		select {
		case <-s.more:
		case <-s.done:
			ended = true // look at the data once more
		case <-deadline:
			t.Fatalf("%q did not arrive on the stream within 10s; it carried:\n%s", text, all)
		}
	}
}

// TestPrintedCommands runs, from a shell, the redis-cli and curl lines the
// demo prints at start, and checks that they do what the banner says.
func TestPrintedCommands(t *testing.T) {
	for _, tool := range []struct{ name, pkg string }{{"redis-cli", "redis-tools"}, {"curl", "curl"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			t.Fatalf("%s is not on PATH: install it (Debian/Ubuntu: apt-get install -y %s)", tool.name, tool.pkg)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	demo := startDemo(t)
	var banner strings.Builder
	writeBanner(&banner, demo)
	lines := map[string][]string{}
	for line := range strings.Lines(banner.String()) {
		line = strings.TrimSpace(line)
		if name, _, ok := strings.Cut(line, " "); ok && (name == "redis-cli" || name == "curl") {
			lines[name] = append(lines[name], line)
		}
	}
	if len(lines["redis-cli"]) != 2 || len(lines["curl"]) != 1 {
		t.Fatalf("want two redis-cli lines and a curl line in the banner:\n%s", &banner)
	}

	// The curl line streams as bob; the first redis-cli line publishes to
	// alice, the second to everyone.
	curl := exec.CommandContext(ctx, "sh", "-c", "exec "+lines["curl"][0])
	out, err := curl.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = curl.Process.Kill()
		_ = curl.Wait()
	})
	bob := bufio.NewScanner(out)
	if !bob.Scan() {
		t.Fatalf("%s: the stream ended at once", lines["curl"][0])
	}
	alice := openStream(t, ctx, demo.URL+"events", "alice-token")
	for _, line := range lines["redis-cli"] {
		out, err := exec.CommandContext(ctx, "sh", "-c", line).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Fatalf("%s: %v, output %q; want 1 (the notify gateway, subscribed)", line, err, out)
		}
	}
	alice.waitFor(t, `"text":"hello alice"`)
	alice.waitFor(t, `"text":"hello everyone"`)
	for bob.Scan() {
		if strings.Contains(bob.Text(), "hello alice") {
			t.Fatalf("%s received alice's notification: %s", lines["curl"][0], bob.Text())
		}
		if strings.Contains(bob.Text(), `"text":"hello everyone"`) {
			return
		}
	}
	t.Fatalf("%s: the stream ended (%v) before the broadcast arrived", lines["curl"][0], bob.Err())
}
