package notify

import (
	"bytes"
	"slices"
	"strings"
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
	dropTooLarge         dropReason = "too_large"         // over max_message_size: not parsed
)

// recipients extracts the recipients of a published message from its field
// named field. It returns the canonical user ids, sorted and without
// duplicates ("*" included when present), or the reason the message must be
// dropped. Integers are kept as their exact decimal text so that 42 and "42"
// name the same user and large ids are never rounded.
//
// It runs for every message, so it reads the payload in place: one pass
// (member) checks that it is a JSON object and finds the field, and only the
// ids are copied out. A 20 MB message costs no second 20 MB.
func recipients(payload []byte, field string) ([]string, dropReason) {
	raw, found, ok := member(payload, field)
	if !ok {
		return nil, dropMalformed
	}
	if !found {
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
	// A first pass checks every element and counts the ids, so that an
	// invalid list allocates nothing and a valid one exactly its result.
	n := 0
	c := elements{raw: raw, i: 1}
	for e := c.next(); e != nil; e = c.next() {
		ok, valid := checkScalar(e)
		if !valid {
			// A bool, float, object or unreadable string among the
			// recipients is a publisher bug; delivering to part of
			// the list would hide it.
			return nil, dropInvalidRecipient
		}
		if ok {
			n++
		}
	}
	if n == 0 {
		return nil, dropNoRecipient
	}
	ids := make([]string, 0, n)
	c = elements{raw: raw, i: 1}
	for e := c.next(); e != nil; e = c.next() {
		if id, ok, _ := scalarID(e); ok {
			ids = append(ids, id)
		}
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

// userIDFromAuth extracts the user id from an auth API response body: a JSON
// object whose field is a non-empty string or an integer, of at most
// maxUserIDLen bytes. "*" is refused so that no account can ever be mistaken
// for the broadcast address.
func userIDFromAuth(body []byte, field string) (string, bool) {
	raw, found, ok := member(body, field)
	if !ok || !found {
		return "", false
	}
	id, ok, valid := scalarID(raw)
	if !valid || !ok || id == broadcastRecipient || len(id) > maxUserIDLen {
		return "", false
	}
	return id, true
}

// scalarID reads one id from raw, a valid JSON value: a string or an integer.
// ok is false for null and the empty string (no recipient); valid is false
// for any other type, and for a string that is not valid Unicode text (see
// nextPiece).
func scalarID(raw []byte) (id string, ok, valid bool) {
	if ok, valid = checkScalar(raw); !ok || !valid {
		return "", false, valid
	}
	if raw[0] == '"' {
		id, _ = unquote(raw[1 : len(raw)-1])
		return id, true, true
	}
	return string(raw), true, true
}

// checkScalar is scalarID without the copy.
func checkScalar(raw []byte) (ok, valid bool) {
	if len(raw) == 0 {
		return false, false
	}
	switch c := raw[0]; {
	case c == 'n' && string(raw) == "null":
		return false, true
	case c == '"':
		return len(raw) > 2, textOK(raw[1 : len(raw)-1])
	case c == '-' || (c >= '0' && c <= '9'):
		return true, isJSONInteger(raw)
	default:
		return false, false
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
	// JSON forbids leading zeros; the scanner has rejected them already,
	// but the function must not depend on it.
	return len(digits) == 1 || digits[0] != '0'
}

// member finds the value of the top-level member named field in data, which
// must be exactly one JSON object: ok is false otherwise, exactly when
// json.Unmarshal into a map would have failed. Keys are compared by their
// decoded text (a key that is not valid text, see nextPiece, matches no
// field), and the last of duplicate keys wins, as in encoding/json. value
// aliases data.
func member(data []byte, field string) (value []byte, found, ok bool) {
	s := scanner{data: data}
	s.space()
	if !s.consume('{') {
		return nil, false, false
	}
	s.depth = 1 // level 1 is this object: its bit stays 0
	s.space()
	if !s.consume('}') {
		for {
			key := s.i + 1
			escaped, ok := s.str()
			if !ok {
				return nil, false, false
			}
			match := textEquals(data[key:s.i-1], escaped, field)
			s.space()
			if !s.consume(':') {
				return nil, false, false
			}
			s.space()
			start := s.i
			if !s.value() {
				return nil, false, false
			}
			if match {
				value, found = data[start:s.i], true
			}
			s.space()
			if s.consume('}') {
				break
			}
			if !s.consume(',') {
				return nil, false, false
			}
			s.space()
		}
	}
	s.space()
	if s.i != len(data) {
		return nil, false, false
	}
	return value, found, true
}

// maxDepth is encoding/json's nesting limit: a message nested deeper was
// malformed before this scanner replaced json.Unmarshal, and still is.
const maxDepth = 10000

// scanner checks JSON text in one pass, without allocating: the grammar of
// RFC 8259 as encoding/json applies it (strings may hold any byte but the
// control characters; their text is only checked where it is used).
type scanner struct {
	data  []byte
	i     int
	depth int                     // open arrays and objects
	array [maxDepth/64 + 1]uint64 // bit d: level d is an array, not an object
}

func (s *scanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// value moves past the JSON value at s.i. Nesting is followed with the
// array bits instead of recursion, so a deep message costs no stack.
func (s *scanner) value() bool {
	base := s.depth
	for {
		// A value starts at s.i.
		if s.i >= len(s.data) {
			return false
		}
		switch c := s.data[s.i]; c {
		case '{', '[':
			s.i++
			s.depth++
			if s.depth > maxDepth {
				return false
			}
			s.setArray(c == '[')
			s.space()
			if s.consume(c + 2) { // '}' and ']'
				s.depth--
				break
			}
			if c == '{' && !s.key() {
				return false
			}
			continue
		case '"':
			if _, ok := s.str(); !ok {
				return false
			}
		case 't':
			if !s.literal("true") {
				return false
			}
		case 'f':
			if !s.literal("false") {
				return false
			}
		case 'n':
			if !s.literal("null") {
				return false
			}
		default:
			if !s.number() {
				return false
			}
		}
		// A value ended: close the containers it ends, or move to the
		// next element.
		for s.depth > base {
			s.space()
			if s.consume(',') {
				s.space()
				if !s.isArray() && !s.key() {
					return false
				}
				break
			}
			if !s.consume(s.closer()) {
				return false
			}
			s.depth--
		}
		if s.depth == base {
			return true
		}
	}
}

// key moves past an object key and its colon, to the member's value.
func (s *scanner) key() bool {
	if _, ok := s.str(); !ok {
		return false
	}
	s.space()
	if !s.consume(':') {
		return false
	}
	s.space()
	return true
}

func (s *scanner) setArray(array bool) {
	w, b := s.depth/64, uint(s.depth%64)
	if array {
		s.array[w] |= 1 << b
	} else {
		s.array[w] &^= 1 << b
	}
}

func (s *scanner) isArray() bool {
	return s.array[s.depth/64]&(1<<uint(s.depth%64)) != 0
}

func (s *scanner) closer() byte {
	if s.isArray() {
		return ']'
	}
	return '}'
}

func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number moves past a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	d, i := s.data, s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		i = digits(d, i+1)
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		j := digits(d, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := digits(d, i)
		if j == i {
			return false
		}
		i = j
	}
	s.i = i
	return true
}

func digits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

// str moves past the JSON string at s.i and reports whether it holds escapes.
func (s *scanner) str() (escaped, ok bool) {
	end, escaped, ok := scanString(s.data, s.i)
	if ok {
		s.i = end
	}
	return escaped, ok
}

// plain marks the bytes a JSON string holds as they are: all but the quote,
// the backslash and the control characters.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString checks the JSON string starting at d[i] (the opening quote) and
// returns the index after its closing quote.
func scanString(d []byte, i int) (end int, escaped, ok bool) {
	if i >= len(d) || d[i] != '"' {
		return 0, false, false
	}
	i++
	for {
		for i < len(d) && plain[d[i]] {
			i++
		}
		if i >= len(d) || d[i] < 0x20 {
			return 0, false, false
		}
		if d[i] == '"' {
			return i + 1, escaped, true
		}
		// A backslash.
		escaped = true
		if i+1 >= len(d) {
			return 0, false, false
		}
		switch d[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
				return 0, false, false
			}
			i += 6
		default:
			return 0, false, false
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
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

// elements walks the elements of raw, a valid JSON array, as recipients
// reads them: an array or object element is returned as its first byte
// only, so the walk must stop there.
type elements struct {
	raw []byte
	i   int
}

// next returns the next element, or nil after the last one.
func (c *elements) next() []byte {
	r, i := c.raw, c.i
	for r[i] == ',' || r[i] == ' ' || r[i] == '\t' || r[i] == '\n' || r[i] == '\r' {
		i++
	}
	start := i
	switch r[i] {
	case ']':
		return nil
	case '"':
		i, _, _ = scanString(r, i)
	case '[', '{':
		i++
	default:
		for r[i] != ',' && r[i] != ']' && r[i] != ' ' && r[i] != '\t' && r[i] != '\n' && r[i] != '\r' {
			i++
		}
	}
	c.i = i
	return r[start:i]
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

// unquote decodes the body t of a JSON string; ok is false when it is not
// valid Unicode text. It allocates the result only.
func unquote(t []byte) (s string, ok bool) {
	if bytes.IndexByte(t, '\\') < 0 {
		if !utf8.Valid(t) {
			return "", false
		}
		return string(t), true
	}
	var b strings.Builder
	b.Grow(len(t)) // an escape is never shorter than what it stands for
	var buf [utf8.UTFMax]byte
	for i := 0; i < len(t); {
		p, next, ok := nextPiece(t, i, &buf)
		if !ok {
			return "", false
		}
		b.Write(p)
		i = next
	}
	return b.String(), true
}

// textEquals reports whether the body t of a JSON string decodes to valid
// text equal to field, without allocating.
func textEquals(t []byte, escaped bool, field string) bool {
	if !escaped {
		return string(t) == field && utf8.Valid(t)
	}
	if len(t) < len(field) {
		return false // decoding never lengthens
	}
	var buf [utf8.UTFMax]byte
	rest := field
	for i := 0; i < len(t); {
		p, next, ok := nextPiece(t, i, &buf)
		if !ok || len(p) > len(rest) || string(p) != rest[:len(p)] {
			return false
		}
		rest = rest[len(p):]
		i = next
	}
	return rest == ""
}
