package jsonscan

// IsInteger reports whether raw, already known to be a valid JSON number,
// has neither a fraction nor an exponent. 42.0 and 4.2e1 are not integers:
// comparing them to 42 would require rounding, which ids must never suffer.
func IsInteger(raw []byte) bool {
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

// Elements walks the elements of a valid JSON array, for readers of lists
// of scalars: an array or object element is returned as its first byte
// only, so the walk must stop there.
type Elements struct {
	raw []byte
	i   int
}

// ElementsOf starts a walk of array, a valid JSON array (as Member
// returns it).
func ElementsOf(array []byte) Elements { return Elements{raw: array, i: 1} }

// Next returns the next element, or nil after the last one.
func (c *Elements) Next() []byte {
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
