package gateway

import "testing"

// The limits count every stream, whatever the bounds, so that a bound a
// reload sets applies to the streams already open; 0 is no bound.
func TestLimits(t *testing.T) {
	l := newLimits(0, 0)
	for range 3 {
		if !l.reserve() || !l.reserveUser("alice") {
			t.Fatal("refused with no bounds")
		}
	}
	l.set(4, 3)
	if !l.reserve() {
		t.Fatal("a 4th stream refused under max_streams 4")
	}
	if l.reserve() {
		t.Error("a 5th stream accepted under max_streams 4")
	}
	if l.reserveUser("alice") {
		t.Error("alice's 4th stream accepted under max_streams_per_user 3: her 3 open ones were not counted")
	}
	if !l.reserveUser("bob") {
		t.Error("bob's first stream refused")
	}
	l.releaseUser("alice")
	l.unreserve()
	if !l.reserveUser("alice") || !l.reserve() {
		t.Error("a place given back was not reusable")
	}
	l.set(0, 0)
	if !l.reserve() || !l.reserveUser("alice") {
		t.Error("refused once the bounds were lifted")
	}
}
