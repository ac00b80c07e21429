package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// A fault run: publishing goes on to several handlers while Redis fails
// (a master killed, slots moved, connections killed), then every stream
// is checked. What must hold:
//   - no stream ends;
//   - each stream gets its events in order, each at most once, and
//     nothing it was not sent;
//   - stream mode: every entry a replica acknowledged (WAIT 1) arrives;
//   - pub/sub: every message published once the module reads every
//     partition again arrives; what was lost before is counted.

// faultTarget is one handler under a fault.
type faultTarget struct {
	name string // also the tag of its messages
	url  string
	pub  *publish.Publisher
}

// sentMsg is one publication of a message to a target.
type sentMsg struct {
	m   testMsg
	res publish.Result
}

type faultRun struct {
	t       testing.TB
	targets []faultTarget
	users   []string
	streams [][]*testkit.Stream // by target, then user

	mu        sync.Mutex
	sent      [][]sentMsg // by target, in order of n
	recovered int         // n from which pub/sub must deliver; -1 until known
	stop      chan struct{}
	done      chan struct{}
}

// startFaultRun opens a stream per user on each target and starts
// publishing: a message to one user, rotating, and every tenth a
// broadcast, to every target, every few milliseconds.
func startFaultRun(t testing.TB, targets []faultTarget, users []string) *faultRun {
	t.Helper()
	fr := &faultRun{t: t, targets: targets, users: users, sent: make([][]sentMsg, len(targets)), recovered: -1,
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, tg := range targets {
		var ss []*testkit.Stream
		for _, u := range users {
			ss = append(ss, openStreamWhenUp(t, tg.url, u+"-token", ""))
		}
		fr.streams = append(fr.streams, ss)
	}
	go fr.publish()
	t.Cleanup(fr.halt)
	return fr
}

func (fr *faultRun) publish() {
	defer close(fr.done)
	tick := time.NewTicker(4 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-fr.stop:
			return
		case <-tick.C:
		}
		m := testMsg{n, []string{fr.users[n%len(fr.users)]}}
		if n%10 == 9 {
			m.to = []string{publish.Broadcast}
		}
		for i, tg := range fr.targets {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res, _ := tg.pub.Publish(ctx, []byte(m.payload(tg.name)), m.to...) // each target carries its error
			cancel()
			fr.mu.Lock()
			fr.sent[i] = append(fr.sent[i], sentMsg{m, res})
			fr.mu.Unlock()
		}
	}
}

func (fr *faultRun) halt() {
	select {
	case <-fr.stop:
	default:
		close(fr.stop)
	}
	<-fr.done
}

func (fr *faultRun) published() int {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return len(fr.sent[len(fr.sent)-1])
}

// markRecovered waits until every partition of every handler is read
// again; from the next message on, pub/sub must deliver everything.
func (fr *faultRun) markRecovered() {
	fr.t.Helper()
	testkit.WaitFor(fr.t, 60*time.Second, "every partition to be read again", func() bool {
		return readersUp()
	})
	n := fr.published() + 1 // past a round that may have started before
	fr.mu.Lock()
	fr.recovered = n
	fr.mu.Unlock()
}

// faultStats is what one target's streams received.
type faultStats struct {
	expected int // deliveries of messages published without error
	received int
	lost     int // expected and not received (pub/sub, before recovery)
}

// finish lets publishing run on after the recovery, stops it, and checks
// every stream; it returns each target's figures.
func (fr *faultRun) finish() []faultStats {
	t := fr.t
	t.Helper()
	if fr.recovered < 0 {
		fr.markRecovered()
	}
	after := fr.recovered + 50
	testkit.WaitFor(t, 60*time.Second, "50 messages published after the recovery", func() bool { return fr.published() > after })
	fr.halt()
	stats := make([]faultStats, len(fr.targets))
	for i, tg := range fr.targets {
		pub := *tg.pub
		pub.WaitReplicas = 0 // the markers only need to arrive
		for _, u := range fr.users {
			marker := endMarker(u)
			testkit.WaitFor(t, 30*time.Second, "the end marker to be published", func() bool {
				_, err := pub.Publish(t.Context(), []byte(marker.payload(tg.name)), marker.to...)
				return err == nil
			})
		}
		for j, u := range fr.users {
			got, _ := eventsUntil(t, fr.streams[i][j], endMarker(u).payload(tg.name), 30*time.Second)
			fr.check(tg, u, got, &stats[i])
		}
	}
	return stats
}

// check compares what user u's stream on tg got with what was sent.
func (fr *faultRun) check(tg faultTarget, u string, got []testkit.Frame, st *faultStats) {
	t := fr.t
	t.Helper()
	idx := -1
	for i := range fr.targets {
		if fr.targets[i].name == tg.name {
			idx = i
		}
	}
	sent := fr.sent[idx]
	part := publish.Partition(u, max(tg.pub.Partitions, 1))
	copyFor := func(s sentMsg) publish.Target {
		for _, c := range s.res.Targets {
			if c.Partition == part {
				return c
			}
		}
		return publish.Target{Err: fmt.Errorf("no copy on partition %d", part)}
	}
	last := -1
	received := map[int]bool{}
	for _, ev := range got {
		var body struct{ N int }
		if err := json.Unmarshal([]byte(ev.Data), &body); err != nil || body.N <= last || body.N >= len(sent) {
			t.Fatalf("%s, user %s: event %q after n=%d: out of order, repeated or never sent", tg.name, u, ev.Data, last)
		}
		s := sent[body.N]
		if !s.m.isFor(u) || ev.Data != s.m.payload(tg.name) {
			t.Fatalf("%s, user %s: got %q, which was not sent to it", tg.name, u, ev.Data)
		}
		if c := copyFor(s); tg.pub.Stream != "" && c.ID != "" && ev.ID != c.ID {
			t.Fatalf("%s, user %s: message %d has id %q, want %q", tg.name, u, body.N, ev.ID, c.ID)
		}
		last = body.N
		received[body.N] = true
	}
	for _, s := range sent {
		if !s.m.isFor(u) {
			continue
		}
		c := copyFor(s)
		if c.Err == nil {
			st.expected++
		}
		if received[s.m.n] {
			st.received++
			continue
		}
		switch {
		case tg.pub.Stream != "" && c.Err == nil && c.Replicas >= 1:
			t.Errorf("%s, user %s: entry %s (message %d), acknowledged by a replica, never arrived", tg.name, u, c.ID, s.m.n)
		case tg.pub.Stream == "" && c.Err == nil && s.m.n >= fr.recovered:
			t.Errorf("%s, user %s: message %d, published after the recovery, never arrived", tg.name, u, s.m.n)
		case c.Err == nil:
			st.lost++
		}
	}
}
