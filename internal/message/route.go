// Package message reads what the engine needs of a published message: whom
// it is for (its recipients, and whether it is a broadcast), read in place
// from the message's JSON with jsonscan, and why a message reaches nobody
// (Drop, whose values are metric labels).
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
	NoRecipient      Drop = "no_recipient"      // field missing, null, "" or []
	InvalidRecipient Drop = "invalid_recipient" // field of another type, or not valid text
	TooLarge         Drop = "too_large"         // over max_message_size: not parsed
	SlowClient       Drop = "slow_client"       // a stream's queue was full
	WrongPartition   Drop = "wrong_partition"   // none of its recipients reads this partition
)

// Recipients extracts the recipients of a published message from its field
// named field. It returns the canonical user ids, sorted and without
// duplicates ("*" included when present), or the reason the message must be
// dropped. Integers are kept as their exact decimal text so that 42 and "42"
// name the same user and large ids are never rounded.
//
// It runs for every message, so it reads the payload in place: one pass
// (jsonscan.Member) checks that it is a JSON object and finds the field,
// and only the ids are copied out. A 20 MB message costs no second 20 MB.
func Recipients(payload []byte, field string) ([]string, Drop) {
	raw, found, ok := jsonscan.Member(payload, field)
	if !ok {
		return nil, Malformed
	}
	if !found {
		return nil, NoRecipient
	}
	return IDs(raw)
}

// Route is Recipients with the broadcast address taken out: the users a
// message names, and whether it also goes to every broadcast stream.
func Route(payload []byte, field string) (users []string, broadcast bool, reason Drop) {
	users, reason = Recipients(payload, field)
	if reason != "" {
		return nil, false, reason
	}
	if i := slices.Index(users, Broadcast); i >= 0 {
		users = slices.Delete(users, i, i+1)
		broadcast = true
	}
	return users, broadcast, ""
}
