// Package message reads what the engine needs of a published message: whom
// it is for (its recipients, whether it is a broadcast, its groups) and its
// event name, read in place from the message's JSON with jsonscan, and why
// a message reaches nobody (Drop, whose values are metric labels).
package message

import (
	"slices"

	"github.com/caddy-notify/notify/internal/jsonscan"
)

// Broadcast is the recipient that addresses a message to every stream whose
// handler has broadcast enabled.
const Broadcast = "*"

// Drop says why a message, or one delivery of it, reached nobody. Its
// values are the labels of the dropped_total metric.
type Drop string

// The reasons a message is dropped.
const (
	Malformed        Drop = "malformed"         // not a JSON object
	NoRecipient      Drop = "no_recipient"      // no recipient and no group
	InvalidRecipient Drop = "invalid_recipient" // a recipient of another type, or not valid text
	InvalidGroup     Drop = "invalid_group"     // a group that is not a name (see Groups)
	TooLarge         Drop = "too_large"         // over max_message_size: not parsed
	SlowClient       Drop = "slow_client"       // a stream's queue was full
	WrongPartition   Drop = "wrong_partition"   // none of its recipients or groups reads this partition
)

// Fields names the fields of a message the engine reads.
type Fields struct {
	Recipient string // its recipients
	Group     string // its groups; "" when messages name no groups
	Event     string // its event name; "" when events are unnamed
}

// Route is whom a message is for, and how its event is named.
type Route struct {
	Users     []string // canonical user ids, sorted, without duplicates or "*"
	Broadcast bool     // it also goes to every broadcast stream
	Groups    []string // group names, sorted, without duplicates
	Event     string   // the event's name; "" for an unnamed event
}

// Parse reads whom payload is for and its event name, in one pass over the
// JSON. A message names at least one recipient or group; recipients and
// groups that cannot be read drop it, so that a publisher's bug is seen
// rather than half delivered. An event name that cannot be used (see
// EventName) leaves the event unnamed: it never drops a message.
//
// It runs for every message, so it reads the payload in place: only the
// ids and names are copied out. A 20 MB message costs no second 20 MB.
func Parse(payload []byte, f Fields) (Route, Drop) {
	var raw [3][]byte
	if !jsonscan.Members(payload, []string{f.Recipient, f.Group, f.Event}, raw[:]) {
		return Route{}, Malformed
	}
	var r Route
	if raw[0] != nil {
		users, drop := IDs(raw[0])
		switch drop {
		case "", NoRecipient:
		default:
			return Route{}, drop
		}
		if i := slices.Index(users, Broadcast); i >= 0 {
			users = slices.Delete(users, i, i+1)
			r.Broadcast = true
		}
		r.Users = users
	}
	if raw[1] != nil {
		groups, ok := Groups(raw[1])
		if !ok {
			return Route{}, InvalidGroup
		}
		r.Groups = groups
	}
	if len(r.Users) == 0 && !r.Broadcast && len(r.Groups) == 0 {
		return Route{}, NoRecipient
	}
	if raw[2] != nil {
		r.Event = EventName(raw[2])
	}
	return r, ""
}
