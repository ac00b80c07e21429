package clienttest

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-notify/notify/examples/internal/browsertest"
)

// settle is how long a test waits before it checks that something did not
// happen: the streams' retry field is 200ms (100ms on the fake ones) and
// minDelay 20ms, so a tab that reconnected or took over would have done so.
const settle = 600 * time.Millisecond

// TestSignOutEndsEveryTab: signOut() in one tab ends the stream of every
// tab of that user at once (the server holds no stream of the user any
// more, and nobody reconnects), nothing published afterwards reaches any
// tab, and no storage of any tab holds a key or a value naming the user.
// From the leader or a follower; with Web Locks, with the localStorage
// lease, and without BroadcastChannel (every tab holds its own stream and
// only storage events reach the others).
func TestSignOutEndsEveryTab(t *testing.T) {
	for _, tc := range []struct {
		name    string
		url     string
		stream  bool
		nolocks bool
		nobc    bool
		leader  bool // sign out in the leader tab, else in a follower
	}{
		{name: "stream, from the leader", url: "/sevents", stream: true, leader: true},
		{name: "stream-localStorage-lease, from a follower", url: "/sevents", stream: true, nolocks: true},
		{name: "pubsub, from a follower", url: "/events"},
		{name: "no BroadcastChannel", url: "/sevents", stream: true, nolocks: true, nobc: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := userFor(t)
			b := newBrowser(t)
			query := q("url", tc.url, "user", user, "minDelay", "20")
			if tc.nolocks {
				query.Set("nolocks", "1")
			}
			if tc.nobc {
				query.Set("nobc", "1")
			}
			tabs := []*tab{b.open("A", query), b.open("B", query), b.open("C", query)}
			for _, tb := range tabs {
				tb.waitOpen()
			}
			if tc.nobc && tabs[0].bool(`'BroadcastChannel' in window`) {
				t.Fatal("the page still has BroadcastChannel")
			}
			for n := 1; n <= 3; n++ {
				publish(t, tc.stream, user, n)
			}
			for _, tb := range tabs {
				tb.wantMsgs(seq(1, 3))
			}
			if tc.stream {
				// Stored positions exist, so the check after the sign-out
				// means something.
				if keys := tabs[0].strings(`Object.keys(localStorage).filter((k) => k.includes(` + browsertest.JSString(user) + `))`); len(keys) == 0 {
					t.Fatal("before the sign-out, localStorage holds no key of the user")
				}
			}
			calls := len(env.backend.authCalls(user))

			from := tabs[1]
			if tc.leader {
				from = tabs[0]
			}
			if !tc.nobc && from.bool(`T.leader`) != tc.leader {
				t.Fatalf("tab %s leads: %v, want %v", from.name, !tc.leader, tc.leader)
			}
			from.run(`T.signOut()`)
			time.Sleep(settle)
			for n := 4; n <= 6; n++ {
				publishAfter(t, tc.stream, user, n)
			}
			time.Sleep(settle)

			for _, tb := range tabs {
				if got := tb.ints(`T.msgs`); !slices.Equal(got, seq(1, 3)) {
					t.Errorf("tab %s received %v, want exactly [1 2 3]: a tab of the user still streamed after the sign-out", tb.name, got)
				}
			}
			if n := metric(t, streamsOpen); n != 0 {
				t.Errorf("the server holds %v streams after the sign-out, want 0", n)
			}
			if n := len(env.backend.authCalls(user)) - calls; n != 0 {
				t.Errorf("%d auth calls after the sign-out, want 0: a tab reconnected or took over", n)
			}
			wantNothingOf(t, user, tabs...)
			for _, tb := range tabs {
				if !tb.bool(`T.state.status === 'closed' && T.state.signedOut === true && !T.leader`) {
					var st any
					tb.get(`T.state`, &st)
					t.Errorf("tab %s: state %v, want closed and signedOut", tb.name, st)
				}
				wantNoErrors(t, tb)
			}
		})
	}
}

