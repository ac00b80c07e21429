package message

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRecipients(t *testing.T) {
	tests := []struct {
		payload string
		want    []string
		reason  Drop
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
		{`{"other":1}`, nil, NoRecipient},
		{`{"recipient_id":null}`, nil, NoRecipient},
		{`{"recipient_id":""}`, nil, NoRecipient},
		{`{"recipient_id":[]}`, nil, NoRecipient},
		{`{"recipient_id":[null,""]}`, nil, NoRecipient},
		{`{"recipient_id":42.0}`, nil, InvalidRecipient},
		{`{"recipient_id":4.2e1}`, nil, InvalidRecipient},
		{`{"recipient_id":42E0}`, nil, InvalidRecipient},
		{`{"recipient_id":true}`, nil, InvalidRecipient},
		{`{"recipient_id":{"id":1}}`, nil, InvalidRecipient},
		{`{"recipient_id":[1,1.5]}`, nil, InvalidRecipient},
		{`{"recipient_id":[[1]]}`, nil, InvalidRecipient},
		{`{"recipient_id":042}`, nil, Malformed},
		{`{"recipient_id":"a"`, nil, Malformed},
		{`["a"]`, nil, Malformed},
		{`"a"`, nil, Malformed},
		{`null`, nil, Malformed},
		{``, nil, Malformed},
		{"\t\n{\"recipient_id\":\"a\"}\r\n ", []string{"a"}, ""},
		{`{"x":{"y":[1,{"z":"]}"}],"w":{}},"v":[[],{}],"recipient_id":"a"}`, []string{"a"}, ""},
		{`{"recipient_id":"\"\\\/\b\f\n\r\t"}`, []string{"\"\\/\b\f\n\r\t"}, ""},
		{`{"recipient_id":[ "a" , 1 ]}`, []string{"1", "a"}, ""},
		{`{"recipient_id":-0}`, []string{"-0"}, ""},
		{`{"recipient_id":{"id":"]"}}`, nil, InvalidRecipient},
		{`{"recipient_id":["a",{"id":"]"}]}`, nil, InvalidRecipient},
		{`{"recipient_id":["a",false]}`, nil, InvalidRecipient},

		// Keys compare by their decoded text, and the last duplicate wins.
		{`{"recipient\u005fid":"a"}`, []string{"a"}, ""},
		{`{"recipient_id":"a","recipient\u005Fid":"b"}`, []string{"b"}, ""},
		{`{"recipient\u005fid":"a","recipient_id":"b"}`, []string{"b"}, ""},
		{`{"recipient_id":true,"recipient_id":"a"}`, []string{"a"}, ""},
		{`{"recipient_id":"a","recipient_id":true}`, nil, InvalidRecipient},
		{`{"recipient_id":"a","recipient_id":null}`, nil, NoRecipient},
		{`{"recipient_id\u0000":"a"}`, nil, NoRecipient},
		{`{"recipient_id\ud800":"a"}`, nil, NoRecipient},
		{"{\"recipient_id\xff\":\"a\"}", nil, NoRecipient},
		{`{"Recipient_id":"a"}`, nil, NoRecipient},

		// Ids are valid Unicode text: what encoding/json would replace
		// with U+FFFD is refused, so that distinct ids never become one
		//. U+FFFD itself is an id like any other.
		{"{\"recipient_id\":\"\xff\"}", nil, InvalidRecipient},
		{"{\"recipient_id\":\"\xfe\"}", nil, InvalidRecipient},
		{"{\"recipient_id\":\"a\xc3\"}", nil, InvalidRecipient},        // truncated sequence
		{"{\"recipient_id\":\"\xc0\xaf\"}", nil, InvalidRecipient},     // overlong "/"
		{"{\"recipient_id\":\"\xed\xa0\x80\"}", nil, InvalidRecipient}, // a surrogate in UTF-8
		{"{\"recipient_id\":\"\xc3\\u00a9\"}", nil, InvalidRecipient},  // broken sequence, then an escape
		{`{"recipient_id":"\ud800"}`, nil, InvalidRecipient},
		{`{"recipient_id":"\uDFFF"}`, nil, InvalidRecipient},
		{`{"recipient_id":"a\udbff"}`, nil, InvalidRecipient},
		{`{"recipient_id":"\ud800\ud800"}`, nil, InvalidRecipient},
		{`{"recipient_id":"\udc00\ud800"}`, nil, InvalidRecipient}, // low before high
		{`{"recipient_id":"\ud800\u0041"}`, nil, InvalidRecipient},
		{`{"recipient_id":"\ud800\\udc00"}`, nil, InvalidRecipient}, // the second is text, not an escape
		{`{"recipient_id":["a","\ud800"]}`, nil, InvalidRecipient},
		{"{\"recipient_id\":[null,\"\xff\"]}", nil, InvalidRecipient},
		{`{"recipient_id":"\\ud800"}`, []string{`\ud800`}, ""},
		{`{"recipient_id":"\ud83d\ude00"}`, []string{"\U0001F600"}, ""},
		{`{"recipient_id":"\uDBFF\uDFFF"}`, []string{"\U0010FFFF"}, ""},
		{`{"recipient_id":"\ufffd"}`, []string{"\ufffd"}, ""},
		{"{\"recipient_id\":[\"\ufffd\",\"\\uFFFD\"]}", []string{"\ufffd"}, ""},
		{"{\"x\":\"\xff\\ud800\",\"recipient_id\":\"a\"}", []string{"a"}, ""}, // other fields are not read

		// Malformed exactly when encoding/json refused the payload.
		{`{"recipient_id":"a"} x`, nil, Malformed},
		{`{"recipient_id":"a"}{}`, nil, Malformed},
		{`{"recipient_id":"a",}`, nil, Malformed},
		{`{,"recipient_id":"a"}`, nil, Malformed},
		{`{"recipient_id" "a"}`, nil, Malformed},
		{`{"recipient_id":"a" "x":1}`, nil, Malformed},
		{`{recipient_id:"a"}`, nil, Malformed},
		{`{"recipient_id":tru}`, nil, Malformed},
		{`{"recipient_id":nul}`, nil, Malformed},
		{`{"recipient_id":-}`, nil, Malformed},
		{`{"recipient_id":1.}`, nil, Malformed},
		{`{"recipient_id":.1}`, nil, Malformed},
		{`{"recipient_id":1e}`, nil, Malformed},
		{`{"recipient_id":1e+}`, nil, Malformed},
		{`{"recipient_id":+1}`, nil, Malformed},
		{`{"recipient_id":"\q"}`, nil, Malformed},
		{`{"recipient_id":"\u12"}`, nil, Malformed},
		{`{"recipient_id":"\u12g4"}`, nil, Malformed},
		{"{\"recipient_id\":\"a\x01\"}", nil, Malformed},
		{"{\"recipient_id\":\"a\nb\"}", nil, Malformed},
		{`{"recipient_id":[1,]}`, nil, Malformed},
		{`{"recipient_id":[1 2]}`, nil, Malformed},
		{`{"x":[1}`, nil, Malformed},
		{`{"x":{"a":1]}`, nil, Malformed},
		{`{"x":{"a"}}`, nil, Malformed},
		{`{"x":{1:2}}`, nil, Malformed},
		{"\f{}", nil, Malformed},
		{"\xef\xbb\xbf{}", nil, Malformed}, // a byte order mark
		{`{`, nil, Malformed},
		{` `, nil, Malformed},
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
		{`{"user_id":"42"} x`, "", false},
		{`{"user_\u0069d":"42"}`, "42", true},
		{`{"user_id":"\u002a"}`, "", false}, // "*" written as an escape
		{`{"user_id":"\ufffd"}`, "\ufffd", true},
		{"{\"user_id\":\"\ufffd\"}", "\ufffd", true},
		{"{\"user_id\":\"\xff\"}", "", false},
		{"{\"user_id\":\"a\xfe\"}", "", false},
		{"{\"user_id\":\"\xed\xbf\xbf\"}", "", false},
		{`{"user_id":"\ud800"}`, "", false},
		{`{"user_id":"\udfff"}`, "", false},
		{`{"user_id":"\ud800x"}`, "", false},
		{`{"user_id":"\ud83d\ude00"}`, "\U0001F600", true},
		{`{"user_id":"` + strings.Repeat("a", MaxUserIDLen) + `"}`, strings.Repeat("a", MaxUserIDLen), true},
		{`{"user_id":"` + strings.Repeat("a", MaxUserIDLen+1) + `"}`, "", false},
		{`{"user_id":"` + strings.Repeat(`\u00e9`, MaxUserIDLen/2) + `"}`, strings.Repeat("é", MaxUserIDLen/2), true},
		{`{"user_id":"` + strings.Repeat(`\u00e9`, MaxUserIDLen/2) + `a"}`, "", false}, // 1,025 bytes decoded
		{`{"user_id":` + strings.Repeat("9", MaxUserIDLen) + `}`, strings.Repeat("9", MaxUserIDLen), true},
		{`{"user_id":` + strings.Repeat("9", MaxUserIDLen+1) + `}`, "", false},
	}
	for _, tt := range tests {
		got, ok := UserID([]byte(tt.body), "user_id")
		if got != tt.want || ok != tt.ok {
			t.Errorf("UserID(%s) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.ok)
		}
	}
}

// TestRecipientIDsNeverCollapse routes messages addressed to ids that
// encoding/json would all have read as U+FFFD to users whose ids came from
// the auth API in the same forms, matched by exact text as the index does:
// only the U+FFFD user, named as such, is ever reached, and the other forms
// are refused on both sides.
func TestRecipientIDsNeverCollapse(t *testing.T) {
	// Bodies of JSON strings, as published and as the auth API sends them.
	invalid := []string{
		"\xfe", "\xff", "\xff\xfe", "\xef\xbf", "\xed\xa0\x80", "\xc0\x80",
		`\ud800`, `\udbff`, `\udc00`, `\udfff`, `\ud800\ud800`, `\udfff\udbff`, `\ud800\u0041`, `\ud800\\udc00`,
	}
	replacement := []string{"\ufffd", `\ufffd`, `\uFFFD`}

	received := make(map[string]int) // by the id of each signed-in user
	for _, text := range slices.Concat(invalid, replacement) {
		id, ok := UserID([]byte(`{"user_id":"`+text+`"}`), "user_id")
		if slices.Contains(invalid, text) {
			if ok {
				t.Errorf("auth id %q accepted as %q", text, id)
			}
			continue
		}
		if !ok || id != "\ufffd" {
			t.Fatalf("auth id %q = %q, %v; want U+FFFD", text, id, ok)
		}
		received[id] = 0
	}

	sent := 0
	for _, text := range slices.Concat(invalid, replacement) {
		for _, payload := range []string{
			`{"recipient_id":"` + text + `"}`,
			`{"recipient_id":["` + text + `"]}`,
			`{"recipient_id":["\ufffd","` + text + `"]}`,
		} {
			users, reason := routeUsers([]byte(payload), "recipient_id")
			if slices.Contains(invalid, text) {
				if reason != InvalidRecipient || users != nil {
					t.Errorf("%q: got %q, %q; want invalid_recipient", payload, users, reason)
				}
				continue
			}
			if reason != "" || !slices.Equal(users, []string{"\ufffd"}) {
				t.Errorf("%q: got %q, %q; want U+FFFD", payload, users, reason)
			}
			for _, u := range users {
				if _, ok := received[u]; ok {
					received[u]++
				}
			}
			sent++
		}
	}
	if len(received) != 1 || received["\ufffd"] != sent {
		t.Errorf("messages received by user: %v; want only U+FFFD, with the %d addressed to it", received, sent)
	}
}

// TestRecipientsAllocs guards the point of the scanner: the ids (and the
// slice holding them) are the only allocations, whatever the size of the
// message; a refused message allocates nothing.
func TestRecipientsAllocs(t *testing.T) {
	large := `{"body":"` + strings.Repeat(`x\"`, 100_000) + `","rows":[` + strings.Repeat(`{"a":[1,"b"]},`, 10_000) + `0],`
	for _, tt := range []struct {
		payload string
		allocs  float64
	}{
		{`{"recipient_id":42,"type":"order_paid"}`, 2},
		{`{"recipient_id":"\u00e9t\u00e9","type":"order_paid"}`, 2},
		{large + `"recipient_id":"alice"}`, 2},
		{`{"recipient_id":["alice",42,"carol"]}`, 4},
		{large + `"recipient_id":true}`, 0},
		{`{"recipient_id":["a",2,"\ud800"]}`, 0},
		{large + `"recipient_id":[]}`, 0},
		{large + `"recipient_id":"alice"`, 0},
	} {
		p := []byte(tt.payload)
		if got := testing.AllocsPerRun(10, func() { recipients(p, "recipient_id") }); got != tt.allocs {
			t.Errorf("%.40q…: %v allocations, want %v", tt.payload, got, tt.allocs)
		}
	}
	body := []byte(`{"user_id":"alice","name":"Alice","roles":["admin"]}`)
	if got := testing.AllocsPerRun(10, func() { UserID(body, "user_id") }); got != 1 {
		t.Errorf("UserID: %v allocations, want 1", got)
	}
}

// FuzzRecipients checks recipients against a decoding with encoding/json's
// generic decoder: it never panics, accepts only JSON objects, and returns
// exactly the distinct string and integer ids of the field, refusing the
// strings that encoding/json would have had to repair (oracleTextOK).
func FuzzRecipients(f *testing.F) {
	for _, s := range []string{
		`{"recipient_id":"42"}`, `{"recipient_id":[8,"8",null]}`, `{"recipient_id":1.5}`,
		`{"recipient_id":"*"}`, `[]`, `{"recipient_id":-0}`, `{"recipient_id":[true]}`, `{}`,
		`{"recipient\u005fid":"a","recipient_id":"b"}`, `{"recipient_id":["\ud83d\ude00","\ufffd"]}`,
		`{"recipient_id":"\udc00\ud800"}`, "{\"recipient_id\":[\"\xff\"]}", `{"x":[{"y":"]"}],"recipient_id":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, reason := recipients(payload, "recipient_id")
		// The oracle: json.Unmarshal refuses exactly what the
		// scanner must call malformed (Valid rules out trailing data
		// a Decoder would leave unread).
		var obj map[string]json.RawMessage
		if !json.Valid(payload) || json.Unmarshal(payload, &obj) != nil || obj == nil {
			if reason != Malformed {
				t.Fatalf("invalid payload %q accepted: %q, %q", payload, got, reason)
			}
			return
		}
		if reason == Malformed {
			t.Fatalf("valid object %q reported malformed", payload)
		}
		raw, found := obj["recipient_id"]
		var elems []json.RawMessage
		if !found || json.Unmarshal(raw, &elems) != nil {
			elems = []json.RawMessage{raw} // absent (nil) or not an array
		}
		var want []string
		invalid := false
		for _, e := range elems {
			id, ok, valid := oracleID(e)
			invalid = invalid || !valid
			if ok {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		switch {
		case invalid:
			if reason != InvalidRecipient {
				t.Fatalf("%q: got %q, %q; want invalid_recipient", payload, got, reason)
			}
		case len(want) == 0:
			if reason != NoRecipient {
				t.Fatalf("%q: got %q, %q; want no_recipient", payload, got, reason)
			}
		default:
			if reason != "" || !slices.Equal(got, want) {
				t.Fatalf("%q: got %q, %q; want %q", payload, got, reason, want)
			}
		}
	})
}

// FuzzUserIDFromAuth checks UserID against encoding/json the same
// way: a usable id is a non-empty string of valid text or an integer, at most
// MaxUserIDLen bytes, and never "*".
func FuzzUserIDFromAuth(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"42"}`, `{"user_id":42}`, `{"user_id":4.2e1}`, `{"user_id":"*"}`, `{"user_id":"\u002a"}`,
		`{"user_\u0069d":"a","user_id":"b"}`, `{"user_id":"\ud800"}`, "{\"user_id\":\"\xff\"}",
		`{"user_id":"\ufffd"}`, `{"user_id":null}`, `{"user_id":["42"]}`, `[{"user_id":"42"}]`, `{}`,
		`{"user_id":"` + strings.Repeat(`\u00e9`, MaxUserIDLen/2) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := UserID(body, "user_id")
		var want string
		var wantOK bool
		var obj map[string]json.RawMessage
		if json.Valid(body) && json.Unmarshal(body, &obj) == nil && obj != nil {
			if raw, found := obj["user_id"]; found {
				id, ok, valid := oracleID(raw)
				if ok && valid && id != "*" && len(id) <= MaxUserIDLen {
					want, wantOK = id, true
				}
			}
		}
		if got != want || ok != wantOK {
			t.Fatalf("%q: got %q, %v; want %q, %v", body, got, ok, want, wantOK)
		}
	})
}

