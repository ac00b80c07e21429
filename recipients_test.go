package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestRecipients(t *testing.T) {
	tests := []struct {
		payload string
		want    []string
		reason  dropReason
	}{
		{`{"recipient_id":"42"}`, []string{"42"}, ""},
		{`{"recipient_id":42}`, []string{"42"}, ""},
		{`{"recipient_id":-7}`, []string{"-7"}, ""},
		{`{"recipient_id":9007199254740993}`, []string{"9007199254740993"}, ""},
		{`{"recipient_id":123456789012345678901234567890}`, []string{"123456789012345678901234567890"}, ""},
		{` { "recipient_id" : "a b" , "x" : [1,2] } `, []string{"a b"}, ""},
		{`{"recipient_id":"\u00e9t\u00e9"}`, []string{"été"}, ""},
		{`{"recipient_id":[8,"8",8,null]}`, []string{"8"}, ""},
		{`{"recipient_id":["b","a","b"]}`, []string{"a", "b"}, ""},
		{`{"recipient_id":["*","alice"]}`, []string{"*", "alice"}, ""},
		{`{"recipient_id":"*"}`, []string{"*"}, ""},
		{`{"recipient_id":"a","recipient_id":"b"}`, []string{"b"}, ""}, // last wins, as in encoding/json
		{`{"other":1}`, nil, dropNoRecipient},
		{`{"recipient_id":null}`, nil, dropNoRecipient},
		{`{"recipient_id":""}`, nil, dropNoRecipient},
		{`{"recipient_id":[]}`, nil, dropNoRecipient},
		{`{"recipient_id":[null,""]}`, nil, dropNoRecipient},
		{`{"recipient_id":42.0}`, nil, dropInvalidRecipient},
		{`{"recipient_id":4.2e1}`, nil, dropInvalidRecipient},
		{`{"recipient_id":42E0}`, nil, dropInvalidRecipient},
		{`{"recipient_id":true}`, nil, dropInvalidRecipient},
		{`{"recipient_id":{"id":1}}`, nil, dropInvalidRecipient},
		{`{"recipient_id":[1,1.5]}`, nil, dropInvalidRecipient},
		{`{"recipient_id":[[1]]}`, nil, dropInvalidRecipient},
		{`{"recipient_id":042}`, nil, dropMalformed},
		{`{"recipient_id":"a"`, nil, dropMalformed},
		{`["a"]`, nil, dropMalformed},
		{`"a"`, nil, dropMalformed},
		{`null`, nil, dropMalformed},
		{``, nil, dropMalformed},
		{"{\"recipient_id\":\"\xff\"}", []string{"\ufffd"}, ""}, // invalid UTF-8 is replaced, as encoding/json does
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			got, reason := recipients([]byte(tt.payload), "recipient_id")
			if reason != tt.reason || !slices.Equal(got, tt.want) {
				t.Errorf("recipients = %q, %q; want %q, %q", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestUserIDFromAuth(t *testing.T) {
	tests := []struct {
		body string
		want string
		ok   bool
	}{
		{`{"user_id":"42"}`, "42", true},
		{`{"user_id":42}`, "42", true},
		{`{"user_id":9007199254740993,"name":"x"}`, "9007199254740993", true},
		{`{"user_id":"042"}`, "042", true},
		{`{"user_id":42.0}`, "", false},
		{`{"user_id":4.2e1}`, "", false},
		{`{"user_id":""}`, "", false},
		{`{"user_id":null}`, "", false},
		{`{"user_id":["42"]}`, "", false},
		{`{"user_id":"*"}`, "", false},
		{`{"id":"42"}`, "", false},
		{`42`, "", false},
		{`not json`, "", false},
	}
	for _, tt := range tests {
		got, ok := userIDFromAuth([]byte(tt.body), "user_id")
		if got != tt.want || ok != tt.ok {
			t.Errorf("userIDFromAuth(%s) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzRecipients checks recipients against a decoding with encoding/json's
// generic decoder: it never panics, accepts only JSON objects, and returns
// exactly the distinct string and integer ids of the field.
func FuzzRecipients(f *testing.F) {
	for _, s := range []string{
		`{"recipient_id":"42"}`, `{"recipient_id":[8,"8",null]}`, `{"recipient_id":1.5}`,
		`{"recipient_id":"*"}`, `[]`, `{"recipient_id":-0}`, `{"recipient_id":[true]}`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, reason := recipients(payload, "recipient_id")
		var obj map[string]any
		errDecode := errNotJSON
		if json.Valid(payload) {
			dec := json.NewDecoder(bytes.NewReader(payload))
			dec.UseNumber()
			errDecode = dec.Decode(&obj)
		}
		if reason == dropMalformed {
			if errDecode == nil && obj != nil {
				t.Fatalf("valid object %q reported malformed", payload)
			}
			return
		}
		if errDecode != nil || obj == nil {
			t.Fatalf("invalid payload %q accepted: %q, %q", payload, got, reason)
		}
		var want []string
		invalid := false
		add := func(v any) {
			switch v := v.(type) {
			case nil:
			case string:
				if v != "" {
					want = append(want, v)
				}
			case json.Number:
				if strings.ContainsAny(string(v), ".eE") {
					invalid = true
				} else {
					want = append(want, string(v))
				}
			default:
				invalid = true
			}
		}
		if arr, ok := obj["recipient_id"].([]any); ok {
			for _, e := range arr {
				add(e)
			}
		} else {
			add(obj["recipient_id"])
		}
		slices.Sort(want)
		want = slices.Compact(want)
		switch {
		case invalid:
			if reason != dropInvalidRecipient {
				t.Fatalf("%q: got %q, %q; want invalid_recipient", payload, got, reason)
			}
		case len(want) == 0:
			if reason != dropNoRecipient {
				t.Fatalf("%q: got %q, %q; want no_recipient", payload, got, reason)
			}
		default:
			if reason != "" || !slices.Equal(got, want) {
				t.Fatalf("%q: got %q, %q; want %q", payload, got, reason, want)
			}
		}
	})
}

var errNotJSON = errors.New("not valid JSON")

// BenchmarkRecipientsLarge parses the recipient of a 1 MiB message whose
// field comes last, after a large string and a large array: the cost must be
// one pass over the bytes, with no allocation that grows with them.
func BenchmarkRecipientsLarge(b *testing.B) {
	var p bytes.Buffer
	p.WriteString(`{"type":"report","body":"`)
	for p.Len() < 512<<10 {
		p.WriteString(`lorem ipsum \"dolor\" sit amet, \u00e9t\u00e9 `)
	}
	p.WriteString(`","rows":[`)
	for i := 0; p.Len() < 1<<20; i++ {
		if i > 0 {
			p.WriteByte(',')
		}
		p.WriteString(`{"id":1234,"total":19.99,"tags":["a","b"],"ok":true}`)
	}
	p.WriteString(`],"recipient_id":42}`)
	payload := p.Bytes()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, reason := recipients(payload, "recipient_id"); reason != "" {
			b.Fatal(reason)
		}
	}
}
