package notify

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
	"github.com/caddy-notify/notify/publish"
)

// Planned traffic for the scaling tests, and each stream's exact
// expectation: which events, in which order, with which entry IDs.

// scaleUsers are the users of the scaling tests: numeric ids, which the
// auth API returns as JSON integers and messages name as integers, and
// string ids.
var scaleUsers = []string{
	"100", "101", "102", "103", "104", "105", "106", "107", "108", "109",
	"110", "111", "112", "113", "114", "115", "alice", "bob", "carol", "dave",
}

// scaleAuth answers "<id>-token" with the user id, numeric ones as integers.
func scaleAuth(t testing.TB) *testkit.AuthAPI {
	replies := map[string]testkit.AuthReply{}
	for _, u := range scaleUsers {
		body := fmt.Sprintf(`{"user_id":%q}`, u)
		if u[0] >= '0' && u[0] <= '9' {
			body = fmt.Sprintf(`{"user_id":%s}`, u)
		}
		replies[u+"-token"] = testkit.AuthReply{Status: 200, Body: body}
	}
	return testkit.StartAuthAPI(t, replies)
}

// checkDelivery opens a stream on url for every user (two for the first),
// publishes a mixed plan with pub, and checks each stream's exact sequence.
func checkDelivery(t testing.TB, url string, pub *publish.Publisher, tag string) {
	t.Helper()
	streams := map[string][]*testkit.Stream{}
	for _, u := range append([]string{scaleUsers[0]}, scaleUsers...) {
		streams[u] = append(streams[u], openStreamWhenUp(t, url, u+"-token", ""))
	}
	plan := mixedPlan(scaleUsers, 60)
	expectPlan(t, pub, tag, plan, publishPlan(t, pub, tag, plan), streams)
}

// testMsg is one planned message: its number and its recipients, as
// canonical ids ("*" for a broadcast). An id made of digits is written as a
// JSON integer, so partitioning by an integer's decimal text is exercised.
type testMsg struct {
	n  int
	to []string
}

func (m testMsg) payload(tag string) string {
	parts := make([]string, len(m.to))
	for i, id := range m.to {
		if _, err := strconv.ParseUint(id, 10, 64); err == nil {
			parts[i] = id
		} else {
			parts[i] = strconv.Quote(id)
		}
	}
	rcpt := parts[0]
	if len(parts) > 1 {
		rcpt = "[" + strings.Join(parts, ",") + "]"
	}
	return fmt.Sprintf(`{"recipient_id":%s,"tag":%q,"n":%d}`, rcpt, tag, m.n)
}

func (m testMsg) isFor(user string) bool {
	return slices.Contains(m.to, user) || slices.Contains(m.to, publish.Broadcast)
}

// mixedPlan is count messages over users: one recipient, every fifth
// message three, every seventh a broadcast.
func mixedPlan(users []string, count int) []testMsg {
	plan := make([]testMsg, count)
	for i := range plan {
		u := users[i%len(users)]
		switch {
		case i%7 == 6:
			plan[i] = testMsg{i, []string{publish.Broadcast}}
		case i%5 == 4:
			plan[i] = testMsg{i, []string{u, users[(i+3)%len(users)], users[(i+11)%len(users)]}}
		default:
			plan[i] = testMsg{i, []string{u}}
		}
	}
	return plan
}

// publishPlan publishes every message of plan with pub, in order, and
// returns what each publication did.
func publishPlan(t testing.TB, pub *publish.Publisher, tag string, plan []testMsg) []publish.Result {
	t.Helper()
	out := make([]publish.Result, len(plan))
	for i, m := range plan {
		res, err := pub.Publish(t.Context(), []byte(m.payload(tag)), m.to...)
		if err != nil {
			t.Fatalf("publishing message %d: %v", m.n, err)
		}
		out[i] = res
	}
	return out
}

// expectedFor is what a stream of user (with broadcast on) must receive of
// plan, in order: the data, and in stream mode the entry ID of the copy on
// the user's partition.
func expectedFor(user string, plan []testMsg, results []publish.Result, tag string, partitions int) []testkit.Frame {
	part := publish.Partition(user, partitions)
	var want []testkit.Frame
	for i, m := range plan {
		if !m.isFor(user) {
			continue
		}
		ev := testkit.Frame{Kind: testkit.FrameEvent, Data: m.payload(tag)}
		for _, tg := range results[i].Targets {
			if tg.Partition == part {
				ev.ID = tg.ID
			}
		}
		want = append(want, ev)
	}
	return want
}

// endMarker is the message that ends a user's expected sequence.
func endMarker(user string) testMsg { return testMsg{-1, []string{user}} }

// eventsUntil reads s's events until one whose data is marker, and returns
// those before it, and the marker event.
func eventsUntil(t testing.TB, s *testkit.Stream, marker string, timeout time.Duration) (before []testkit.Frame, end testkit.Frame) {
	t.Helper()
	var got []testkit.Frame
	for {
		ev := s.Next(t, timeout)
		if ev.Data == marker {
			return got, ev
		}
		got = append(got, ev)
	}
}

// expectPlan publishes each user's end marker and checks that each
// stream received exactly its expected events before it, in order. It
// returns the marker events each user's streams got, in stream order: in
// stream mode, their IDs are where the streams stand.
func expectPlan(t testing.TB, pub *publish.Publisher, tag string, plan []testMsg, results []publish.Result,
	streams map[string][]*testkit.Stream,
) map[string][]testkit.Frame {
	t.Helper()
	markers := map[string][]testkit.Frame{}
	n := max(pub.Partitions, 1)
	for user := range streams {
		publishPlan(t, pub, tag, []testMsg{endMarker(user)})
	}
	for user, ss := range streams {
		want := expectedFor(user, plan, results, tag, n)
		if len(want) == 0 || (pub.Stream != "" && slices.ContainsFunc(want, func(ev testkit.Frame) bool { return ev.ID == "" })) {
			t.Fatalf("user %s: the plan expects nothing, or events without entry IDs: %v", user, want)
		}
		marker := endMarker(user).payload(tag)
		for i, s := range ss {
			got, end := eventsUntil(t, s, marker, 20*time.Second)
			if !slices.Equal(got, want) {
				t.Errorf("user %s, stream %d: got %d events, want %d:\ngot  %v\nwant %v", user, i, len(got), len(want), got, want)
			}
			markers[user] = append(markers[user], end)
		}
	}
	return markers
}
