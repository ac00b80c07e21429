package jsonscan

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

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

// nextPiece decodes the body t of a JSON string (without its quotes, its
// grammar already checked) from t[i]: either the bytes up to the next escape,
// as they are, or one escape, decoded into buf. ok is false when the piece is
// not valid Unicode text: invalid UTF-8, or an escaped surrogate (\ud800 to
// \udfff) that is not a high one followed by a low one.
//
// Such text is refused rather than repaired. encoding/json replaces each
// flaw with U+FFFD, which would make the distinct ids "\xfe", "\xff",
// "\ud800" and "\ufffd" one user. Since an escape always decodes to whole
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

// ValidText reports whether the body t of a JSON string is valid Unicode text.
func ValidText(t []byte) bool {
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

// Unquote decodes the body t of a JSON string; ok is false when it is not
// valid Unicode text. It allocates the result only.
func Unquote(t []byte) (s string, ok bool) {
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
