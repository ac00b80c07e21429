package notify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddy-notify/notify/internal/message"
	"github.com/caddy-notify/notify/publish"
)

// maxPublishBatch is the most messages one notify_publish request may
// carry in a JSON array.
const maxPublishBatch = 1000

// The error messages of notify_publish's refusals of a body.
const (
	errMsgMalformed        = "Malformed message."
	errMsgNoRecipient      = "Message has no recipient and no group."
	errMsgInvalidRecipient = "Invalid recipient."
	errMsgInvalidGroup     = "Invalid group."
	errMsgTooLarge         = "Message too large."
	errMsgTooMany          = "Too many messages: at most 1000."
)

// bodyError is why a notify_publish body is refused: its status and its
// error message, which for a message of an array names its index.
type bodyError struct {
	status int
	msg    string
}

// messageError is a refusal of message index of an array (index >= 0) or
// of the body's one message (index < 0).
func messageError(status, index int, msg string) *bodyError {
	if index >= 0 {
		msg = fmt.Sprintf("Message %d: %s", index, msg)
	}
	return &bodyError{status: status, msg: msg}
}

// errValueTooLarge: a JSON value went past its size limit.
var errValueTooLarge = errors.New("value too large")

// bodyReader reads a notify_publish body: one JSON message, or a JSON
// array of at most maxPublishBatch of them. It never holds more than the
// messages it accepted and the one it is reading, each at most limit
// bytes: it finds where each value ends by following strings and nesting
// (valueEnd), stops at the first byte past a limit, and leaves every check
// of the JSON grammar and of the recipients to route, the parser the
// stream side delivers with, so that what it accepts is what the readers
// deliver.
type bodyReader struct {
	br     *bufio.Reader
	limit  int            // the largest message, in bytes
	fields message.Fields // the recipient and group fields
}

// read reads and checks the whole body; sizeHint is its Content-Length
// (-1 when unknown). It returns the messages with their recipients, in
// order, or the refusal of the first one that fails.
func (b *bodyReader) read(sizeHint int64) ([]publish.Message, *bodyError) {
	// No body of a valid message starts with more spaces than a message
	// may hold: reading on would only waste time.
	lead, err := b.skipSpace(b.limit)
	if err != nil {
		return nil, readError(err, -1)
	}
	first, _ := b.br.Peek(1) // skipSpace saw it
	if first[0] != '[' {
		// One message: the whole body, spaces included, is at most limit.
		if sizeHint > int64(b.limit) {
			return nil, messageError(http.StatusRequestEntityTooLarge, -1, errMsgTooLarge)
		}
		buf := make([]byte, 0, int(min(max(sizeHint, 0), int64(b.limit))))
		m, berr := b.message(buf, b.limit-lead, -1)
		if berr != nil {
			return nil, berr
		}
		if _, err := b.skipSpace(b.limit - lead - len(m.Data)); !errors.Is(err, io.EOF) {
			return nil, trailingError(err, -1)
		}
		return []publish.Message{m}, nil
	}
	_, _ = b.br.Discard(1)
	var msgs []publish.Message
	for i := 0; ; i++ {
		c, err := b.next()
		if err != nil {
			return nil, readError(err, i)
		}
		if c == ']' && i == 0 {
			_, _ = b.br.Discard(1)
			break
		}
		if i == maxPublishBatch {
			return nil, messageError(http.StatusRequestEntityTooLarge, -1, errMsgTooMany)
		}
		m, berr := b.message(nil, b.limit, i)
		if berr != nil {
			return nil, berr
		}
		msgs = append(msgs, m)
		if c, err = b.next(); err != nil {
			return nil, readError(err, i)
		}
		_, _ = b.br.Discard(1)
		if c == ']' {
			break
		}
		if c != ',' {
			return nil, messageError(http.StatusBadRequest, i, errMsgMalformed)
		}
	}
	if _, err := b.skipSpace(-1); !errors.Is(err, io.EOF) {
		return nil, trailingError(err, -1)
	}
	return msgs, nil
}

// next skips spaces and returns the byte after them, unread.
func (b *bodyReader) next() (byte, error) {
	if _, err := b.skipSpace(-1); err != nil {
		return 0, err
	}
	c, _ := b.br.Peek(1)
	return c[0], nil
}

