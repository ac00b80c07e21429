package clienttest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestNamedEvents: events the handler names (`event_field`) reach the
// listeners of their name, on(name, fn), in every tab, exactly once each
// and in order, and onMessage too; an unnamed event reaches onMessage and
// on('message') only. A message named "reset" or "revoked" by the
// application is an ordinary event: only the handler's own frames, whose
// data is exactly {"reason": ...}, are control events. When the leader tab
// leaves, the next one resumes after the last ID and the names survive the
// relay and the followers' catch-up; a listener removed with the function
// on() returned is not called again.
func TestNamedEvents(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	query := q("url", "/fake/named", "user", user, "on", "order_paid,order_shipped,message,unheard")
	a, bb, c := b.open("A", query), b.open("B", query), b.open("C", query)
	tabs := []*tab{a, bb, c}
	for _, tb := range tabs {
		tb.waitOpen()
	}
	if l := leaders(tabs...); len(l) != 1 || l[0] != a {
		t.Fatal("tab A does not lead alone")
	}
	env.backend.appendNamed(user,
		namedFrame(1, "order_paid"),
		namedFrame(2, ""),
		namedFrame(3, "order_shipped"),
		namedFrame(4, "reset"),   // the application's, not the handler's
		namedFrame(5, "revoked"), // likewise: the client must not stop
		namedFrame(6, "order_paid"),
		controlReset(7, "history_truncated"),
		namedFrame(8, "order_paid"),
	)
	type seen struct {
		Msgs, Paid, Shipped, Unnamed, Unheard []int
		Types, Resets, Revoked                []string
		Status                                string
	}
	const read = `{msgs: T.msgs, paid: T.named.order_paid, shipped: T.named.order_shipped, unnamed: T.named.message,
		unheard: T.named.unheard, types: T.types, resets: T.resets, revoked: T.revoked, status: T.state.status}`
	want := seen{
		Msgs:    []int{1, 2, 3, 4, 5, 6, 8},
		Types:   []string{"order_paid", "message", "order_shipped", "reset", "revoked", "order_paid", "order_paid"},
		Paid:    []int{1, 6, 8},
		Shipped: []int{3},
		Unnamed: []int{2},
		Unheard: []int{},
		Resets:  []string{"history_truncated"},
		Revoked: []string{},
		Status:  "open",
	}
	check := func(tb *tab, want seen) {
		t.Helper()
		tb.waitMsgs(len(want.Msgs))
		time.Sleep(50 * time.Millisecond) // a duplicate would follow at once
		var got seen
		tb.get(read, &got)
		if !slices.Equal(got.Msgs, want.Msgs) || !slices.Equal(got.Types, want.Types) || !slices.Equal(got.Paid, want.Paid) ||
			!slices.Equal(got.Shipped, want.Shipped) || !slices.Equal(got.Unnamed, want.Unnamed) || !slices.Equal(got.Unheard, want.Unheard) ||
			!slices.Equal(got.Resets, want.Resets) || !slices.Equal(got.Revoked, want.Revoked) || got.Status != want.Status {
			t.Fatalf("tab %s saw\n%+v\nwant\n%+v", tb.name, got, want)
		}
	}
	for _, tb := range tabs {
		check(tb, want)
	}

	// B stops listening to order_shipped and C to order_paid (off); then
	// the leader leaves while more events come.
	bb.run(`T.unsub.order_shipped()`)
	c.run(`T.client.off('order_paid', T.fns.order_paid)`)
	a.close()
	var leader *tab
	waitUntil(t, 5*time.Second, "another tab to lead an open stream", func() bool {
		l := leaders(bb, c)
		if len(l) == 1 && l[0].bool(`T.state.status === 'open'`) {
			leader = l[0]
		}
		return leader != nil
	})
	env.backend.appendNamed(user, namedFrame(9, "order_shipped"), namedFrame(10, "order_paid"), namedFrame(11, ""))
	want.Msgs = append(want.Msgs, 9, 10, 11)
	want.Types = append(want.Types, "order_shipped", "order_paid", "message")
	want.Unnamed = append(want.Unnamed, 11)
	wantC := want
	wantC.Shipped = []int{3, 9}       // C's order_paid listener is gone
	want.Paid = append(want.Paid, 10) // B's order_shipped listener is gone
	check(c, wantC)
	check(bb, want)
	if n := env.backend.fakeCalls(user); n != 2 {
		t.Fatalf("%d requests for the stream, want 2 (one per leader)", n)
	}
	for _, tb := range []*tab{bb, c} {
		wantNoErrors(t, tb)
	}
}

