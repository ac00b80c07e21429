package index

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/internal/sse"
)

// BenchmarkDispatch measures routing one message to one stream while
// `others` unrelated streams are registered: the cost must not grow with
// them.
func BenchmarkDispatch(b *testing.B) {
	for _, others := range []int{1, 10, 1_000_000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			ix := New(Key{Fields: message.Fields{Recipient: "recipient_id"}})
			for i := range others {
				ix.Add(NewSubscriber("other-"+strconv.Itoa(i), false, NewOwner(QueueLimit{Events: 8})))
			}
			target := NewSubscriber("42", false, NewOwner(QueueLimit{Events: 1 << 30}))
			ix.Add(target)
			payload := []byte(`{"recipient_id":42,"type":"order_paid","order":{"id":1234,"total":"19.99"}}`)
			buf := make([]*sse.Frame, 0, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r, _ := message.Parse(payload, ix.Key().Fields)
				ev := sse.Message(r.Event, payload)
				ix.Deliver(&r, r.Users, r.Groups, ev)
				if i%1024 == 1023 {
					buf, _, _ = target.Take(buf)
				}
			}
		})
	}
}

// BenchmarkDeliver isolates the per-stream cost: one pre-framed event to a
// user with 100 streams (fan-out), allocations per delivery included.
func BenchmarkDeliver(b *testing.B) {
	ix := New(Key{Fields: message.Fields{Recipient: "recipient_id"}})
	var subs []*Subscriber
	for range 100 {
		s := NewSubscriber("u", false, NewOwner(QueueLimit{Events: 1 << 30}))
		subs = append(subs, s)
		ix.Add(s)
	}
	ev := sse.Message("", []byte(`{"recipient_id":"u"}`))
	users := []string{"u"}
	buf := make([]*sse.Frame, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		deliver(ix, users, false, ev)
		if i%32 == 31 {
			for _, s := range subs {
				buf, _, _ = s.Take(buf)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/delivery")
}

// BenchmarkIndexChurn measures streams connecting and disconnecting from
// every core at once, each on its own user: what shard locks cost when they
// are not contended.
func BenchmarkIndexChurn(b *testing.B) {
	ix := New(Key{Fields: message.Fields{Recipient: "recipient_id"}})
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		s := NewSubscriber("user-"+strconv.FormatInt(next.Add(1), 10), false, NewOwner(QueueLimit{Events: 8}))
		for pb.Next() {
			ix.Add(s)
			ix.Remove(s)
		}
	})
}
