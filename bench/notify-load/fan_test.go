package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestFanout checks both addressings of a fan-out message: what the
// module reads (the group's name, or the list of the group's users in
// recipient_id) and what the receiver parses (seq, ts, group).
func TestFanout(t *testing.T) {
	for _, by := range []string{"group", "list"} {
		f, err := newFanout(by, 3, 10)
		if err != nil {
			t.Fatal(err)
		}
		b := f.appendMessage(nil, 7, 1700000000123456789) // group 7 mod 3 = 1, seq 7/3+1 = 3
		var m struct {
			Seq    uint64   `json:"seq"`
			TS     int64    `json:"ts"`
			Fan    int      `json:"fan"`
			Groups string   `json:"groups"`
			Rcpt   []string `json:"recipient_id"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %s: %v", by, b, err)
		}
		if m.Seq != 3 || m.TS != 1700000000123456789 || m.Fan != 1 {
			t.Errorf("%s: %s", by, b)
		}
		switch by {
		case "group":
			if m.Groups != "g1" || m.Rcpt != nil {
				t.Errorf("group: %s", b)
			}
		case "list":
			if !slices.Equal(m.Rcpt, []string{"1", "4", "7"}) || m.Groups != "" || strings.Contains(string(b), "groups") {
				t.Errorf("list: %s", b)
			}
		}
		seq, ts, g, ok := parseFanMessage(b)
		if !ok || seq != 3 || ts != 1700000000123456789 || g != 1 {
			t.Errorf("%s: parsed %d %d %d %v", by, seq, ts, g, ok)
		}
	}
	if _, err := newFanout("tag", 1, 10); err == nil {
		t.Error("-fan-by tag accepted")
	}
	for _, bad := range []string{"", `{"seq":1}`, `{"seq":1,"ts":2}`, `{"seq":x,"ts":2,"fan":0}`, msg(1, 1)} {
		if _, _, _, ok := parseFanMessage([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestFanoutAccounting: a stream of user u counts the messages of group
// u mod k, once each; another group's is misrouted; the expected count
// follows the groups.
func TestFanoutAccounting(t *testing.T) {
	f, _ := newFanout("group", 2, 4)
	s, c := newState("3") // user 3: group 1
	s.userN, s.fan = 3, 2
	for m := range 6 { // groups 0,1,0,1,0,1: seqs 1..3 of each
		s.onMessage(f.appendMessage(nil, m, 1_000_000))
	}
	s.onMessage(f.appendMessage(nil, 3, 1_000_000)) // again
	if c.unique.Load() != 3 || c.misrouted.Load() != 3 || c.dup.Load() != 1 || c.ooo.Load() != 0 {
		t.Errorf("unique %d misrouted %d dup %d ooo %d", c.unique.Load(), c.misrouted.Load(), c.dup.Load(), c.ooo.Load())
	}
	w := &worker{cfg: workerConfig{users: 4, fan: 2}, estUsers: []int32{0, 1, 2, 3}}
	if e, _ := w.expected(5); e != 3+2+3+2 { // of 5 messages, 3 for group 0, 2 for group 1
		t.Errorf("expected %d, want 10", e)
	}
}

// TestFanoutRun publishes fan-out messages through a whole run, both
// addressings: every stream gets every message once, and the CPU per
// delivery is that of the deliveries.
func TestFanoutRun(t *testing.T) {
	for _, by := range []string{"group", "list"} {
		f := newFakeNotify(t, "")
		code, out, s := runCaptured(t, "-url", f.srv.URL+"/events", "-streams", "40", "-rate", "20", "-duration", "1s",
			"-fan", "1", "-fan-by", by, "-publish", "http", "-pub-url", f.srv.URL+"/publish", "-settle", "100ms",
			"-drain", "2s", "-deadline", "30s")
		if code != 0 || !s.OK || s.Expected != 40*20 || s.Received != 40*20 || s.Fan != 1 || s.FanBy != by {
			t.Fatalf("%s: exit %d, summary %+v\n%s", by, code, s, out)
		}
		if want := map[string]bool{"group": false, "list": true}[by]; (s.MessageBytes > 200) != want {
			t.Errorf("%s: %d bytes a message", by, s.MessageBytes)
		}
	}
}