// TestUsersOneAfterAnother: a user signs out in one tab and another signs
// in, in that tab and a new one, in the same browser profile. The first
// user's other tab, which led the stream (a stale leader: its page still
// shows the first user), stops with the sign-out: no tab ever receives an
// event of the other user, in stream and pub/sub mode, with Web Locks and
// with the lease.
func TestUsersOneAfterAnother(t *testing.T) {
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
			x := userFor(t)
			y := strings.Replace(x, "Test", "Next", 1) // neither names the other
			b := newBrowser(t)
			query := q("url", tc.url, "user", x, "minDelay", "20")
			if tc.nolocks {
				query.Set("nolocks", "1")
			}
			a, bb := b.open("A", query), b.open("B", query)
			a.waitOpen()
			bb.waitOpen()
			if !a.bool(`T.leader`) {
				t.Fatal("tab A does not lead")
			}
			publish(t, tc.stream, x, 1)
			publish(t, tc.stream, x, 2)
			a.wantRecv(x+":1", x+":2")
			bb.wantRecv(x+":1", x+":2")

			// In tab B, x signs out and y signs in; tab C opens as y (the
			// application renders it for whoever the cookie names).
			bb.run(`T.signOut(); T.signIn(` + browsertest.JSString(y) + `)`)
			query.Set("user", "@cookie")
			c := b.open("C", query)
			bb.waitOpen()
			c.waitOpen()

			for n := 10; n <= 12; n++ {
				publishAfter(t, tc.stream, x, n)
			}
			for n := 20; n <= 22; n++ {
				publish(t, tc.stream, y, n)
			}
			bb.wantRecv(x+":1", x+":2", y+":20", y+":21", y+":22")
			c.wantRecv(y+":20", y+":21", y+":22")
			time.Sleep(settle)
			a.wantRecv(x+":1", x+":2")
			bb.wantRecv(x+":1", x+":2", y+":20", y+":21", y+":22")
			if !a.bool(`T.state.status === 'closed' && T.state.signedOut === true`) {
				t.Fatal("the first user's leader tab did not stop at the sign-out")
			}
			if n := metric(t, streamsOpen); n != 1 {
				t.Fatalf("the server holds %v streams, want 1 (the second user's)", n)
			}
			wantNothingOf(t, x, a, bb, c)
			for _, tb := range []*tab{a, bb, c} {
				wantNoErrors(t, tb)
			}
		})
	}
}

// TestSignOutRace: two tabs sign out at the same moment as the leader tab
// closes, so that a follower may be granted the lead while the sign-out is
// on its way: every tab ends, no stream is left on the server, nothing
// published afterwards is received, and nothing of the user stays stored.
func TestSignOutRace(t *testing.T) {
	for _, nolocks := range []bool{false, true} {
		name := "Web Locks"
		if nolocks {
			name = "localStorage lease"
		}
		t.Run(name, func(t *testing.T) {
			user := userFor(t)
			b := newBrowser(t)
			query := q("url", "/sevents", "user", user, "minDelay", "20")
			if nolocks {
				query.Set("nolocks", "1")
			}
			a, bb, c, d := b.open("A", query), b.open("B", query), b.open("C", query), b.open("D", query)
			for _, tb := range []*tab{a, bb, c, d} {
				tb.waitOpen()
			}
			for n := 1; n <= 3; n++ {
				publish(t, true, user, n)
			}
			for _, tb := range []*tab{a, bb, c, d} {
				tb.wantMsgs(seq(1, 3))
			}
			var wg sync.WaitGroup
			wg.Add(3)
			go func() { defer wg.Done(); a.close() }()
			go func() { defer wg.Done(); bb.run(`T.signOut()`) }()
			go func() { defer wg.Done(); c.run(`T.signOut()`) }()
			wg.Wait()
			rest := []*tab{bb, c, d}
			time.Sleep(settle)
			for n := 4; n <= 6; n++ {
				publishAfter(t, true, user, n)
			}
			time.Sleep(settle)
			for _, tb := range rest {
				if got := tb.ints(`T.msgs`); !slices.Equal(got, seq(1, 3)) {
					t.Errorf("tab %s received %v, want exactly [1 2 3]", tb.name, got)
				}
				if !tb.bool(`T.state.status === 'closed' && T.state.signedOut === true`) {
					t.Errorf("tab %s did not stop", tb.name)
				}
			}
			if n := metric(t, streamsOpen); n != 0 {
				t.Errorf("the server holds %v streams after the sign-out, want 0", n)
			}
			wantNothingOf(t, user, rest...)
		})
	}
}

