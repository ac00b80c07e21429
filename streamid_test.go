package notify

import (
	"regexp"
	"testing"
)

func TestParseStreamID(t *testing.T) {
	tests := []struct {
		in   string
		want streamID
		ok   bool
	}{
		{"0-0", streamID{}, true},
		{"1700000000000-5", streamID{1700000000000, 5}, true},
		{"18446744073709551615-18446744073709551615", streamID{1<<64 - 1, 1<<64 - 1}, true},
		{"18446744073709551616-0", streamID{}, false},
		{"1700000000000", streamID{}, false},
		{"-5", streamID{}, false},
		{"5-", streamID{}, false},
		{"1-2-3", streamID{}, false},
		{"1.0-0", streamID{}, false},
		{"+1-0", streamID{}, false},
		{"1-+0", streamID{}, false},
		{"", streamID{}, false},
		{"$", streamID{}, false},
	}
	for _, tt := range tests {
		got, ok := parseStreamID(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseStreamID(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if !(streamID{1, 9}).less(streamID{2, 0}) || !(streamID{2, 0}).less(streamID{2, 1}) || (streamID{2, 1}).less(streamID{2, 1}) {
		t.Error("less does not order by ms then seq")
	}
}

var idShape = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// FuzzParseStreamID checks that only <digits>-<digits> is accepted and that
// an accepted ID prints back to an equal ID.
func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{"0-0", "1700000000000-1", "1-", "x", "01-002", "99999999999999999999-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseStreamID(s)
		if ok && !idShape.MatchString(s) {
			t.Fatalf("accepted %q", s)
		}
		if !ok {
			return
		}
		back, ok2 := parseStreamID(id.String())
		if !ok2 || back != id || string(id.appendTo(nil)) != id.String() {
			t.Fatalf("%q → %v → %q", s, id, id.String())
		}
	})
}
