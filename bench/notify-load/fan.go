package main

import (
	"bytes"
	"fmt"
	"strconv"
)

// Fan-out messages (-fan k): every event goes to a whole group of users
// instead of one. Event m of a run (from 0) goes to group j = m mod k with
// seq m/k+1, and user u is in group u mod k (the auth API's -group-mod k,
// or group_mod=k on its URL, answers that group as "g<u mod k>"). So the
// arithmetic of one-user events holds with groups in place of users: a
// stream expects pubCount(u mod k, K, k) of K events. A message is
// addressed one of two ways (-fan-by), with the same size of payload
// besides the address:
//
//	group: {"seq":<n>,"ts":<unix nanos>,"fan":<j>,"groups":"g<j>"}
//	list:  {"seq":<n>,"ts":<unix nanos>,"fan":<j>,"recipient_id":["<u>",...]}
//
// the list naming every user of group j among the run's users. "fan" is
// for the receiver, which checks that the message is for its user's group.
const (
	fanSeq   = `{"seq":`
	fanTS    = `,"ts":`
	fanGroup = `,"fan":`
)

// fanout builds the fan-out messages of a run.
type fanout struct {
	k     int
	tails [][]byte // per group: what follows the group number
}

// newFanout prepares the messages of k groups over users users, addressed
// by "group" or "list".
func newFanout(by string, k, users int) (*fanout, error) {
	if k < 1 || users < 1 {
		return nil, fmt.Errorf("fan-out needs at least one group and one user")
	}
	f := &fanout{k: k, tails: make([][]byte, k)}
	for j := range k {
		var b []byte
		switch by {
		case "group":
			b = append(b, `,"groups":"`...)
			b = append(b, groupName(j)...)
			b = append(b, `"}`...)
		case "list":
			b = append(b, `,"recipient_id":[`...)
			for u := j; u < users; u += k {
				if u > j {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = strconv.AppendInt(b, int64(u), 10)
				b = append(b, '"')
			}
			b = append(b, "]}"...)
		default:
			return nil, fmt.Errorf("-fan-by must be group or list, not %q", by)
		}
		f.tails[j] = b
	}
	return f, nil
}

// groupName is the name of group j, as the auth API answers it.
func groupName(j int) string { return "g" + strconv.Itoa(j) }

// appendMessage appends the message of event m, stamped ts, to dst.
func (f *fanout) appendMessage(dst []byte, m int, ts int64) []byte {
	j := m % f.k
	dst = append(dst, fanSeq...)
	dst = strconv.AppendInt(dst, int64(m/f.k+1), 10)
	dst = append(dst, fanTS...)
	dst = strconv.AppendInt(dst, ts, 10)
	dst = append(dst, fanGroup...)
	dst = strconv.AppendInt(dst, int64(j), 10)
	return append(dst, f.tails[j]...)
}

// parseFanMessage reads the seq, ts and group of a fan-out message without
// allocating; ok is false when data does not have that layout.
func parseFanMessage(data []byte) (seq uint64, ts int64, group uint64, ok bool) {
	if !bytes.HasPrefix(data, []byte(fanSeq)) {
		return 0, 0, 0, false
	}
	data = data[len(fanSeq):]
	seq, n := leadingUint(data)
	if n == 0 || !bytes.HasPrefix(data[n:], []byte(fanTS)) {
		return 0, 0, 0, false
	}
	data = data[n+len(fanTS):]
	t, n := leadingUint(data)
	if n == 0 || !bytes.HasPrefix(data[n:], []byte(fanGroup)) {
		return 0, 0, 0, false
	}
	data = data[n+len(fanGroup):]
	group, n = leadingUint(data)
	if n == 0 {
		return 0, 0, 0, false
	}
	return seq, int64(t), group, true
}
