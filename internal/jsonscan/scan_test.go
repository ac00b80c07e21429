package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMember(t *testing.T) {
	tests := []struct {
		data, field, value string
		found, ok          bool
	}{
		{`{"a":1}`, "a", "1", true, true},
		{` { "a" : "x" , "b" : [1,{"c":"]}"}] } `, "b", `[1,{"c":"]}"}]`, true, true},
		{`{"a":1,"a":2}`, "a", "2", true, true}, // the last duplicate wins
		{`{"\u0061":1}`, "a", "1", true, true},  // keys compare by their text
		{`{"a\ud800":1}`, "a", "", false, true}, // a key that is not text matches nothing
		{`{"b":1}`, "a", "", false, true},
		{`{}`, "a", "", false, true},
		{`{"a":1} x`, "a", "", false, false},
		{`{"a":01}`, "a", "", false, false},
		{`{"a":"\x"}`, "a", "", false, false},
		{"{\"a\":\"\x01\"}", "a", "", false, false},
		{`[{"a":1}]`, "a", "", false, false},
		{`{"a":1`, "a", "", false, false},
		{``, "a", "", false, false},
	}
	for _, tt := range tests {
		value, found, ok := Member([]byte(tt.data), tt.field)
		if string(value) != tt.value || found != tt.found || ok != tt.ok {
			t.Errorf("Member(%s, %q) = %q, %v, %v; want %q, %v, %v", tt.data, tt.field, value, found, ok, tt.value, tt.found, tt.ok)
		}
	}
}

// TestMemberNestingLimit checks that the scanner keeps encoding/json's
// nesting limit: what it refuses as malformed, Member refuses too.
func TestMemberNestingLimit(t *testing.T) {
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		for _, c := range []struct{ open, close string }{{"[", "]"}, {`{"a":`, "}"}} {
			// The object itself is level 1.
			data := []byte(`{"f":"a","x":` + strings.Repeat(c.open, depth-1) + "1" +
				strings.Repeat(c.close, depth-1) + "}")
			wantOK := json.Unmarshal(data, new(map[string]json.RawMessage)) == nil
			if wantOK != (depth <= maxDepth) {
				t.Fatalf("encoding/json's limit is no longer %d", maxDepth)
			}
			if _, _, ok := Member(data, "f"); ok != wantOK {
				t.Errorf("depth %d of %q: ok %v, encoding/json ok %v", depth, c.open, ok, wantOK)
			}
		}
	}
}

// FuzzMember checks Member against encoding/json: it accepts exactly the
// JSON objects json.Unmarshal accepts, and finds the member it finds.
func FuzzMember(f *testing.F) {
	for _, s := range []string{`{"f":1}`, `{"f":[1,{"g":"]"}]}`, `{"\u0066":"x","f":2}`, `[]`, `{"f":1}x`, `{"f":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		value, found, ok := Member(data, "f")
		var obj map[string]json.RawMessage
		wantOK := json.Valid(data) && json.Unmarshal(data, &obj) == nil && obj != nil
		if ok != wantOK {
			t.Fatalf("%q: ok %v, encoding/json ok %v", data, ok, wantOK)
		}
		if !ok {
			return
		}
		raw, wantFound := obj["f"]
		// encoding/json also matches a key that is not valid text
		// once repaired; Member never does, so only a found member
		// must agree.
		if found && (!wantFound || string(raw) != string(value)) {
			t.Fatalf("%q: member %q, encoding/json %q (%v)", data, value, raw, wantFound)
		}
	})
}
