package notify

import (
	"bytes"
	"encoding/json"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// broadcastRecipient addresses a message to every stream whose handler has
// broadcast enabled.
const broadcastRecipient = "*"

// maxUserIDLen bounds, in bytes, the user id an auth API may return. Every
// stream keeps its id, and a longer id is more likely a bug than an account.
const maxUserIDLen = 1024

// dropReason says why a message reached nobody. Its values are metric labels.
type dropReason string

const (
	dropMalformed        dropReason = "malformed"         // not a JSON object
	dropNoRecipient      dropReason = "no_recipient"      // field missing, null, "" or []
	dropInvalidRecipient dropReason = "invalid_recipient" // field of another type, or not valid text
	dropSlowClient       dropReason = "slow_client"       // a stream's queue was full
)

// recipients extracts the recipients of a published message from its field
// named field. It returns the canonical user ids, sorted and without
// duplicates ("*" included when present), or the reason the message must be
// dropped. Integers are kept as their exact decimal text so that 42 and "42"
// name the same user and large ids are never rounded.
func recipients(payload []byte, field string) ([]string, dropReason) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(payload, &obj); err != nil || obj == nil {
		// obj is nil for the JSON literal null, which is not an object either.
		return nil, dropMalformed
	}
	raw, ok := obj[field]
	if !ok {
		return nil, dropNoRecipient
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, dropNoRecipient
	}
	if raw[0] != '[' {
		id, ok, valid := scalarID(raw)
		if !valid {
			return nil, dropInvalidRecipient
		}
		if !ok {
			return nil, dropNoRecipient
		}
		return []string{id}, ""
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, dropMalformed
	}
	ids := make([]string, 0, len(elems))
	for _, e := range elems {
		id, ok, valid := scalarID(bytes.TrimSpace(e))
		if !valid {
			// A bool, float or object among the recipients is a
			// publisher bug; delivering to part of the list would hide it.
			return nil, dropInvalidRecipient
		}
		if ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, dropNoRecipient
	}
	slices.Sort(ids)
	return slices.Compact(ids), ""
}

// route is recipients with the broadcast address taken out: the users a
// message names, and whether it also goes to every broadcast stream.
func route(payload []byte, field string) (users []string, broadcast bool, reason dropReason) {
	users, reason = recipients(payload, field)
	if reason != "" {
		return nil, false, reason
	}
	if i := slices.Index(users, broadcastRecipient); i >= 0 {
		users = slices.Delete(users, i, i+1)
		broadcast = true
	}
	return users, broadcast, ""
}

// scalarID reads one recipient: a string or an integer. ok is false for null
// and the empty string (no recipient); valid is false for any other type,
// and for a string that is not valid Unicode text (see nextPiece).
func scalarID(raw []byte) (id string, ok, valid bool) {
	if len(raw) == 0 {
		return "", false, false
	}
	switch c := raw[0]; {
	case c == 'n' && string(raw) == "null":
		return "", false, true
	case c == '"':
		if !textOK(raw[1 : len(raw)-1]) {
			return "", false, false
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, false
		}
		return s, s != "", true
	case c == '-' || (c >= '0' && c <= '9'):
		if !isJSONInteger(raw) {
			return "", false, false
		}
		return string(raw), true, true
	default:
		return "", false, false
	}
}

// isJSONInteger reports whether raw, already known to be a valid JSON number,
// has neither a fraction nor an exponent. 42.0 and 4.2e1 are not integers:
// comparing them to 42 would require rounding, which ids must never suffer.
func isJSONInteger(raw []byte) bool {
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	// JSON forbids leading zeros; the decoder has normally rejected them
	// already, but this function is also used on auth responses.
	return len(digits) == 1 || digits[0] != '0'
}

// userIDFromAuth extracts the user id from an auth API response body: a JSON
// object whose field is a non-empty string or an integer, of at most
// maxUserIDLen bytes. "*" is refused so that no account can ever be mistaken
// for the broadcast address.
func userIDFromAuth(body []byte, field string) (string, bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return "", false
	}
	raw, ok := obj[field]
	if !ok {
		return "", false
	}
	id, ok, valid := scalarID(bytes.TrimSpace(raw))
	if !valid || !ok || id == broadcastRecipient || len(id) > maxUserIDLen {
		return "", false
	}
	return id, true
}

// hex4 is the value of four hex digits, already checked.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c >= 'a':
			c -= 'a' - 10
		case c >= 'A':
			c -= 'A' - 10
		default:
			c -= '0'
		}
		r = r<<4 | rune(c)
	}
	return r
}

// nextPiece decodes the body t of a JSON string (without its quotes, its
// grammar already checked) from t[i]: either the bytes up to the next escape,
// as they are, or one escape, decoded into buf. ok is false when the piece is
// not valid Unicode text: invalid UTF-8, or an escaped surrogate (\ud800 to
// \udfff) that is not a high one followed by a low one.
//
// Such text is refused rather than repaired. encoding/json replaces each
// flaw with U+FFFD, which made the distinct ids "\xfe", "\xff", "\ud800" and
// "\ufffd" one user (issue 8 §5). Since an escape always decodes to whole
// characters, a body is valid text exactly when each of its pieces is.
func nextPiece(t []byte, i int, buf *[utf8.UTFMax]byte) (piece []byte, next int, ok bool) {
	if t[i] != '\\' {
		j := bytes.IndexByte(t[i:], '\\')
		if j < 0 {
			j = len(t)
		} else {
			j += i
		}
		return t[i:j], j, utf8.Valid(t[i:j])
	}
	c := t[i+1]
	switch c {
	case 'u':
		r := hex4(t[i+2:])
		next = i + 6
		if utf16.IsSurrogate(r) {
			if next+6 > len(t) || t[next] != '\\' || t[next+1] != 'u' {
				return nil, 0, false
			}
			// DecodeRune gives U+FFFD unless r is high and the next
			// escape low; a valid pair is never U+FFFD.
			if r = utf16.DecodeRune(r, hex4(t[next+2:])); r == utf8.RuneError {
				return nil, 0, false
			}
			next += 6
		}
		return buf[:utf8.EncodeRune(buf[:], r)], next, true
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	}
	// '"', '\\' and '/' stand for themselves.
	buf[0] = c
	return buf[:1], i + 2, true
}

// textOK reports whether the body t of a JSON string is valid Unicode text.
func textOK(t []byte) bool {
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(t); {
		_, next, ok := nextPiece(t, i, &buf)
		if !ok {
			return false
		}
		i = next
	}
	return true
}
