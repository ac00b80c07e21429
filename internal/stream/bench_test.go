package stream

import (
	"net/http"
	"testing"
)

// BenchmarkResponseHead is the head a taken-over stream writes first.
func BenchmarkResponseHead(b *testing.B) {
	hdr := http.Header{
		"Content-Type":                     {"text/event-stream"},
		"Cache-Control":                    {"no-cache"},
		"X-Accel-Buffering":                {"no"},
		"Server":                           {"Caddy"},
		"Access-Control-Allow-Origin":      {"https://app.example.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Vary":                             {"Origin"},
	}
	b.ReportAllocs()
	for b.Loop() {
		responseHead(hdr)
	}
}
