package clienttest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// publisher publishes messages from..to to user, one every `every`, in the
// background: while a tab closes or reloads. halfway is closed once `mark`
// is published; wait returns when all are, failing the test on an error.
type publisher struct {
	halfway chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

func publishInBackground(stream bool, user string, from, to, mark int, every time.Duration) *publisher {
	p := &publisher{halfway: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for n := from; n <= to; n++ {
			if err := publishE(stream, user, n); err != nil {
				p.mu.Lock()
				p.err = err
				p.mu.Unlock()
				return
			}
			if n == mark {
				close(p.halfway)
			}
			time.Sleep(every) // the pace of the publisher, not a wait for a condition
		}
	}()
	return p
}

func (p *publisher) wait(t *testing.T) {
	t.Helper()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatalf("publishing: %v", p.err)
	}
}

// TestThreeTabsShareOneStream: three tabs of one browser hold one stream
// between them; every tab receives every event; when the leader tab
// closes, another takes over within a second and every remaining tab keeps
// receiving: in stream mode with no gap and no duplicate although messages
// are published throughout the takeover, with and without Web Locks.
func TestThreeTabsShareOneStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		stream  bool
		nolocks bool
	}{
		{"stream", "/sevents", true, false},
		{"stream-localStorage-lease", "/sevents", true, true},
		{"pubsub", "/events", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := userFor(t)
			b := newBrowser(t)
			opened := metric(t, streamsOpened)
			query := q("url", tc.url, "user", user)
			if tc.nolocks {
				query.Set("nolocks", "1")
			}
			a, bb, c := b.open("A", query), b.open("B", query), b.open("C", query)
			tabs := []*tab{a, bb, c}
			for _, tb := range tabs {
				tb.waitOpen()
			}
			if tc.nolocks && a.bool(`'locks' in navigator`) {
				t.Fatal("the page still has navigator.locks: the lease fallback is not what runs")
			}

			// The first tab leads; the server sees one stream, opened once.
			if l := leaders(tabs...); len(l) != 1 || l[0] != a {
				t.Fatalf("leaders: %d tabs, want tab A alone", len(l))
			}
			if n := metric(t, streamsOpen); n != 1 {
				t.Fatalf("the server has %v streams open for three tabs, want 1", n)
			}
			if d := metric(t, streamsOpened) - opened; d != 1 {
				t.Fatalf("the server opened %v streams for three tabs, want 1", d)
			}
			if n := len(env.backend.authCalls(user)); n != 1 {
				t.Fatalf("the auth API was asked %d times for three tabs, want 1", n)
			}

			for n := 1; n <= 5; n++ {
				publish(t, tc.stream, user, n)
			}
			for _, tb := range tabs {
				tb.wantMsgs(seq(1, 5))
			}

			// Close the leader. In stream mode, messages keep coming while
			// it closes and another tab takes over.
			last := 5
			var pub *publisher
			if tc.stream {
				last = 45
				pub = publishInBackground(true, user, 6, last, 10, 20*time.Millisecond)
				<-pub.halfway
			}
			closing := time.Now()
			a.close()
			rest := []*tab{bb, c}
			var leader *tab
			waitUntil(t, 5*time.Second, "another tab to lead an open stream", func() bool {
				l := leaders(rest...)
				if len(l) == 1 && l[0].bool(`T.state.status === 'open'`) {
					leader = l[0]
				}
				return leader != nil
			})
			// When the new leader's stream opened, by the page's clock.
			var openedAt int64
			leader.get(`T.states.findLast((s) => s.leader && s.status === 'open').at`, &openedAt)
			if took := time.UnixMilli(openedAt).Sub(closing); took > time.Second {
				t.Errorf("the takeover took %v from closing the leader tab to the new stream, want at most 1s", took)
			} else {
				t.Logf("takeover: %v from closing the leader tab to tab %s's open stream", took, leader.name)
			}
			waitUntil(t, 5*time.Second, "the server to hold one stream again", func() bool {
				return metric(t, streamsOpen) == 1
			})
			if d := metric(t, streamsOpened) - opened; d != 2 {
				t.Fatalf("the server opened %v streams in all, want 2 (one per leader)", d)
			}

			if tc.stream {
				pub.wait(t)
			} else {
				// Pub/sub has no history: what is published between the old
				// stream's end and the new one's start is lost (README), so
				// publish once the new stream is open.
				last = 10
				for n := 6; n <= last; n++ {
					publish(t, false, user, n)
				}
			}
			for _, tb := range rest {
				tb.wantMsgs(seq(1, last))
			}
			if l := leaders(rest...); len(l) != 1 {
				t.Fatalf("%d tabs lead after the takeover, want 1", len(l))
			}
		})
	}
}