// oracleID reads one id as encoding/json decodes it, for the fuzzers: see
// ScalarID. raw is nil for an absent field.
func oracleID(raw json.RawMessage) (id string, ok, valid bool) {
	if raw == nil {
		return "", false, true
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		panic(err) // raw came out of a successful decoding
	}
	switch v := v.(type) {
	case nil:
		return "", false, true
	case string:
		if !oracleTextOK(raw) {
			return "", false, false
		}
		return v, v != "", true
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return "", false, false
		}
		return string(v), true, true
	default:
		return "", false, false
	}
}

// jsonEscape matches the escapes of a JSON string from left to right, so
// that in \\ud800 the second backslash is text, not the start of an escape.
var jsonEscape = regexp.MustCompile(`\\(?:u([0-9a-fA-F]{4})|.)`)

// oracleTextOK reports whether raw, a JSON string json.Valid accepts, is text
// encoding/json decodes without repair: valid UTF-8, and each escaped
// surrogate a high one directly followed by an escaped low one. It is written
// apart from jsonscan.ValidText, which it checks.
func oracleTextOK(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	esc := jsonEscape.FindAllSubmatchIndex(raw, -1)
	unit := func(m []int) rune {
		if m[2] < 0 {
			return -1 // not a \u escape
		}
		u, _ := strconv.ParseUint(string(raw[m[2]:m[3]]), 16, 16)
		return rune(u)
	}
	for k := 0; k < len(esc); k++ {
		switch u := unit(esc[k]); {
		case 0xdc00 <= u && u <= 0xdfff:
			return false
		case 0xd800 <= u && u <= 0xdbff:
			if k+1 == len(esc) || esc[k+1][0] != esc[k][1] {
				return false
			}
			if low := unit(esc[k+1]); low < 0xdc00 || low > 0xdfff {
				return false
			}
			k++
		}
	}
	return true
}

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

// recipients is what Parse finds in field alone: the users, with "*" among
// them for a broadcast, or why the message is dropped.
func recipients(payload []byte, field string) ([]string, Drop) {
	r, drop := Parse(payload, Fields{Recipient: field})
	if drop != "" {
		return nil, drop
	}
	if r.Broadcast {
		return append([]string{Broadcast}, r.Users...), ""
	}
	return r.Users, ""
}

// routeUsers is what Parse finds in field alone: the users, without "*".
func routeUsers(payload []byte, field string) ([]string, Drop) {
	r, drop := Parse(payload, Fields{Recipient: field})
	return r.Users, drop
}
