package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-notify/notify/internal/message"
)

func TestPublishUnmarshalCaddyfile(t *testing.T) {
	var p PublishHandler
	err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`notify_publish {
		redis            redis+cluster://user:pw@127.0.0.1:7000
		stream           st
		partitions       16
		stream_field     body
		stream_maxlen    0
		recipient_field  to
		max_message_size 64KiB
		max_body         128MiB
		body_timeout     30s
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(p)
	want := `{"redis":"redis+cluster://user:pw@127.0.0.1:7000","partitions":16,"stream":"st","stream_field":"body",` +
		`"recipient_field":"to","max_message_size":65536,"stream_maxlen":0,"max_body":134217728,"body_timeout":30000000000}`
	if string(got) != want {
		t.Errorf("parsed\n%s\nwant\n%s", got, want)
	}

	for _, tt := range []struct{ name, input, wantErr string }{
		{"inline argument", "notify_publish extra", "notify_publish takes no arguments besides a matcher"},
		{"unknown", "notify_publish {\n auth_url http://a/\n}", `unrecognized notify_publish subdirective "auth_url"`},
		{"duplicate", "notify_publish {\n channel a\n channel b\n}", "channel specified more than once"},
		{"no value", "notify_publish {\n stream\n}", "stream takes exactly one argument"},
		{"sharded with argument", "notify_publish {\n sharded yes\n}", "sharded takes no arguments"},
		{"block", "notify_publish {\n channel a {\n x\n }\n}", "channel does not take a block"},
		{"bad maxlen", "notify_publish {\n stream_maxlen lots\n}", `stream_maxlen: "lots" is not a whole number`},
		{"bad size", "notify_publish {\n max_message_size big\n}", `max_message_size: "big" is not a size such as 32MiB`},
		{"bad max_body", "notify_publish {\n max_body big\n}", `max_body: "big" is not a size such as 32MiB`},
		{"zero max_body", "notify_publish {\n max_body 0\n}", "max_body: 0 is not allowed here; remove the line for the default"},
		{"negative max_body", "notify_publish {\n max_body -1\n}", "notify_publish: max_body must be a size from 1 byte to 1 GiB"},
		{"bad body_timeout", "notify_publish {\n body_timeout soon\n}", `body_timeout: "soon" is not a duration such as 500ms, 15s or 1d`},
		{"zero body_timeout", "notify_publish {\n body_timeout 0\n}", "body_timeout: 0 is not allowed here; remove the line for the default"},
		{"negative body_timeout", "notify_publish {\n body_timeout -1s\n}", "notify_publish: body_timeout must not be negative"},
		{"max_body over 1GiB", "notify_publish {\n max_body 2GiB\n}", "notify_publish: max_body must be a size from 1 byte to 1 GiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p PublishHandler
			err := p.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestPublishValidate checks notify_publish's rulebook, and that a mistake
// in a setting it shares with notify gets notify's words for it.
func TestPublishValidate(t *testing.T) {
	neg := -1
	for _, tt := range []struct {
		name string
		p    PublishHandler
		want []string
	}{
		{"defaults", PublishHandler{}, nil},
		{"stream", PublishHandler{Source: Source{Stream: "s", Partitions: 1024}}, nil},
		{"largest body", PublishHandler{MaxBody: 1 << 30}, nil},
		{"every mistake", PublishHandler{Source: Source{Redis: "http://x", Channel: "c", Stream: "s", Partitions: 1025, MaxMessageSize: -1}, StreamMaxLen: &neg, MaxBody: -1, BodyTimeout: -1}, []string{
			"notify_publish: redis: not a valid redis://, rediss://, redis+sentinel:// or redis+cluster:// URL",
			"notify_publish: channel and stream are alternatives: set one",
			"notify_publish: partitions must be a whole number from 1 to 1024",
			"notify_publish: max_message_size must be a size from 1 byte to 512 MiB",
			"notify_publish: stream_maxlen must not be negative",
			"notify_publish: max_body must be a size from 1 byte to 1 GiB",
			"notify_publish: body_timeout must not be negative",
		}},
		{"body over 1GiB", PublishHandler{MaxBody: 1<<30 + 1}, []string{
			"notify_publish: max_body must be a size from 1 byte to 1 GiB",
		}},
		{"stream settings without stream", PublishHandler{Source: Source{StreamField: "body"}, StreamMaxLen: new(int)}, []string{
			"notify_publish: stream_field applies to stream mode only: set stream, or remove stream_field",
			"notify_publish: stream_maxlen applies to stream mode only: set stream, or remove stream_maxlen",
		}},
		{"sharded stream", PublishHandler{Source: Source{Stream: "s", Sharded: true}}, []string{
			"notify_publish: sharded applies to pub/sub mode only: a stream is read with XREAD, which a cluster routes to its shard anyway",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// The same mistakes in notify: the same words.
			h := Handler{Source: tt.p.Source, AuthURL: "http://a/"}
			notifyErr := ""
			if err := h.Validate(); err != nil {
				notifyErr = err.Error()
			}
			for _, line := range got {
				if strings.Contains(line, "stream_maxlen") || strings.Contains(line, "max_body") ||
					strings.Contains(line, "body_timeout") {
					continue // notify has no such setting
				}
				if shared := strings.Replace(line, "notify_publish: ", "notify: ", 1); !strings.Contains(notifyErr, shared) {
					t.Errorf("notify words %q otherwise:\n%s", shared, notifyErr)
				}
			}
		})
	}
}

// FuzzPublishBody feeds arbitrary bodies to notify_publish's reader: it
// never panics, and whatever it accepts is what the stream side delivers:
// messages within the size limit that route reads without a drop reason,
// with the recipients route finds.
func FuzzPublishBody(f *testing.F) {
	for _, s := range []string{
		`{"recipient_id":"a"}`, ` [ {"recipient_id":1} , {"recipient_id":["*",2]} ] `, `[]`, `[`, `]`, `{`,
		`[{"recipient_id":"a"},]`, `"x"`, `1`, `[1,2]`, `{"recipient_id":"a\"}"}`, `[{"a":"]"},{"recipient_id":"b"}]`,
		`{"recipient_id":"a"}x`, "\t\n{\"recipient_id\":\"\\ud800\"}", `{"groups":"org:7"}`, `[{"groups":["a","b"],"recipient_id":1},{"groups":[1]}]`,
	} {
		f.Add([]byte(s), uint16(64))
	}
	f.Fuzz(func(t *testing.T, body []byte, limit uint16) {
		// One byte a read, into slabs of 16 bytes: every value crosses
		// reads, and most cross slabs.
		fields := message.Fields{Recipient: "recipient_id", Group: "groups"}
		b := newBodyReader(iotest.OneByteReader(bytes.NewReader(body)), int(limit), fields, math.MaxInt32, -1)
		b.minSlab = 16
		msgs, berr := b.read()
		if berr != nil {
			switch berr.status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			default:
				t.Fatalf("status %d", berr.status)
			}
			if msgs != nil {
				t.Fatal("a refused body returned messages")
			}
			return
		}
		for _, m := range msgs {
			if len(m.Data) > int(limit) {
				t.Fatalf("accepted %d bytes over a limit of %d", len(m.Data), limit)
			}
			route, reason := message.Parse(m.Data, fields)
			if reason != "" {
				t.Fatalf("accepted %q, which the readers drop as %s", m.Data, reason)
			}
			users := route.Users
			if route.Broadcast {
				users = append(users, "*")
			}
			if !slices.Equal(users, m.Recipients) || !slices.Equal(route.Groups, m.Groups) {
				t.Fatalf("recipients %q and groups %q, the readers say %q and %q", m.Recipients, m.Groups, users, route.Groups)
			}
		}
		// A body that is one message the readers deliver is accepted.
		if _, reason := message.Parse(body, fields); reason == "" && len(body) <= int(limit) && len(msgs) != 1 {
			t.Fatalf("refused %q, which the readers deliver", body)
		}
		var arr []json.RawMessage
		if errors.Is(json.Unmarshal(body, &arr), nil) && len(msgs) > len(arr) {
			t.Fatalf("%d messages from an array of %d", len(msgs), len(arr))
		}
	})
}