// TestReloadLosesNothing: in stream mode a page that reloads, or leaves and
// comes back, resumes from the last event ID it stored and receives every
// message exactly once, including those published while no page was open.
func TestReloadLosesNothing(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	query := q("url", "/sevents", "user", user)
	a := b.open("A", query)
	a.waitOpen()
	if a.bool(`T.startId !== null`) {
		t.Fatal("a fresh browser resumed from a stored ID")
	}
	for n := 1; n <= 5; n++ {
		publish(t, true, user, n)
	}
	a.wantMsgs(seq(1, 5))

	// Reload while messages are being published.
	pub := publishInBackground(true, user, 6, 40, 10, 15*time.Millisecond)
	<-pub.halfway
	a.do("reloading", chromedp.Reload())
	pub.wait(t)
	a.waitFor("the reloaded page", `window.T !== undefined && T.life === 2`)
	if !a.bool(`T.startId !== null`) {
		t.Fatal("the reloaded page did not resume from a stored ID")
	}
	a.waitFor("40 messages across the reload", `T.all.length >= 40`)
	if got := a.ints(`T.all`); !slices.Equal(got, seq(1, 40)) {
		t.Fatalf("across the reload the tab received %v, want exactly 1..40", got)
	}

	// Leave, publish while no page is open, come back.
	a.do("leaving the page", chromedp.Navigate("about:blank"))
	waitUntil(t, 5*time.Second, "the server to close the stream", func() bool { return metric(t, streamsOpen) == 0 })
	for n := 41; n <= 45; n++ {
		publish(t, true, user, n)
	}
	a.do("coming back", chromedp.Navigate(env.base+"/?"+query.Encode()))
	a.waitFor("the third page", `window.T !== undefined && T.life === 3`)
	a.wantMsgs(seq(41, 45))
	if got := a.ints(`T.all`); !slices.Equal(got, seq(1, 45)) {
		t.Fatalf("across three pages the tab received %v, want exactly 1..45", got)
	}
	if r := a.strings(`T.resets`); len(r) != 0 {
		t.Fatalf("resets %v, want none", r)
	}
}

// TestFollowerReloadLosesNothing: a tab that is not the leader reloads
// while messages are published; it asks the leader for what it missed and
// receives every message exactly once, without a stream of its own.
func TestFollowerReloadLosesNothing(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	opened := metric(t, streamsOpened)
	query := q("url", "/sevents", "user", user)
	a, f := b.open("A", query), b.open("F", query)
	a.waitOpen()
	f.waitOpen()
	for n := 1; n <= 5; n++ {
		publish(t, true, user, n)
	}
	a.wantMsgs(seq(1, 5))
	f.wantMsgs(seq(1, 5))

	pub := publishInBackground(true, user, 6, 40, 10, 15*time.Millisecond)
	<-pub.halfway
	f.do("reloading the follower", chromedp.Reload())
	pub.wait(t)
	f.waitFor("the reloaded page", `window.T !== undefined && T.life === 2`)
	f.waitFor("40 messages across the reload", `T.all.length >= 40`)
	if got := f.ints(`T.all`); !slices.Equal(got, seq(1, 40)) {
		t.Fatalf("across the reload the follower received %v, want exactly 1..40", got)
	}
	a.wantMsgs(seq(1, 40))
	if f.bool(`T.leader`) || !a.bool(`T.leader`) {
		t.Fatal("the reloaded follower took the lead from the open leader")
	}
	if d := metric(t, streamsOpened) - opened; d != 1 {
		t.Fatalf("the server opened %v streams, want 1", d)
	}
	if r := f.strings(`T.resets`); len(r) != 0 {
		t.Fatalf("the follower got resets %v, want none", r)
	}
}

