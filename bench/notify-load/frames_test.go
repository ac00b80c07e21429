package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestFrameReader(t *testing.T) {
	// A data line longer than the reader's 4 KiB buffer, after a retry and an
	// extra blank line (no frame).
	big := string(bigMessage(3, 9, 1_000_000, 10_000))
	stream := "retry: 3000\n\n\n" +
		"id: 5-0\n\n" + // an id-only position
		": ping\r\n\r\n" + // a comment, CRLF
		"id: 6-0\ndata: " + big + "\n\n" +
		"event: reset\ndata: {\"reason\":\"replay_limit\"}\n\n" +
		"data: a\ndata: b\n\n" +
		": " + strings.Repeat("c", 9000) + "\n\n" + // a long comment is skipped whole
		"data: cut"
	r := newFrameReader(strings.NewReader(stream), 64)
	var fs []frame
	var err error
	for {
		var f frame
		if f, err = r.next(); err != nil {
			break
		}
		fs = append(fs, f)
	}
	if err != io.ErrUnexpectedEOF {
		t.Errorf("end: %v, want ErrUnexpectedEOF (a frame cut short)", err)
	}
	if r.n != int64(len(stream)) {
		t.Errorf("read %d bytes of %d", r.n, len(stream))
	}
	if len(fs) != 7 {
		t.Fatalf("%d frames, want 7: %+v", len(fs), fs)
	}
	if !fs[0].retry || fs[0].isEvent() || !fs[1].hasID || fs[1].id != "5-0" || fs[1].isEvent() || fs[2].comments != 1 {
		t.Errorf("retry, position, comment: %+v %+v %+v", fs[0], fs[1], fs[2])
	}
	ev := fs[3]
	if !ev.isEvent() || ev.id != "6-0" || ev.dataLen != len(big) || string(ev.data) != big[:64] {
		t.Errorf("big event: id %q, %d bytes (want %d), prefix %q", ev.id, ev.dataLen, len(big), ev.data)
	}
	if _, seq, _, ok := parseMessage(ev.data); !ok || seq != 9 {
		t.Errorf("the prefix of a big message does not parse: %q", ev.data)
	}
	if fs[4].event != "reset" || string(fs[4].data) != `{"reason":"replay_limit"}` {
		t.Errorf("reset: %+v", fs[4])
	}
	if fs[5].dataLines != 2 || string(fs[5].data) != "a\nb" || fs[5].dataLen != 3 {
		t.Errorf("two data lines: %+v", fs[5])
	}
	if fs[6].comments != 1 || fs[6].isEvent() {
		t.Errorf("long comment: %+v", fs[6])
	}
	// A stream that ends between frames ends with EOF.
	if _, err := newFrameReader(strings.NewReader("retry: 1\n\n"), 8).next(); err != nil {
		t.Fatal(err)
	}
	r = newFrameReader(strings.NewReader("retry: 1\n\n"), 8)
	_, _ = r.next()
	if _, err := r.next(); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

func TestBigMessage(t *testing.T) {
	for _, size := range []int{1_000_000, 20_000_000, 100} {
		m := bigMessage(12, 300, time.Now().UnixNano(), size)
		if len(m) != size {
			t.Errorf("size %d: %d bytes", size, len(m))
		}
		if rcpt, seq, _, ok := parseMessage(m); !ok || string(rcpt) != "12" || seq != 300 {
			t.Errorf("size %d: does not parse", size)
		}
	}
	if m := bigMessage(1, 1, 1, 10); len(m) < 10 || m[len(m)-1] != '}' { // too small: as short as it can be
		t.Errorf("tiny: %s", m)
	}
}
