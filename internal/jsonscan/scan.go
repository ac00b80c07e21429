// Package jsonscan reads JSON in place, in one pass and without
// allocating: it finds a top-level member of an object (Member), walks the
// elements of an array (Elements), and decodes or checks the text of a
// string (Unquote, ValidText). The engine reads with it the few fields it
// needs of messages and auth answers that may be megabytes long, and
// accepts exactly the JSON that encoding/json accepts.
package jsonscan

// Member finds the value of the top-level member named field in data, which
// must be exactly one JSON object: ok is false otherwise, exactly when
// json.Unmarshal into a map would have failed. Keys are compared by their
// decoded text (a key that is not valid text, see nextPiece, matches no
// field), and the last of duplicate keys wins, as in encoding/json. value
// aliases data.
func Member(data []byte, field string) (value []byte, found, ok bool) {
	var v [1][]byte
	if !Members(data, []string{field}, v[:]) {
		return nil, false, false
	}
	return v[0], v[0] != nil, true
}

// Members is Member for several fields in one pass: values[i] is set to the
// value of fields[i], or nil when data has no such member (an empty field
// name matches nothing). It reports whether data is exactly one JSON
// object; when it is not, values are meaningless.
func Members(data []byte, fields []string, values [][]byte) bool {
	clear(values)
	s := scanner{data: data}
	s.space()
	if !s.consume('{') {
		return false
	}
	s.depth = 1 // level 1 is this object: its bit stays 0
	s.space()
	if !s.consume('}') {
		for {
			key := s.i + 1
			escaped, ok := s.str()
			if !ok {
				return false
			}
			match := -1
			for i, f := range fields {
				if f != "" && textEquals(data[key:s.i-1], escaped, f) {
					match = i
					break
				}
			}
			s.space()
			if !s.consume(':') {
				return false
			}
			s.space()
			start := s.i
			if !s.value() {
				return false
			}
			if match >= 0 {
				values[match] = data[start:s.i]
			}
			s.space()
			if s.consume('}') {
				break
			}
			if !s.consume(',') {
				return false
			}
			s.space()
		}
	}
	s.space()
	return s.i == len(data)
}

// maxDepth is encoding/json's nesting limit: JSON nested deeper is
// malformed here as it is there.
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
