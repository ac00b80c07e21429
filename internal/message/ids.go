package message

import (
	"slices"

	"github.com/caddy-notify/notify/internal/jsonscan"
)

// The ids of a message's recipients and the user id an auth API answers
// follow one rule, so that they compare as exact text: a string of valid
// Unicode text, or an integer kept as its decimal digits (42 and "42" are
// one user; 42.0 is no id, and 9007199254740993 is never rounded).

// MaxUserIDLen bounds, in bytes, the user id an auth API may return. Every
// stream keeps its id, and a longer id is more likely a bug than an account.
const MaxUserIDLen = 1024

// IDs reads raw, a valid JSON value, as one id or an array of ids: the
// canonical ids, sorted and without duplicates, or why there are none.
// null and "" (alone or as elements) name nobody; any other value that is
// not a string or an integer, and any string that is not valid Unicode
// text, is invalid.
func IDs(raw []byte) ([]string, Drop) {
	if raw[0] != '[' {
		id, ok, valid := ScalarID(raw)
		if !valid {
			return nil, InvalidRecipient
		}
		if !ok {
			return nil, NoRecipient
		}
		return []string{id}, ""
	}
	// A first pass checks every element and counts the ids, so that an
	// invalid list allocates nothing and a valid one exactly its result.
	n := 0
	c := jsonscan.ElementsOf(raw)
	for e := c.Next(); e != nil; e = c.Next() {
		ok, valid := checkScalar(e)
		if !valid {
			// A bool, float, object or unreadable string among the
			// recipients is a publisher bug; delivering to part of
			// the list would hide it.
			return nil, InvalidRecipient
		}
		if ok {
			n++
		}
	}
	if n == 0 {
		return nil, NoRecipient
	}
	ids := make([]string, 0, n)
	c = jsonscan.ElementsOf(raw)
	for e := c.Next(); e != nil; e = c.Next() {
		if id, ok, _ := ScalarID(e); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), ""
}

// UserID extracts the user id from an auth API answer: a JSON object
// whose field is a non-empty string or an integer, of at most MaxUserIDLen
// bytes. "*" is refused so that no account can ever be mistaken for the
// broadcast address.
func UserID(answer []byte, field string) (string, bool) {
	raw, found, ok := jsonscan.Member(answer, field)
	if !ok || !found {
		return "", false
	}
	return UserIDValue(raw)
}

// UserIDValue is UserID for the field's value, raw.
func UserIDValue(raw []byte) (string, bool) {
	id, ok, valid := ScalarID(raw)
	if !valid || !ok || id == Broadcast || len(id) > MaxUserIDLen {
		return "", false
	}
	return id, true
}

// ScalarID reads one id from raw, a valid JSON value: a string or an
// integer. ok is false for null and the empty string (no recipient); valid
// is false for any other type, and for a string that is not valid Unicode
// text (see jsonscan.ValidText).
func ScalarID(raw []byte) (id string, ok, valid bool) {
	if ok, valid = checkScalar(raw); !ok || !valid {
		return "", false, valid
	}
	if raw[0] == '"' {
		id, _ = jsonscan.Unquote(raw[1 : len(raw)-1])
		return id, true, true
	}
	return string(raw), true, true
}

// checkScalar is ScalarID without the copy.
func checkScalar(raw []byte) (ok, valid bool) {
	if len(raw) == 0 {
		return false, false
	}
	switch c := raw[0]; {
	case c == 'n' && string(raw) == "null":
		return false, true
	case c == '"':
		return len(raw) > 2, jsonscan.ValidText(raw[1 : len(raw)-1])
	case c == '-' || (c >= '0' && c <= '9'):
		return true, jsonscan.IsInteger(raw)
	default:
		return false, false
	}
}

// MaxGroupLen bounds, in bytes, a group name.
const MaxGroupLen = 256

// MaxUserGroups bounds the groups an auth API may name for one user.
const MaxUserGroups = 1024

// Groups reads raw, a valid JSON value, as the groups a message names: a
// name, or an array of names, each a string of 1 to MaxGroupLen bytes of
// valid Unicode text. null names none. It returns them sorted and without
// duplicates; ok is false when an element is not a name.
func Groups(raw []byte) (groups []string, ok bool) {
	switch raw[0] {
	case 'n':
		return nil, string(raw) == "null"
	case '[':
		return groupList(raw, -1)
	}
	g, ok := groupName(raw)
	if !ok {
		return nil, false
	}
	return []string{g}, true
}

// UserGroups reads raw, a valid JSON value, as the groups an auth API
// answered for a user: null, or an array of at most MaxUserGroups names
// (see Groups). ok is false for anything else.
func UserGroups(raw []byte) (groups []string, ok bool) {
	switch raw[0] {
	case 'n':
		return nil, string(raw) == "null"
	case '[':
		return groupList(raw, MaxUserGroups)
	}
	return nil, false
}

// groupList reads an array of group names, at most max of them (no bound
// when negative), sorted and without duplicates.
func groupList(raw []byte, max int) ([]string, bool) {
	n := 0
	c := jsonscan.ElementsOf(raw)
	for e := c.Next(); e != nil; e = c.Next() {
		if !isGroupName(e) {
			return nil, false
		}
		n++
	}
	if max >= 0 && n > max {
		return nil, false
	}
	if n == 0 {
		return nil, true
	}
	groups := make([]string, 0, n)
	c = jsonscan.ElementsOf(raw)
	for e := c.Next(); e != nil; e = c.Next() {
		g, _ := groupName(e)
		groups = append(groups, g)
	}
	slices.Sort(groups)
	return slices.Compact(groups), true
}

// isGroupName is groupName without the copy.
func isGroupName(raw []byte) bool {
	if len(raw) < 3 || raw[0] != '"' || !jsonscan.ValidText(raw[1:len(raw)-1]) {
		return false
	}
	if len(raw)-2 <= MaxGroupLen {
		return true // an escape never decodes longer
	}
	g, _ := jsonscan.Unquote(raw[1 : len(raw)-1])
	return len(g) <= MaxGroupLen
}

// groupName reads one group name.
func groupName(raw []byte) (string, bool) {
	if !isGroupName(raw) {
		return "", false
	}
	g, _ := jsonscan.Unquote(raw[1 : len(raw)-1])
	return g, true
}

// MaxEventLen bounds, in bytes, an event name.
const MaxEventLen = 64

// EventName reads raw, a valid JSON value, as an event name: a string of 1
// to MaxEventLen bytes of valid Unicode text without control characters,
// other than "reset" and "revoked", the names of the handler's own events.
// It returns "" for anything else: the event is then unnamed.
func EventName(raw []byte) string {
	if len(raw) < 3 || raw[0] != '"' {
		return ""
	}
	name, ok := jsonscan.Unquote(raw[1 : len(raw)-1])
	if !ok || name == "" || len(name) > MaxEventLen || name == "reset" || name == "revoked" {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return ""
		}
	}
	return name
}