// TestSignOutWhileATabReloads: a follower tab is between two pages (its
// reload has replaced the page, whose client is not running yet) when the
// user signs out in another tab and the next user signs in there. The
// reloaded page starts as the next user: it never receives the first
// user's events, and the position its previous page stored in its
// sessionStorage, which no sign-out could reach, is gone once it starts.
func TestSignOutWhileATabReloads(t *testing.T) {
	x := userFor(t)
	y := strings.Replace(x, "Test", "Next", 1) // neither names the other
	b := newBrowser(t)
	a := b.open("A", q("url", "/sevents", "user", x, "minDelay", "20"))
	a.waitOpen()
	slow := env.backend.slowLoads()
	f := b.open("F", q("url", "/sevents", "user", "@cookie", "minDelay", "20", "slow", "1500"))
	f.waitOpen()
	for n := 1; n <= 3; n++ {
		publish(t, true, x, n)
	}
	a.wantRecv(x+":1", x+":2", x+":3")
	f.wantRecv(x+":1", x+":2", x+":3")
	if f.bool(`T.leader`) {
		t.Fatal("tab F leads")
	}

	f.run(`setTimeout(() => location.reload(), 0)`)
	waitUntil(t, 5*time.Second, "the reloaded page to ask for its script", func() bool { return env.backend.slowLoads() == slow+2 })
	a.run(`T.signOut()`)
	publishAfter(t, true, x, 4)
	a.run(`T.signIn(` + browsertest.JSString(y) + `)`)
	a.waitOpen()
	f.waitFor("the reloaded page's client", `window.T !== undefined && T.life === 2 && T.client !== null`)
	f.waitOpen()
	for n := 20; n <= 21; n++ {
		publish(t, true, y, n)
	}
	a.wantRecv(x+":1", x+":2", x+":3", y+":20", y+":21")
	f.wantRecv(x+":1", x+":2", x+":3", y+":20", y+":21")
	wantNothingOf(t, x, a, f)
	for _, tb := range []*tab{a, f} {
		wantNoErrors(t, tb)
	}
}

// TestUserRequired: a client needs the user (its key in storage, the name
// of its lock and channel); without one, or with an empty one, connect
// throws a TypeError and nothing is requested. A user is a non-empty
// string without control characters, or a finite number.
func TestUserRequired(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	a := b.open("A", q("url", "/events", "user", user, "nouser", "1"))
	var startErr struct{ Name, Message string }
	a.get(`T.startError`, &startErr)
	if startErr.Name != "TypeError" || !a.bool(`T.client === null`) {
		t.Fatalf("connect without a user: %+v, want a TypeError", startErr)
	}
	t.Logf("connect without a user: %s: %s", startErr.Name, startErr.Message)
	got := a.strings(`[undefined, null, '', 'a\nb', 'a\u0000', NaN, Infinity, {}, true].map((user) => {
		try {
			T.connect('/nowhere', { user }).close();
			return 'accepted';
		} catch (err) {
			return err.name;
		}
	})`)
	if want := slices.Repeat([]string{"TypeError"}, 9); !slices.Equal(got, want) {
		t.Fatalf("connect with bad users: %v, want %v", got, want)
	}
	if ok := a.strings(`['0', 'alice', 'élodie', 42, 0].map((user) => {
		try {
			T.connect('/nowhere', { user, shared: false }).close();
			return 'accepted';
		} catch (err) {
			return err.name + ': ' + err.message;
		}
	})`); !slices.Equal(ok, slices.Repeat([]string{"accepted"}, 5)) {
		t.Fatalf("connect with good users: %v, want all accepted", ok)
	}
	time.Sleep(settle)
	if n := len(env.backend.authCalls(user)); n != 0 {
		t.Fatalf("%d auth calls, want 0", n)
	}
	wantNoErrors(t, a)
}

// TestSignOutThenLeave: the page signs out in the leader tab and leaves at
// once (to a sign-in page), before the moment the leader keeps its place
// is over. Where the lease in localStorage stands in for Web Locks, the
// lease it renewed meanwhile must not outlive the page. Another user's
// tab looks at the origin's localStorage afterwards.
func TestSignOutThenLeave(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	a := b.open("A", q("url", "/sevents", "user", user, "nolocks", "1"))
	a.waitOpen()
	publish(t, true, user, 1)
	a.wantMsgs(seq(1, 1))
	o := b.open("O", q("url", "/sevents", "user", strings.Replace(user, "Test", "Other", 1), "nolocks", "1"))
	o.waitOpen()
	if n := len(o.strings(`Object.keys(localStorage).filter((k) => k.includes(` + browsertest.JSString(user) + ` + '\nlease'))`)); n != 1 {
		t.Fatalf("%d leases of the user in localStorage before the sign-out, want 1", n)
	}
	// The leader renews its lease every 500ms, and keeps its place 500ms
	// after the sign-out: the page leaves as soon as the lease is back (or
	// after 450ms).
	a.run(`T.signOut();
		const leave = () => location.assign('about:blank');
		const lease = ` + browsertest.JSString(user) + ` + '\nlease';
		setInterval(() => Object.keys(localStorage).some((k) => k.endsWith(lease)) && leave(), 5);
		setTimeout(leave, 450)`)
	time.Sleep(3 * settle)
	wantNothingOf(t, user, o)
}
