package sse

import "testing"

func BenchmarkAppendEvent(b *testing.B) {
	payload := []byte(`{"recipient_id":42,"type":"order_paid","lines":["a","b"],"note":"multi` + "\n" + `line"}`)
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for range b.N {
		dst = appendEvent(dst[:0], "1700000000000-0", "", payload)
	}
}