// TestUnauthorized: a 401 calls onUnauthorized once; when it refreshes the
// credentials and resolves true the client reconnects with them; when it
// resolves false the client stops with onError and never asks again.
func TestUnauthorized(t *testing.T) {
	t.Run("cookie refreshed", func(t *testing.T) {
		user := userFor(t)
		a := newBrowser(t).open("A", q("url", "/sevents", "user", user, "token", "bad:"+user, "refresh", "cookie"))
		a.waitOpen()
		if n := a.ints(`[T.unauthorized]`)[0]; n != 1 {
			t.Fatalf("onUnauthorized called %d times, want 1", n)
		}
		wantTokens(t, user, "bad:"+user, "u:"+user)
		publish(t, true, user, 1)
		publish(t, true, user, 2)
		a.wantMsgs(seq(1, 2))
		wantNoErrors(t, a)
	})
	t.Run("bearer token from the getter on every connection", func(t *testing.T) {
		user := userFor(t)
		a := newBrowser(t).open("A", q("url", "/sevents", "user", user, "auth", "bearer", "token", "bad:"+user, "refresh", "token"))
		a.waitOpen()
		if n := a.ints(`[T.unauthorized, T.tokenCalls]`); !slices.Equal(n, []int{1, 2}) {
			t.Fatalf("onUnauthorized and token() called %v times, want [1 2]", n)
		}
		wantTokens(t, user, "bad:"+user, "u:"+user)
		publish(t, true, user, 1)
		a.wantMsgs(seq(1, 1))
		wantNoErrors(t, a)
	})
	t.Run("not refreshed: stop", func(t *testing.T) {
		user := userFor(t)
		a := newBrowser(t).open("A", q("url", "/sevents", "user", user, "token", "bad:"+user, "refresh", "no", "minDelay", "20"))
		a.waitFor("the client to stop", `T.state.status === 'closed'`)
		var errs []struct {
			Status  int
			Message string
			Name    string
		}
		a.get(`T.errors`, &errs)
		if len(errs) != 1 || errs[0].Status != 401 || errs[0].Message != "Invalid or expired token." || errs[0].Name != "NotifyError" {
			t.Fatalf("onError got %+v, want one NotifyError 401 \"Invalid or expired token.\"", errs)
		}
		if s := a.ints(`[T.state.httpStatus, T.unauthorized]`); !slices.Equal(s, []int{401, 1}) {
			t.Fatalf("httpStatus and onUnauthorized calls %v, want [401 1]", s)
		}
		// A retry would come within minDelay (20ms) and its backoff: give it
		// ten times as long.
		time.Sleep(300 * time.Millisecond)
		wantTokens(t, user, "bad:"+user)
	})
}

