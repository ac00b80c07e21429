package testkit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FrameKind says what a frame read from a stream is.
type FrameKind int

// The kinds of frames.
const (
	FrameEnd      FrameKind = iota // the stream ended; there are no more frames
	FrameRetry                     // the retry field
	FrameComment                   // a comment, such as the heartbeat ": ping"
	FramePosition                  // an id field alone: EventSource records it, dispatches nothing
	FrameEvent                     // an event: data, with an id in stream mode and a name for resets
)

// Frame is one frame read from a stream: the fields of its kind are set.
type Frame struct {
	Kind    FrameKind
	ID      string
	Name    string // the event field, e.g. "reset"; "" for a message
	Data    string
	Comment string
	Retry   string
}

func (e Frame) String() string {
	kind := [...]string{"end", "retry", "comment", "position", "event"}[e.Kind]
	return fmt.Sprintf("%s{id:%q name:%q data:%q comment:%q retry:%q}", kind, e.ID, e.Name, e.Data, e.Comment, e.Retry)
}

// Stream is an open event stream, read in the background.
type Stream struct {
	Resp   *http.Response
	frames chan Frame
	quit   chan struct{} // closed by Close: the reader stops delivering
	once   sync.Once
	done   chan struct{} // closed when the body ends
	err    error         // why it ended; read after done
}

// Request builds a GET with an optional bearer token.
func Request(t testing.TB, url, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// StreamClient has no overall timeout: streams are long-lived.
var StreamClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// OpenStream performs req with StreamClient and expects 200 with an event
// stream, which it reads until the test ends.
func OpenStream(t testing.TB, req *http.Request) *Stream {
	t.Helper()
	return OpenStreamWith(t, StreamClient, req)
}

// OpenStreamWith is OpenStream with another client (HTTP/2, TLS).
func OpenStreamWith(t testing.TB, client *http.Client, req *http.Request) *Stream {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("opening stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("opening stream: status %d, body %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	s := ReadStream(resp)
	t.Cleanup(func() { s.Close(); <-s.done })
	return s
}

// ReadStream starts reading resp's body; the caller closes the stream. The
// buffer is large enough for a test to read one stream while another fills
// up.
func ReadStream(resp *http.Response) *Stream {
	s := &Stream{Resp: resp, frames: make(chan Frame, 16384), quit: make(chan struct{}), done: make(chan struct{})}
	go s.read()
	return s
}

// Close stops reading and closes the body.
func (s *Stream) Close() {
	s.once.Do(func() { close(s.quit) })
	s.Resp.Body.Close()
}

// Frames delivers the frames as they are read, for a reader of its own.
func (s *Stream) Frames() <-chan Frame { return s.frames }

// Done is closed when the body has ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err is why the body ended, once Done is closed: io.EOF for a clean end.
func (s *Stream) Err() error { return s.err }

// read parses the SSE wire format (the subset the handler writes).
func (s *Stream) read() {
	defer close(s.done)
	br := bufio.NewReader(s.Resp.Body)
	var ev Frame
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			s.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			switch {
			case ev.Retry != "":
				ev.Kind = FrameRetry
			case ev.Comment != "":
				ev.Kind = FrameComment
			case data != nil:
				ev.Kind, ev.Data = FrameEvent, strings.Join(data, "\n")
			case ev.ID != "":
				ev.Kind = FramePosition
			}
			if ev.Kind != FrameEnd {
				select {
				case s.frames <- ev:
				case <-s.quit:
					return
				}
			}
			ev, data = Frame{}, nil
		case strings.HasPrefix(line, ":"):
			ev.Comment = strings.TrimPrefix(line, ":")
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "data":
				data = append(data, value)
			case "id":
				ev.ID = value
			case "event":
				ev.Name = value
			case "retry":
				ev.Retry = value
			}
		}
	}
}

// NextFrame returns the next frame of any kind; once the stream has ended
// and every frame before the end was read, a frame of kind FrameEnd. It
// fails the test when nothing comes within timeout.
func (s *Stream) NextFrame(t testing.TB, timeout time.Duration) Frame {
	t.Helper()
	select {
	case ev := <-s.frames:
		return ev
	case <-s.done:
		select { // frames parsed before the end come first
		case ev := <-s.frames:
			return ev
		default:
			return Frame{Kind: FrameEnd}
		}
	case <-time.After(timeout):
		t.Fatalf("no frame within %s", timeout)
		return Frame{}
	}
}

// Next returns the next event within timeout, passing over the retry field,
// comments and positions. It fails the test when the stream ends first.
func (s *Stream) Next(t testing.TB, timeout time.Duration) Frame {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no event within %s", timeout)
		}
		switch ev := s.NextFrame(t, left); ev.Kind {
		case FrameEvent:
			return ev
		case FrameEnd:
			t.Fatalf("stream ended while waiting for an event: %v", s.err)
		}
	}
}

// Quiet fails the test when a frame comes within d.
func (s *Stream) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case f := <-s.frames:
		t.Fatalf("got %+v, want nothing for %s", f, d)
	case <-s.done:
		t.Fatalf("the stream ended, want it open: %v", s.err)
	case <-time.After(d):
	}
}

// Expect reads one frame for each of want and fails the test unless they
// are want, in order: a frame want does not list, a heartbeat too, fails it.
func (s *Stream) Expect(t testing.TB, want ...Frame) {
	t.Helper()
	for i, w := range want {
		if f := s.NextFrame(t, 5*time.Second); f != w {
			t.Fatalf("frame %d: got %+v, want %+v", i, f, w)
		}
	}
}

// Collect reads data events until one whose data equals marker, and returns
// the data of those before it.
func (s *Stream) Collect(t testing.TB, marker string) []string {
	t.Helper()
	var got []string
	for {
		ev := s.Next(t, 10*time.Second)
		if ev.Data == marker {
			return got
		}
		got = append(got, ev.Data)
	}
}

// WaitEnded waits for the server to end the stream.
func (s *Stream) WaitEnded(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("stream still open after %s", timeout)
	}
}

// MetricValue reads one sample from a Prometheus endpoint at url, e.g.
// `caddy_notify_dropped_total{reason="malformed"}`. Missing samples are 0.
func MetricValue(t testing.TB, url, sample string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		name, value, ok := strings.Cut(string(line), " ")
		if ok && name == sample {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	return 0
}