// TestOnArguments: on() takes a name the handler can send and a function;
// "reset" and "revoked" are the handler's control events (onReset,
// onRevoked), so on() refuses them, as it refuses an empty name or a
// listener that is not a function. off() and the function on() returned
// remove a listener; adding the same listener twice adds it once.
func TestOnArguments(t *testing.T) {
	user := userFor(t)
	a := newBrowser(t).open("A", q("url", "/fake/named", "user", user))
	a.waitOpen()
	got := a.strings(`[['reset', () => {}], ['revoked', () => {}], ['', () => {}], ['a\nb', () => {}], [42, () => {}], ['x', null], ['x', {}]].map(([name, fn]) => {
		try {
			T.client.on(name, fn);
			return 'accepted';
		} catch (err) {
			return err.name;
		}
	})`)
	if want := slices.Repeat([]string{"TypeError"}, 7); !slices.Equal(got, want) {
		t.Fatalf("on() with bad arguments: %v, want %v", got, want)
	}
	a.run(`T.calls = [];
		const one = (m) => T.calls.push('one:' + JSON.parse(m.data).n);
		const two = (m) => T.calls.push('two:' + JSON.parse(m.data).n);
		const off1 = T.client.on('ping', one);
		T.client.on('ping', one);
		T.client.on('ping', two);
		T.offOne = off1;
		T.two = two;`)
	env.backend.appendNamed(user, namedFrame(1, "ping"))
	a.waitFor("the first event", `T.calls.length >= 2`)
	a.run(`T.offOne(); T.offOne()`)
	env.backend.appendNamed(user, namedFrame(2, "ping"))
	a.waitFor("the second event", `T.calls.length >= 3`)
	a.run(`T.client.off('ping', T.two)`)
	env.backend.appendNamed(user, namedFrame(3, "ping"), namedFrame(4, "done"))
	a.waitMsgs(4)
	if got := a.strings(`T.calls`); !slices.Equal(got, []string{"one:1", "two:1", "two:2"}) {
		t.Fatalf("listeners called %v, want [one:1 two:1 two:2]", got)
	}
	wantNoErrors(t, a)
}

// TestNamedEventsFromTheHandler: the same, end to end through the real
// handler with `event_field type` (and `groups_field`): a message whose
// type is a usable name reaches its named listeners in every tab, once and
// in order, whether it names the user or the user's group; one without a
// usable name reaches on('message').
func TestNamedEventsFromTheHandler(t *testing.T) {
	user := userFor(t)
	b := newBrowser(t)
	query := q("url", "/nevents", "user", user, "on", "order_paid,order_shipped,message")
	a, bb, c := b.open("A", query), b.open("B", query), b.open("C", query)
	tabs := []*tab{a, bb, c}
	for _, tb := range tabs {
		tb.waitOpen()
	}
	for i, m := range []map[string]any{
		{"recipient_id": user, "type": "order_paid"},
		{"recipient_id": user},
		{"groups": "team-" + user, "type": "order_shipped"},
		{"recipient_id": user, "type": "bad\nname"},
		{"groups": []string{"team-" + user, "team-nobody"}, "recipient_id": user, "type": "order_paid"},
		{"recipient_id": user, "type": 5},
	} {
		m["n"] = i + 1
		data, _ := json.Marshal(m)
		if err := env.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: streamKey, Values: []any{"data", data}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	type seen struct {
		Msgs, Paid, Shipped, Unnamed []int
	}
	want := seen{Msgs: []int{1, 2, 3, 4, 5, 6}, Paid: []int{1, 5}, Shipped: []int{3}, Unnamed: []int{2, 4, 6}}
	for _, tb := range tabs {
		tb.waitMsgs(len(want.Msgs))
		time.Sleep(50 * time.Millisecond) // a duplicate would follow at once
		var got seen
		tb.get(`{msgs: T.msgs, paid: T.named.order_paid, shipped: T.named.order_shipped, unnamed: T.named.message}`, &got)
		if !slices.Equal(got.Msgs, want.Msgs) || !slices.Equal(got.Paid, want.Paid) || !slices.Equal(got.Shipped, want.Shipped) ||
			!slices.Equal(got.Unnamed, want.Unnamed) {
			t.Errorf("tab %s saw %+v, want %+v", tb.name, got, want)
		}
		wantNoErrors(t, tb)
	}
}