// TestRetryStatuses: 429, 502, 503 and 504 are retried with exponential
// backoff and jitter, never before Retry-After; then the stream opens with
// no error reported. The times between attempts are measured where they
// arrive (the gate in front of the handler, or the auth API behind it).
func TestRetryStatuses(t *testing.T) {
	const slack = 500 * time.Millisecond // the machine's delays on top of the client's
	for _, tc := range []struct {
		name   string
		url    string
		gate   []step // answers of the gate in front of the handler
		auth   []step // answers of the auth API behind it
		status int
		waits  [][2]time.Duration // bounds of the client's waits between attempts
		extra  time.Duration      // what else lies between two attempts
	}{
		{
			name: "429 with Retry-After", url: "/gated/sevents", status: 429,
			gate: []step{{status: 429, retryAfter: "1"}, {status: 429, retryAfter: "1"}},
			// minDelay 100ms: only Retry-After makes these a second long.
			waits: [][2]time.Duration{{time.Second, 1500 * time.Millisecond}, {time.Second, 1500 * time.Millisecond}},
		},
		{
			name: "503 with Retry-After", url: "/gated/sevents", status: 503,
			gate:  []step{{status: 503, retryAfter: "1"}},
			waits: [][2]time.Duration{{time.Second, 1500 * time.Millisecond}},
		},
		{
			name: "502 from the handler (auth API failing)", url: "/sevents", status: 502,
			auth: []step{{status: 500}, {status: 500}, {status: 500}},
			// 100ms doubling, each plus up to half of it.
			waits: [][2]time.Duration{{100 * time.Millisecond, 150 * time.Millisecond}, {200 * time.Millisecond, 300 * time.Millisecond},
				{400 * time.Millisecond, 600 * time.Millisecond}},
		},
		{
			name: "504 from the handler (auth API too slow)", url: "/sevents", status: 504,
			auth:  []step{{delay: time.Second}, {delay: time.Second}},
			waits: [][2]time.Duration{{100 * time.Millisecond, 150 * time.Millisecond}, {200 * time.Millisecond, 300 * time.Millisecond}},
			// Each attempt waits out the handler's auth_timeout first.
			extra: 500 * time.Millisecond,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := userFor(t)
			env.backend.scriptGate(user, tc.gate...)
			env.backend.scriptAuth(user, tc.auth...)
			a := newBrowser(t).open("A", q("url", tc.url, "user", user, "minDelay", "100", "jitter", "0.5"))
			a.waitOpen()

			calls := env.backend.authCalls(user)
			if tc.gate != nil {
				calls = env.backend.gateCalls(user)
			}
			if len(calls) != len(tc.waits)+1 {
				t.Fatalf("%d attempts, want %d", len(calls), len(tc.waits)+1)
			}
			for i, w := range tc.waits {
				gap := calls[i+1].at.Sub(calls[i].at)
				if lo, hi := w[0]+tc.extra, w[1]+tc.extra; gap < lo || gap > hi+slack {
					t.Errorf("attempts %d and %d: %v apart, want %v to %v", i+1, i+2, gap, lo, hi)
				}
			}
			// The page was told why and for how long it waits.
			var waits []struct{ HTTPStatus, RetryIn int }
			a.get(`T.states.filter((s) => s.retryIn !== undefined)`, &waits)
			if len(waits) != len(tc.waits) {
				t.Fatalf("%d waits reported to onStateChange, want %d: %+v", len(waits), len(tc.waits), waits)
			}
			for i, w := range waits {
				in := time.Duration(w.RetryIn) * time.Millisecond
				if w.HTTPStatus != tc.status || in < tc.waits[i][0] || in > tc.waits[i][1] {
					t.Errorf("wait %d reported as %+v, want status %d, retryIn within %v", i+1, w, tc.status, tc.waits[i])
				}
			}
			publish(t, true, user, 1)
			a.wantMsgs(seq(1, 1))
			wantNoErrors(t, a)
			if n := a.ints(`[T.unauthorized]`)[0]; n != 0 {
				t.Fatalf("onUnauthorized called %d times, want 0", n)
			}
		})
	}
	t.Run("503 from the handler (Redis down), Retry-After 5", func(t *testing.T) {
		user := userFor(t)
		a := newBrowser(t).open("A", q("url", "/dead/events", "user", user, "minDelay", "100"))
		a.waitFor("a refusal", `T.states.some((s) => s.httpStatus === 503)`)
		var w struct{ HTTPStatus, RetryIn int }
		a.get(`T.states.find((s) => s.httpStatus === 503)`, &w)
		// Retry-After: 5 plus up to half of it.
		if w.RetryIn < 5000 || w.RetryIn > 7500 {
			t.Fatalf("after a 503 with Retry-After: 5 the client waits %dms, want 5000 to 7500", w.RetryIn)
		}
		wantNoErrors(t, a)
	})
}

// TestOtherStatusesStop: any other refusal stops the client with onError
// after one attempt, in every tab.
func TestOtherStatusesStop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		last    string
		auth    []step
		status  int
		message string
	}{
		{"403", "/sevents", "", []step{{status: 403}}, 403, "Access denied."},
		{"400 malformed last event ID", "/sevents", "not-an-id", nil, 400, "Malformed Last-Event-ID: expected <ms>-<seq>."},
		{"404 not a stream", "/nowhere", "", nil, 404, "HTTP 404 Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := userFor(t)
			env.backend.scriptAuth(user, tc.auth...)
			query := q("url", tc.url, "user", user, "minDelay", "20")
			if tc.last != "" {
				query.Set("last", tc.last)
			}
			a := newBrowser(t).open("A", query)
			a.waitFor("the client to stop", `T.state.status === 'closed'`)
			wantStopped(t, a, tc.status, tc.message)
			time.Sleep(300 * time.Millisecond) // a retry would come within 20ms and its backoff
			if n := a.ints(`[T.states.filter((s) => s.status === 'connecting').length]`)[0]; n != 1 {
				t.Fatalf("%d attempts, want 1", n)
			}
		})
	}
	t.Run("403 on a reconnect, in every tab", func(t *testing.T) {
		user := userFor(t)
		b := newBrowser(t)
		query := q("url", "/sevents", "user", user, "minDelay", "20")
		a, f := b.open("A", query), b.open("F", query)
		a.waitOpen()
		f.waitOpen()
		env.backend.scriptAuth(user, step{status: 403})
		// A config reload ends every stream; the leader reconnects and is
		// refused.
		if err := loadCaddy(); err != nil {
			t.Fatal(err)
		}
		for _, tb := range []*tab{a, f} {
			tb.waitFor("the client to stop", `T.state.status === 'closed'`)
			wantStopped(t, tb, 403, "Access denied.")
		}
		time.Sleep(300 * time.Millisecond) // the follower must not take over and try again
		if n := len(env.backend.authCalls(user)); n != 2 {
			t.Fatalf("the auth API was asked %d times, want 2 (the first stream, the refused reconnect)", n)
		}
	})
}