// message reads one JSON value of at most limit bytes into buf and checks
// it as the stream side does (route): a JSON object naming recipients.
func (b *bodyReader) message(buf []byte, limit, index int) (publish.Message, *bodyError) {
	data, err := b.value(buf, limit)
	if err != nil {
		return publish.Message{}, readError(err, index)
	}
	route, reason := message.Parse(data, b.fields)
	switch reason {
	case "":
	case message.NoRecipient:
		return publish.Message{}, messageError(http.StatusBadRequest, index, errMsgNoRecipient)
	case message.InvalidRecipient:
		return publish.Message{}, messageError(http.StatusBadRequest, index, errMsgInvalidRecipient)
	case message.InvalidGroup:
		return publish.Message{}, messageError(http.StatusBadRequest, index, errMsgInvalidGroup)
	default:
		return publish.Message{}, messageError(http.StatusBadRequest, index, errMsgMalformed)
	}
	users := route.Users
	if route.Broadcast {
		users = append(users, publish.Broadcast)
	}
	return publish.Message{Data: data, Recipients: users, Groups: route.Groups}, nil
}

// readError turns a failure to read a value into its refusal.
func readError(err error, index int) *bodyError {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		// Past the body's own limit: no message is to blame.
		return messageError(http.StatusRequestEntityTooLarge, -1, errMsgTooLarge)
	case errors.Is(err, errValueTooLarge):
		return messageError(http.StatusRequestEntityTooLarge, index, errMsgTooLarge)
	default:
		// The body ended inside a value (or the client left).
		return messageError(http.StatusBadRequest, index, errMsgMalformed)
	}
}

// trailingError refuses what follows the body's value: more than spaces.
func trailingError(err error, index int) *bodyError {
	if err == nil {
		return messageError(http.StatusBadRequest, index, errMsgMalformed)
	}
	return readError(err, index)
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipSpace consumes JSON whitespace, at most limit bytes of it (no limit
// when negative), and returns how much. Its error is io.EOF at the end of
// the body, errValueTooLarge past limit, nil before another byte.
func (b *bodyReader) skipSpace(limit int) (int, error) {
	n := 0
	for {
		chunk, err := b.peek()
		if err != nil {
			return n, err
		}
		i := 0
		for i < len(chunk) && isSpace(chunk[i]) {
			i++
		}
		n += i
		_, _ = b.br.Discard(i)
		if limit >= 0 && n > limit {
			return n, errValueTooLarge
		}
		if i < len(chunk) {
			return n, nil
		}
	}
}

// peek returns the buffered bytes, reading more when there are none.
func (b *bodyReader) peek() ([]byte, error) {
	if b.br.Buffered() == 0 {
		if _, err := b.br.Peek(1); err != nil {
			return nil, err
		}
	}
	return b.br.Peek(b.br.Buffered())
}

// value appends to buf the JSON value that starts at the next byte, which
// is not a space: a string, an array or object (to its closing bracket,
// brackets in strings aside), or any other token (to the next space,
// comma or bracket, or the end). It fails with errValueTooLarge before
// holding more than limit bytes, and with io.ErrUnexpectedEOF when the
// body ends inside a string, array or object.
func (b *bodyReader) value(buf []byte, limit int) ([]byte, error) {
	var v valueEnd
	for {
		chunk, err := b.peek()
		if errors.Is(err, io.EOF) {
			if v.scalar {
				return buf, nil // a number or literal ends the body
			}
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		n, done := v.scan(chunk)
		if len(buf)+n > limit {
			return nil, errValueTooLarge
		}
		buf = append(buf, chunk[:n]...)
		_, _ = b.br.Discard(n)
		if done {
			return buf, nil
		}
	}
}

// valueEnd finds where a JSON value ends, chunk after chunk, without
// checking it: route does, once the value is whole.
type valueEnd struct {
	started, scalar bool
	inString, esc   bool
	depth           int
}

// scan reports how many bytes of chunk belong to the value, and whether
// they end it.
func (v *valueEnd) scan(chunk []byte) (int, bool) {
	for i, c := range chunk {
		switch {
		case v.inString:
			switch {
			case v.esc:
				v.esc = false
			case c == '\\':
				v.esc = true
			case c == '"':
				v.inString = false
				if v.depth == 0 {
					return i + 1, true
				}
			}
		case v.scalar:
			if isSpace(c) || c == ',' || c == ']' || c == '}' || c == '[' || c == '{' || c == '"' {
				return i, true
			}
		case c == '"':
			v.inString = true
		case c == '{' || c == '[':
			v.depth++
		case c == '}' || c == ']':
			v.depth--
			if v.depth <= 0 {
				// A stray closing bracket is a value of its own, for
				// route to refuse.
				return i + 1, true
			}
		case !v.started:
			v.scalar = true
		}
		v.started = true
	}
	return len(chunk), false
}
