package sse

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		id, name, data, want string
	}{
		{"", "order_paid", `{"a":1}`, "event: order_paid\ndata: {\"a\":1}\n\n"},
		{"1-0", "x", "a\nb", "id: 1-0\nevent: x\ndata: a\ndata: b\n\n"},
		{"", "", `{"a":1}`, "data: {\"a\":1}\n\n"},
		{"1700000000000-0", "", `{"a":1}`, "id: 1700000000000-0\ndata: {\"a\":1}\n\n"},
		{"", "", "{\n  \"a\": 1\n}", "data: {\ndata:   \"a\": 1\ndata: }\n\n"},
		{"", "", "a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"},
		{"", "", "\n\n", "data: \ndata: \ndata: \n\n"},
		{"", "", " lead", "data:  lead\n\n"},
		{"", "", "", "data: \n\n"},
	}
	for _, tt := range tests {
		if got := string(appendEvent(nil, tt.id, tt.name, []byte(tt.data))); got != tt.want {
			t.Errorf("appendEvent(%q, %q) = %q, want %q", tt.id, tt.data, got, tt.want)
		}
	}
	if got := string(Retry(3 * time.Second).Bytes()); got != "retry: 3000\n\n" {
		t.Errorf("Retry = %q", got)
	}
}

// parseSSE is an independent reading of the event stream format (WHATWG
// HTML, "Parsing an event stream"): it returns the data of each dispatched
// event.
func parseSSE(wire []byte) []string {
	// Lines end with CRLF, CR or LF.
	norm := strings.ReplaceAll(strings.ReplaceAll(string(wire), "\r\n", "\n"), "\r", "\n")
	sc := bufio.NewScanner(strings.NewReader(norm))
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	var events []string
	var data strings.Builder
	has := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if has {
				events = append(events, strings.TrimSuffix(data.String(), "\n"))
			}
			data.Reset()
			has = false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		if field == "data" {
			data.WriteString(value)
			data.WriteString("\n")
			has = true
		}
	}
	return events
}

// FuzzAppendEvent checks that any payload arrives as exactly one event whose
// reassembled data equals the payload with CRLF and CR turned into LF: no
// payload can end an event early or inject a field.
func FuzzAppendEvent(f *testing.F) {
	for _, s := range []string{"{}", "a\nb", "a\r\nb", "\r", "\n\ndata: x\n\n", "id: 1\n", ": c", "x\r\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		wire := appendEvent(nil, "", "", data)
		events := parseSSE(wire)
		if len(events) != 1 {
			t.Fatalf("%q framed as %d events: %q", data, len(events), wire)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n")
		if events[0] != want {
			t.Fatalf("data %q arrives as %q", want, events[0])
		}
		if !bytes.HasSuffix(wire, []byte("\n\n")) {
			t.Fatalf("event not terminated: %q", wire)
		}
	})
}