// TestResets: a reset reaches onReset in every tab, and the events after it
// are delivered even when the reset moved the position backwards.
func TestResets(t *testing.T) {
	t.Run("unknown_last_event_id", func(t *testing.T) {
		user := userFor(t)
		a := newBrowser(t).open("A", q("url", "/sevents", "user", user, "last", "99999999999999-0"))
		a.waitOpen()
		a.waitFor("the reset", `T.resets.length > 0`)
		if r := a.strings(`T.resets`); !slices.Equal(r, []string{"unknown_last_event_id"}) {
			t.Fatalf("resets %v, want [unknown_last_event_id]", r)
		}
		for n := 1; n <= 3; n++ {
			publish(t, true, user, n)
		}
		a.wantMsgs(seq(1, 3))
	})
	t.Run("replay_limit, relayed to every tab", func(t *testing.T) {
		user := userFor(t)
		b := newBrowser(t)
		query := q("url", "/gated/sevents", "user", user, "minDelay", "100")
		a, f := b.open("A", query), b.open("F", query)
		a.waitOpen()
		f.waitOpen()
		for n := 1; n <= 3; n++ {
			publish(t, true, user, n)
		}
		a.wantMsgs(seq(1, 3))
		f.wantMsgs(seq(1, 3))
		// End the stream (a config reload) and hold the reconnect back a
		// second with a 503, while five messages are published: more than
		// replay_limit 2.
		env.backend.scriptGate(user, step{status: 503, retryAfter: "1"})
		if err := loadCaddy(); err != nil {
			t.Fatal(err)
		}
		a.waitFor("the refused reconnect", `T.states.some((s) => s.httpStatus === 503)`)
		for n := 4; n <= 8; n++ {
			publish(t, true, user, n)
		}
		for _, tb := range []*tab{a, f} {
			tb.waitFor("the reset", `T.resets.length > 0`)
			if r := tb.strings(`T.resets`); !slices.Equal(r, []string{"replay_limit"}) {
				t.Fatalf("tab %s: resets %v, want [replay_limit]", tb.name, r)
			}
			tb.wantMsgs([]int{1, 2, 3, 7, 8})
		}
	})
}

// TestRevokedStopsEveryTab: the handler ends a user's stream with a
// revoked event (here on the control channel, as at a sign-out
// everywhere): every tab stops, with onRevoked, and none reconnects. A
// fake stream does the same with another reason.
func TestRevokedStopsEveryTab(t *testing.T) {
	t.Run("handler", func(t *testing.T) {
		user := userFor(t)
		b := newBrowser(t)
		query := q("url", "/events", "user", user, "minDelay", "20")
		a, f := b.open("A", query), b.open("F", query)
		a.waitOpen()
		f.waitOpen()
		calls := len(env.backend.authCalls(user))
		if err := env.rdb.Publish(t.Context(), controlChannel, `{"disconnect":"`+user+`"}`).Err(); err != nil {
			t.Fatal(err)
		}
		for _, tb := range []*tab{a, f} {
			tb.waitFor("the client to stop", `T.state.status === 'closed'`)
			if r := tb.strings(`T.revoked`); !slices.Equal(r, []string{"disconnected"}) {
				t.Fatalf("tab %s: onRevoked got %v, want [disconnected]", tb.name, r)
			}
			wantNoErrors(t, tb)
		}
		// The stream's retry field is 200ms: a reconnect would come well
		// within this, and would ask the auth API again.
		time.Sleep(600 * time.Millisecond)
		if n := len(env.backend.authCalls(user)) - calls; n != 0 {
			t.Fatalf("%d auth calls after revoked, want 0: a tab reconnected", n)
		}
	})
	t.Run("fake", func(t *testing.T) {
		user := userFor(t)
		b := newBrowser(t)
		query := q("url", "/fake/revoked", "user", user, "minDelay", "20")
		a, f := b.open("A", query), b.open("F", query)
		a.waitOpen()
		f.waitOpen()
		env.backend.revoke(user)
		for _, tb := range []*tab{a, f} {
			tb.waitFor("the client to stop", `T.state.status === 'closed'`)
			if r := tb.strings(`T.revoked`); !slices.Equal(r, []string{"user_changed"}) {
				t.Fatalf("tab %s: onRevoked got %v, want [user_changed]", tb.name, r)
			}
			if s := tb.strings(`[T.state.revoked]`); !slices.Equal(s, []string{"user_changed"}) {
				t.Fatalf("tab %s: state.revoked %v, want user_changed", tb.name, s)
			}
			wantNoErrors(t, tb)
		}
		// The fake stream's retry field is 100ms: a reconnect would come
		// well within this.
		time.Sleep(500 * time.Millisecond)
		if n := env.backend.fakeCalls(user); n != 1 {
			t.Fatalf("%d requests for the stream, want 1: a tab reconnected after revoked", n)
		}
	})
}

