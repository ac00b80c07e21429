package notify

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

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
	errMsgTimeout          = "Body not received in time."
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

// Errors of reading a body: a JSON value went past its size limit, the
// body past max_body.
var (
	errValueTooLarge = errors.New("value too large")
	errBodyTooLarge  = errors.New("body too large")
)

// minSlab is the smallest buffer a body is read into: the first, unless
// the body is declared shorter.
const minSlab = 512

// bodyReader reads a notify_publish body: one JSON message, or a JSON
// array of at most maxPublishBatch of them. It stops at the first byte
// past a limit (a message's, or the body's), and finds where each value
// ends by following strings and nesting (valueEnd), leaving every check of
// the JSON grammar and of the recipients to route, the parser the stream
// side delivers with, so that what it accepts is what the readers deliver.
//
// The body is read in one pass into slabs that the messages it returns
// are slices of: a message is never copied, and a request holds its body
// and little more. A slab grows with what was read (so a declared length
// costs nothing until the bytes come): to the declared length when there
// is one, by half of what was read otherwise; only the part of a message
// that straddles two slabs is copied, into the next.
type bodyReader struct {
	body    io.Reader
	limit   int            // the largest message, in bytes
	fields  message.Fields // the recipient and group fields
	maxBody int64          // the largest body
	size    int64          // the declared length, or -1
	minSlab int            // the smallest slab; tests lower it

	slab []byte // read so far into the current slab; pos is the next byte to scan
	pos  int
	got  int64 // bytes read from body
	err  error // the body's error once it returned one: io.EOF at its end
}

// newBodyReader reads body, of size bytes (-1 when unknown) and at most
// maxBody, into messages of at most limit bytes with recipients and groups
// in fields.
func newBodyReader(body io.Reader, limit int, fields message.Fields, maxBody, size int64) *bodyReader {
	return &bodyReader{body: body, limit: limit, fields: fields, maxBody: maxBody, size: size, minSlab: minSlab}
}

// done reports whether the body was read to its end.
func (b *bodyReader) done() bool { return errors.Is(b.err, io.EOF) }

// read reads and checks the whole body. It returns the messages with
// their recipients, in order, or the refusal of the first one that fails.
func (b *bodyReader) read() ([]publish.Message, *bodyError) {
	// No body of a valid message starts with more spaces than a message
	// may hold: reading on would only waste time.
	lead, err := b.skipSpace(b.limit)
	if err != nil {
		return nil, readError(err, -1)
	}
	if b.slab[b.pos] != '[' { // skipSpace saw it
		// One message: the whole body, spaces included, is at most limit.
		if b.size > int64(b.limit) {
			return nil, messageError(http.StatusRequestEntityTooLarge, -1, errMsgTooLarge)
		}
		m, berr := b.message(b.limit-lead, -1)
		if berr != nil {
			return nil, berr
		}
		if _, err := b.skipSpace(b.limit - lead - len(m.Data)); !errors.Is(err, io.EOF) {
			return nil, trailingError(err, -1)
		}
		return []publish.Message{m}, nil
	}
	b.pos++
	var msgs []publish.Message
	for i := 0; ; i++ {
		c, err := b.next()
		if err != nil {
			return nil, readError(err, i)
		}
		if c == ']' && i == 0 {
			b.pos++
			break
		}
		if i == maxPublishBatch {
			return nil, messageError(http.StatusRequestEntityTooLarge, -1, errMsgTooMany)
		}
		m, berr := b.message(b.limit, i)
		if berr != nil {
			return nil, berr
		}
		msgs = append(msgs, m)
		if c, err = b.next(); err != nil {
			return nil, readError(err, i)
		}
		b.pos++
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
	return b.slab[b.pos], nil
}

// message reads one JSON value of at most limit bytes and checks it as
// the stream side does (route): a JSON object naming recipients.
func (b *bodyReader) message(limit, index int) (publish.Message, *bodyError) {
	data, err := b.value(limit)
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
	case errors.Is(err, errBodyTooLarge), errors.As(err, &tooLarge):
		// Past the body's own limit (max_body, or Caddy's request_body
		// max_size in front): no message is to blame.
		return messageError(http.StatusRequestEntityTooLarge, -1, errMsgTooLarge)
	case errors.Is(err, errValueTooLarge):
		return messageError(http.StatusRequestEntityTooLarge, index, errMsgTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// body_timeout, or one of the server's read timeouts: no message
		// is to blame either.
		return messageError(http.StatusRequestTimeout, -1, errMsgTimeout)
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
		for b.pos < len(b.slab) && isSpace(b.slab[b.pos]) {
			b.pos++
			n++
		}
		if limit >= 0 && n > limit {
			return n, errValueTooLarge
		}
		if b.pos < len(b.slab) {
			return n, nil
		}
		if _, err := b.more(b.pos); err != nil {
			return n, err
		}
	}
}

// value returns the JSON value that starts at the next byte, which is not
// a space: a string, an array or object (to its closing bracket, brackets
// in strings aside), or any other token (to the next space, comma or
// bracket, or the end). It fails with errValueTooLarge as soon as the
// value is past limit bytes, and with io.ErrUnexpectedEOF when the body
// ends inside a string, array or object. The value is a slice of a slab,
// capped so that appending to it copies.
func (b *bodyReader) value(limit int) ([]byte, error) {
	var v valueEnd
	start := b.pos
	for {
		n, done := v.scan(b.slab[b.pos:])
		b.pos += n
		if b.pos-start > limit {
			return nil, errValueTooLarge
		}
		if done {
			return b.slab[start:b.pos:b.pos], nil
		}
		moved, err := b.more(start)
		start -= moved
		if errors.Is(err, io.EOF) && v.scalar {
			return b.slab[start:b.pos:b.pos], nil // a number or literal ends the body
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
	}
}

// more reads more of the body after what was scanned, all of it, keeping
// the bytes from keep on (the value being read) in one piece with what
// follows: when the slab is full it moves them to a new one, and returns
// by how much they moved. Its error is the body's (io.EOF at its end, kept
// for later calls), or errBodyTooLarge past maxBody.
func (b *bodyReader) more(keep int) (moved int, err error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(b.slab) == cap(b.slab) {
		carry := b.slab[keep:]
		next := make([]byte, len(carry), len(carry)+b.grow())
		copy(next, carry)
		b.slab, b.pos, moved = next, b.pos-keep, keep
	}
	// Reading one byte past maxBody tells a body that ends there from one
	// that goes on.
	room := b.slab[len(b.slab):cap(b.slab)]
	room = room[:min(int64(len(room)), b.maxBody+1-b.got)]
	for {
		n, err := b.body.Read(room)
		b.slab = b.slab[:len(b.slab)+n]
		b.got += int64(n)
		switch {
		case b.got > b.maxBody:
			b.err = errBodyTooLarge
			return moved, b.err
		case n > 0:
			b.err = err // reported at the next call, after these bytes
			return moved, nil
		case err != nil:
			b.err = err
			return moved, err
		}
	}
}

// grow is the room of the next slab: what was read so far (a slab as
// large as all before it) up to the declared length, or half of it when
// there is none, so that no more than a third of the slabs is ever empty
// room; and never past maxBody.
func (b *bodyReader) grow() int {
	n := max(int64(b.minSlab), b.got/2)
	if b.size >= b.got {
		// The byte after the declared length finds its end.
		n = min(max(int64(b.minSlab), b.got), b.size-b.got+1)
	}
	return int(max(min(n, b.maxBody+1-b.got), 1))
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
