package streamid

import (
	"regexp"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want ID
		ok   bool
	}{
		{"0-0", ID{}, true},
		{"1700000000000-5", ID{1700000000000, 5}, true},
		{"18446744073709551615-18446744073709551615", ID{1<<64 - 1, 1<<64 - 1}, true},
		{"18446744073709551616-0", ID{}, false},
		{"1700000000000", ID{}, false},
		{"-5", ID{}, false},
		{"5-", ID{}, false},
		{"1-2-3", ID{}, false},
		{"1.0-0", ID{}, false},
		{"+1-0", ID{}, false},
		{"1-+0", ID{}, false},
		{"", ID{}, false},
		{"$", ID{}, false},
	}
	for _, tt := range tests {
		got, ok := Parse(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if !(ID{1, 9}).Less(ID{2, 0}) || !(ID{2, 0}).Less(ID{2, 1}) || (ID{2, 1}).Less(ID{2, 1}) {
		t.Error("Less does not order by ms then seq")
	}
}

var idShape = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// FuzzParse checks that only <digits>-<digits> is accepted and that
// an accepted ID prints back to an equal ID.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0-0", "1700000000000-1", "1-", "x", "01-002", "99999999999999999999-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := Parse(s)
		if ok && !idShape.MatchString(s) {
			t.Fatalf("accepted %q", s)
		}
		if !ok {
			return
		}
		back, ok2 := Parse(id.String())
		if !ok2 || back != id || string(id.AppendTo(nil)) != id.String() {
			t.Fatalf("%q → %v → %q", s, id, id.String())
		}
	})
}
