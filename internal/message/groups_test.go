package message

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var groupFields = Fields{Recipient: "recipient_id", Group: "groups", Event: "type"}

func TestParseGroupsAndEvents(t *testing.T) {
	long := strings.Repeat("g", MaxGroupLen)
	tests := []struct {
		payload string
		want    Route
		drop    Drop
	}{
		{`{"groups":"org:7"}`, Route{Groups: []string{"org:7"}}, ""},
		{`{"groups":["b","a","b"]}`, Route{Groups: []string{"a", "b"}}, ""},
		{`{"groups":["a"],"recipient_id":[1,"*"]}`, Route{Users: []string{"1"}, Broadcast: true, Groups: []string{"a"}}, ""},
		{`{"groups":null,"recipient_id":"u"}`, Route{Users: []string{"u"}}, ""},
		{`{"groups":[],"recipient_id":"u"}`, Route{Users: []string{"u"}}, ""},
		{`{"groups":"` + long + `"}`, Route{Groups: []string{long}}, ""},
		{`{"groups":"\u00e9"}`, Route{Groups: []string{"é"}}, ""},
		// A message needs a recipient or a group.
		{`{"groups":null}`, Route{}, NoRecipient},
		{`{"groups":[]}`, Route{}, NoRecipient},
		{`{"recipient_id":null,"groups":[]}`, Route{}, NoRecipient},
		{`{"type":"x"}`, Route{}, NoRecipient},
		// Groups are names: strings of 1 to 256 bytes of text.
		{`{"groups":""}`, Route{}, InvalidGroup},
		{`{"groups":[""]}`, Route{}, InvalidGroup},
		{`{"groups":7}`, Route{}, InvalidGroup},
		{`{"groups":["a",7]}`, Route{}, InvalidGroup},
		{`{"groups":["a",null]}`, Route{}, InvalidGroup},
		{`{"groups":{"a":1}}`, Route{}, InvalidGroup},
		{`{"groups":"` + long + `g"}`, Route{}, InvalidGroup},
		{`{"groups":"\ud800"}`, Route{}, InvalidGroup},
		{"{\"groups\":\"\xff\"}", Route{}, InvalidGroup},
		{`{"groups":true,"recipient_id":"u"}`, Route{}, InvalidGroup},
		// A bad recipient drops the message, groups or not.
		{`{"groups":"a","recipient_id":1.5}`, Route{}, InvalidRecipient},
		// Event names.
		{`{"recipient_id":"u","type":"order_paid"}`, Route{Users: []string{"u"}, Event: "order_paid"}, ""},
		{`{"recipient_id":"u","type":"` + strings.Repeat("e", MaxEventLen) + `"}`, Route{Users: []string{"u"}, Event: strings.Repeat("e", MaxEventLen)}, ""},
		{`{"recipient_id":"u","type":"` + strings.Repeat("e", MaxEventLen+1) + `"}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":"a\nb"}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":"a\u0000"}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":""}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":7}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":"reset"}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":"revoked"}`, Route{Users: []string{"u"}}, ""},
		{`{"recipient_id":"u","type":"\u00e9t\u00e9"}`, Route{Users: []string{"u"}, Event: "été"}, ""},
	}
	for _, tt := range tests {
		got, drop := Parse([]byte(tt.payload), groupFields)
		if drop != tt.drop || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Parse(%.60s) = %+v, %q; want %+v, %q", tt.payload, got, drop, tt.want, tt.drop)
		}
	}
	// With no group field, a "groups" member is just data.
	if r, drop := Parse([]byte(`{"recipient_id":"u","groups":7}`), Fields{Recipient: "recipient_id"}); drop != "" || len(r.Groups) != 0 {
		t.Errorf("groups read with no group field: %+v, %q", r, drop)
	}
}

func TestUserGroups(t *testing.T) {
	many := `[` + strings.Repeat(`"g",`, MaxUserGroups-1) + `"g"]`
	tooMany := `[` + strings.Repeat(`"g",`, MaxUserGroups) + `"g"]`
	for _, tt := range []struct {
		raw  string
		want []string
		ok   bool
	}{
		{`null`, nil, true},
		{`[]`, nil, true},
		{`["org:8","org:7","org:8"]`, []string{"org:7", "org:8"}, true},
		{many, []string{"g"}, true},
		{tooMany, nil, false},
		{`"org:7"`, nil, false},
		{`[7]`, nil, false},
		{`[""]`, nil, false},
		{`[null]`, nil, false},
		{`{}`, nil, false},
		{`["` + strings.Repeat("x", MaxGroupLen+1) + `"]`, nil, false},
	} {
		got, ok := UserGroups([]byte(tt.raw))
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("UserGroups(%.40s) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.ok)
		}
	}
}

// FuzzGroups checks the group field against encoding/json: a name or an
// array of names (strings of 1 to 256 bytes of text that encoding/json
// decodes without repair), returned sorted and without duplicates.
func FuzzGroups(f *testing.F) {
	for _, s := range []string{`{"groups":"a"}`, `{"groups":["b","a"]}`, `{"groups":[1]}`, `{"groups":""}`,
		`{"groups":["\ud800"]}`, `{"groups":null,"recipient_id":1}`, `{"groups":["a",null]}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, drop := Parse(payload, Fields{Recipient: "recipient_id", Group: "groups"})
		var obj map[string]json.RawMessage
		if !json.Valid(payload) || json.Unmarshal(payload, &obj) != nil || obj == nil {
			if drop != Malformed {
				t.Fatalf("%q: got %+v, %q; want malformed", payload, r, drop)
			}
			return
		}
		raw, found := obj["groups"]
		if !found || string(raw) == "null" {
			if len(r.Groups) != 0 {
				t.Fatalf("%q: groups %q with no group field", payload, r.Groups)
			}
			return
		}
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			elems = []json.RawMessage{raw}
		}
		var want []string
		valid := true
		for _, e := range elems {
			var s string
			if json.Unmarshal(e, &s) != nil || !oracleTextOK(e) || s == "" || len(s) > MaxGroupLen || !utf8.ValidString(s) {
				valid = false
				break
			}
			want = append(want, s)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		switch {
		case !valid:
			if drop != InvalidGroup && drop != InvalidRecipient {
				t.Fatalf("%q: got %+v, %q; want invalid_group", payload, r, drop)
			}
		case drop == "":
			if !slices.Equal(r.Groups, want) {
				t.Fatalf("%q: groups %q, want %q", payload, r.Groups, want)
			}
		case drop != NoRecipient && drop != InvalidRecipient:
			t.Fatalf("%q: dropped %q with valid groups %q", payload, drop, want)
		}
	})
}
