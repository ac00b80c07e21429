package index

import (
	"fmt"
	"testing"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
)

// member is a stream of user in groups, added to ix's user index and, for
// its groups, to the group index of groupsAt.
func member(ix, groupsAt *Index, user string, broadcast bool, groups ...string) *Subscriber {
	s := NewSubscriber(user, broadcast, NewOwner(QueueLimit{Events: 16}))
	s.SetGroups(groups)
	ix.Add(s)
	groupsAt.AddGroups(s, groups)
	return s
}

// A message to users and groups reaches each stream once, however many
// ways it matches; a group no stream is in reaches nobody.
func TestIndexDeliversGroupsOnce(t *testing.T) {
	ix := New(Key{Fields: message.Fields{Recipient: "to", Group: "groups"}})
	alice := member(ix, ix, "alice", false, "g1", "g2")
	bob := member(ix, ix, "bob", false, "g1")
	carol := member(ix, ix, "carol", true, "g2")
	dave := member(ix, ix, "dave", true)
	erin := member(ix, ix, "erin", false)
	send := func(r message.Route, text string) Counts {
		return ix.Deliver(&r, r.Users, r.Groups, sse.Message("", []byte(text)))
	}
	send(message.Route{Groups: []string{"g1"}}, "to g1")
	send(message.Route{Users: []string{"alice", "erin"}, Groups: []string{"g1", "g2"}}, "to alice, erin, g1, g2")
	send(message.Route{Broadcast: true, Groups: []string{"g2"}}, "to all and g2")
	if c := send(message.Route{Groups: []string{"nobody's"}}, "to nobody's"); c.Delivered != 0 {
		t.Errorf("a group without streams: %+v", c)
	}
	for s, want := range map[*Subscriber]string{
		alice: "[to g1 to alice, erin, g1, g2 to all and g2]",
		bob:   "[to g1 to alice, erin, g1, g2]",
		carol: "[to alice, erin, g1, g2 to all and g2]",
		dave:  "[to all and g2]",
		erin:  "[to alice, erin, g1, g2]",
	} {
		if got := fmt.Sprint(drain(s)); got != want {
			t.Errorf("%s got %s, want %s", s.User(), got, want)
		}
	}
	// Leaving a group stops its messages.
	ix.RemoveGroups(bob, []string{"g1"})
	bob.SetGroups(nil)
	send(message.Route{Groups: []string{"g1"}}, "to g1 again")
	if got := drain(bob); len(got) != 0 {
		t.Errorf("bob, out of g1, got %q", got)
	}
	if got := drain(alice); len(got) != 1 {
		t.Errorf("alice got %q, want the message to g1", got)
	}
}

// With partitions, a stream's user index and the index that delivers its
// groups differ: a message published to both partitions reaches it once,
// from the partition of the first way it matches.
func TestIndexGroupsAcrossPartitions(t *testing.T) {
	key := Key{Fields: message.Fields{Recipient: "to", Group: "groups"}}
	userPart, groupPart := New(key), New(key)
	alice := member(userPart, groupPart, "alice", false, "g")
	bob := member(userPart, groupPart, "bob", false, "g")
	r := message.Route{Users: []string{"alice"}, Groups: []string{"g"}}
	f := sse.Message("", []byte("m"))
	userPart.Deliver(&r, r.Users, nil, f)   // the copy on alice's partition
	groupPart.Deliver(&r, nil, r.Groups, f) // the copy on g's partition
	if got := drain(alice); len(got) != 1 {
		t.Errorf("alice got %q, want the message once", got)
	}
	if got := drain(bob); len(got) != 1 {
		t.Errorf("bob got %q, want the message once", got)
	}
}