// TestIdleTimeout: a stream on which nothing arrives, not even a heartbeat,
// for idleTimeout is given up and reopened.
func TestIdleTimeout(t *testing.T) {
	user := userFor(t)
	a := newBrowser(t).open("A", q("url", "/fake/silent", "user", user, "idleTimeout", "300"))
	waitUntil(t, 10*time.Second, "three connections", func() bool { return env.backend.fakeCalls(user) >= 3 })
	wantNoErrors(t, a)
	if n := a.ints(`[T.states.filter((s) => s.status === 'open').length]`)[0]; n < 2 {
		t.Fatalf("the stream opened %d times, want at least 2", n)
	}
}

// TestWireFormat: the client's SSE parser reads what the HTML standard
// allows, whatever pieces the stream arrives in (testdata: wireChunks).
func TestWireFormat(t *testing.T) {
	user := userFor(t)
	a := newBrowser(t).open("A", q("url", "/fake/wire", "user", user))
	a.wantMsgs(seq(1, 3))
	var got struct {
		IDs  []*string
		Last string
	}
	a.get(`{ids: T.ids, last: T.client.lastEventId}`, &got)
	if len(got.IDs) != 3 || got.IDs[0] == nil || *got.IDs[0] != "1-1" || got.IDs[1] == nil || *got.IDs[1] != "1-2" || got.IDs[2] != nil {
		t.Fatalf("event ids %v, want 1-1, 1-2, none", got.IDs)
	}
	if got.Last != "1-3" {
		t.Fatalf("last event ID %q, want 1-3 (the position frame)", got.Last)
	}
	wantNoErrors(t, a)
}

// TestSharingOff: with shared: false every tab holds its own stream.
func TestSharingOff(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	query := q("url", "/events", "user", user, "shared", "0")
	a, f := b.open("A", query), b.open("F", query)
	a.waitOpen()
	f.waitOpen()
	if l := leaders(a, f); len(l) != 2 {
		t.Fatalf("%d tabs hold a stream, want 2", len(l))
	}
	if n := metric(t, streamsOpen); n != 2 {
		t.Fatalf("the server has %v streams open, want 2", n)
	}
	for n := 1; n <= 3; n++ {
		publish(t, false, user, n)
	}
	a.wantMsgs(seq(1, 3))
	f.wantMsgs(seq(1, 3))
}

func wantTokens(t *testing.T, user string, want ...string) {
	t.Helper()
	var got []string
	for _, c := range env.backend.authCalls(user) {
		got = append(got, c.token)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the auth API saw tokens %q, want %q", got, want)
	}
}

func wantNoErrors(t *testing.T, tb *tab) {
	t.Helper()
	var errs []any
	tb.get(`T.errors`, &errs)
	if len(errs) != 0 {
		t.Fatalf("tab %s: onError got %v, want nothing", tb.name, errs)
	}
	if exc := tb.console.Exceptions(); len(exc) > 0 {
		t.Fatalf("tab %s threw:\n%v", tb.name, exc)
	}
}

func wantStopped(t *testing.T, tb *tab, status int, message string) {
	t.Helper()
	var errs []struct {
		Status  int
		Message string
	}
	tb.get(`T.errors`, &errs)
	if len(errs) != 1 || errs[0].Status != status || errs[0].Message != message {
		t.Fatalf("tab %s: onError got %+v, want one error %d %q", tb.name, errs, status, message)
	}
	var st struct {
		Status     string
		HTTPStatus int
	}
	tb.get(`T.state`, &st)
	if st.Status != "closed" || st.HTTPStatus != status {
		t.Fatalf("tab %s: state %+v, want closed with httpStatus %d", tb.name, st, status)
	}
}
