package notify

import (
	"regexp"
	"testing"
)

func TestParseEntryID(t *testing.T) {
	tests := []struct {
		in   string
		want entryID
		ok   bool
	}{
		{"0-0", entryID{}, true},
		{"1700000000000-5", entryID{1700000000000, 5}, true},
		{"18446744073709551615-18446744073709551615", entryID{1<<64 - 1, 1<<64 - 1}, true},
		{"18446744073709551616-0", entryID{}, false},
		{"1700000000000", entryID{}, false},
		{"-5", entryID{}, false},
		{"5-", entryID{}, false},
		{"1-2-3", entryID{}, false},
		{"1.0-0", entryID{}, false},
		{"+1-0", entryID{}, false},
		{"1-+0", entryID{}, false},
		{"", entryID{}, false},
		{"$", entryID{}, false},
	}
	for _, tt := range tests {
		got, ok := parseEntryID(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseEntryID(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if !(entryID{1, 9}).less(entryID{2, 0}) || !(entryID{2, 0}).less(entryID{2, 1}) || (entryID{2, 1}).less(entryID{2, 1}) {
		t.Error("less does not order by ms then seq")
	}
}

var idShape = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// FuzzParseEntryID checks that only <digits>-<digits> is accepted and that
// an accepted ID prints back to an equal ID.
func FuzzParseEntryID(f *testing.F) {
	for _, s := range []string{"0-0", "1700000000000-1", "1-", "x", "01-002", "99999999999999999999-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseEntryID(s)
		if ok && !idShape.MatchString(s) {
			t.Fatalf("accepted %q", s)
		}
		if !ok {
			return
		}
		back, ok2 := parseEntryID(id.String())
		if !ok2 || back != id || string(id.appendTo(nil)) != id.String() {
			t.Fatalf("%q → %v → %q", s, id, id.String())
		}
	})
}
