package hub

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
)

// streamReaderOn returns the reader of a one-partition set reading key on
// the Redis at url, once it is up.
func streamReaderOn(t *testing.T, url, key string, maxSize int) *streamReader {
	t.Helper()
	hs := newTestSet(t, url, Source{Stream: key, MaxMessageSize: maxSize, History: History{Entries: 10, Bytes: 1 << 20}}, Options{})
	if !hs.hubs[0].WaitUp(t.Context(), 5e9) {
		t.Fatal("reader not up")
	}
	return hs.hubs[0].reader.(*streamReader)
}

// A read of history stops at its byte budget (the first entry always
// comes), skips the fields of entries over max_message_size, and says when
// the range is done; without scripts (an ACL that forbids them) it reads
// pages sized by max_message_size instead, and returns the same entries.
func TestRevRangeIsBoundedInBytes(t *testing.T) {
	rs := testkit.StartRedis(t)
	admin := rs.Client()
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	kib100 := strings.Repeat("x", 100<<10)
	var ids []string
	for i := range 6 {
		v := kib100
		if i == 2 {
			v = strings.Repeat("y", 300<<10) // over max_message_size
		}
		id, err := admin.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"data", v}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "&*", "+@all", "-@scripting").Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url string
		rounds    int
		fields    []bool // newest first: whether the entry came with its fields
	}{
		// 250 KiB a read: [5 4] [3 2 1] [0]; entry 2, over 200 KiB, has
		// no fields and costs nothing.
		{"script", rs.URL(), 3, []bool{true, true, true, false, true, true}},
		// Pages of 16 MiB / 200 KiB = 81 entries: one read, every field.
		{"no script", "redis://noscript:pw@" + rs.Addr(), 1, []bool{true, true, true, true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := streamReaderOn(t, tc.url, "s", 200<<10)
			var gotIDs []string
			var gotFields []bool
			end, rounds := "+", 0
			for {
				msgs, done, err := r.revRange(ctx, end, "-", 1000, 250<<10)
				if err != nil {
					t.Fatal(err)
				}
				rounds++
				bytes := 0
				for i, m := range msgs {
					gotIDs = append(gotIDs, m.ID)
					gotFields = append(gotFields, len(m.Values) > 0)
					if i > 0 {
						bytes += fieldsSize(m.Values)
					}
					end = "(" + m.ID
				}
				if tc.name == "script" && bytes > 250<<10 {
					t.Errorf("a read of %d bytes past its first entry, for a budget of 250 KiB", bytes)
				}
				if done || len(msgs) == 0 {
					break
				}
			}
			wantIDs := []string{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
			if fmt.Sprint(gotIDs) != fmt.Sprint(wantIDs) || fmt.Sprint(gotFields) != fmt.Sprint(tc.fields) || rounds != tc.rounds {
				t.Errorf("read %v with fields %v in %d rounds; want %v, %v, %d", gotIDs, gotFields, rounds, wantIDs, tc.fields, tc.rounds)
			}
		})
	}
}
