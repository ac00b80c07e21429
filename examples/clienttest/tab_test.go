package clienttest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/caddy-notify/notify/examples/internal/browsertest"
)

// browser is one Chromium with a fresh profile: its tabs share an origin's
// storage, Web Locks and BroadcastChannels, as the tabs of a user's browser
// do.
type browser struct {
	t    *testing.T
	ctx  context.Context
	tabs []*tab
}

// newBrowser starts Chromium for t. When the test ends the browser stops,
// and then every stream it held must close on the server, so that the next
// test counts streams from zero.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := browsertest.NeedChromium(t)
	t.Cleanup(func() {
		waitUntil(t, 5*time.Second, "the server to close every stream of the test", func() bool {
			return metric(t, streamsOpen) == 0
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bctx, _ := browsertest.NewBrowser(t, ctx, path)
	b := &browser{t: t, ctx: bctx}
	t.Cleanup(func() {
		if t.Failed() {
			for _, tb := range b.tabs {
				t.Logf("tab %s: console:\n%s", tb.name, tb.console)
			}
		}
	})
	return b
}

// tab is one page of the harness (testdata/harness.js).
type tab struct {
	t       *testing.T
	name    string
	ctx     context.Context
	close   context.CancelFunc // closes the tab
	console *browsertest.ConsoleLog
}

// open opens the harness in a new tab with the given query, e.g.
// "url=/sevents&user=alice".
func (b *browser) open(name string, query url.Values) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.t.Fatalf("opening tab %s: %v", name, err)
	}
	tb := &tab{t: b.t, name: name, ctx: ctx, close: cancel, console: browsertest.WatchConsole(ctx)}
	b.tabs = append(b.tabs, tb)
	tb.do("loading the harness", chromedp.Navigate(env.base+"/?"+query.Encode()))
	tb.waitFor("the harness to start", `window.T !== undefined && T.started === true`)
	return tb
}

func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.fail(what, err)
	}
}

// waitFor polls a JavaScript condition in the page until it holds, for up
// to 10s. A page that is being replaced (a reload, a navigation) has no
// context to poll in for a moment: polling starts again in the new one.
func (tb *tab) waitFor(what, cond string) {
	tb.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := chromedp.Do(tb.ctx, chromedp.Poll[chromedp.Void](cond,
			chromedp.WithPollingInterval(10*time.Millisecond),
			chromedp.WithPollingTimeout(time.Until(deadline))))
		if err == nil {
			return
		}
		if time.Now().Before(deadline) && (strings.Contains(err.Error(), "Cannot find context") ||
			strings.Contains(err.Error(), "Execution context was destroyed")) {
			continue
		}
		tb.fail("waiting for "+what, err)
	}
}

// run runs JavaScript statements in the page.
func (tb *tab) run(js string) {
	tb.t.Helper()
	var v any
	tb.get(`(() => { `+js+`; return null; })()`, &v)
}

// get evaluates expr in the page and decodes its JSON into v.
func (tb *tab) get(expr string, v any) {
	tb.t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`JSON.stringify(`+expr+`)`))
	if err != nil {
		tb.fail("evaluating "+expr, err)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		tb.t.Fatalf("tab %s: %s = %s: %v", tb.name, expr, s, err)
	}
}

func (tb *tab) ints(expr string) []int {
	tb.t.Helper()
	var v []int
	tb.get(expr, &v)
	return v
}

func (tb *tab) strings(expr string) []string {
	tb.t.Helper()
	var v []string
	tb.get(expr, &v)
	return v
}

func (tb *tab) bool(expr string) bool {
	tb.t.Helper()
	var v bool
	tb.get(expr, &v)
	return v
}

// waitOpen waits until the tab's client reports an open stream (its own or
// relayed).
func (tb *tab) waitOpen() {
	tb.t.Helper()
	tb.waitFor("an open stream", `T.state && T.state.status === 'open'`)
}

// waitMsgs waits until the tab received n messages in this life.
func (tb *tab) waitMsgs(n int) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%d messages", n), fmt.Sprintf(`T.msgs.length >= %d`, n))
}

// wantRecv checks the exact sequence of messages of all lives, each as
// "<recipient_id>:<n>".
func (tb *tab) wantRecv(want ...string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%d messages in all", len(want)), fmt.Sprintf(`T.recv.length >= %d`, len(want)))
	if got := tb.strings(`T.recv`); !slices.Equal(got, want) {
		tb.t.Fatalf("tab %s received %q, want exactly %q", tb.name, got, want)
	}
}

// storageOf returns what the client stored in the tab's localStorage and
// sessionStorage: every key, and the value of each of the client's keys
// (the harness keeps what it received in sessionStorage too).
func (tb *tab) storageOf() []string {
	tb.t.Helper()
	return tb.strings(`[localStorage, sessionStorage].flatMap((s) => Array.from({ length: s.length }, (_, i) => s.key(i))
		.map((k) => k.startsWith('caddy-notify:') ? k + ' = ' + s.getItem(k) : k))`)
}

// wantNothingOf fails when the storage of a tab holds a key, or a value of
// the client's, that names user.
func wantNothingOf(t *testing.T, user string, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		for _, kv := range tb.storageOf() {
			if strings.Contains(kv, user) {
				t.Fatalf("tab %s: the storage still names %s: %q", tb.name, user, kv)
			}
		}
	}
}

// wantMsgs checks the exact sequence of messages of this life.
func (tb *tab) wantMsgs(want []int) {
	tb.t.Helper()
	tb.waitMsgs(len(want))
	if got := tb.ints(`T.msgs`); !slices.Equal(got, want) {
		tb.t.Fatalf("tab %s received %v, want exactly %v", tb.name, got, want)
	}
}

func (tb *tab) fail(what string, err error) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
	defer cancel()
	state, serr := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({msgs: T.msgs, all: T.all, recv: T.recv, resets: T.resets,
		revoked: T.revoked, errors: T.errors, states: T.states, leader: T.leader, unauthorized: T.unauthorized})`))
	if serr != nil {
		state = "(cannot read the page: " + serr.Error() + ")"
	}
	tb.t.Fatalf("tab %s: %s: %v\npage state: %s\nconsole:\n%s", tb.name, what, err, state, tb.console)
}

// leaders returns the tabs whose client holds the stream.
func leaders(tabs ...*tab) []*tab {
	var l []*tab
	for _, tb := range tabs {
		if tb.bool(`T.leader`) {
			l = append(l, tb)
		}
	}
	return l
}

// seq returns [from, from+1, ..., to].
func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// userFor makes a user id of its own for each test, so that no test
// receives another's messages.
// It holds letters, digits and dashes only: it goes into a cookie.
func userFor(t *testing.T) string {
	name := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return name + "-" + fmt.Sprint(time.Now().UnixNano()%1e6)
}

// q builds a harness query from pairs.
func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}
