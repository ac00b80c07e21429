package message

import "testing"

func BenchmarkRecipients(b *testing.B) {
	for name, payload := range map[string]string{
		"single": `{"recipient_id":42,"type":"order_paid","order":{"id":1234,"total":"19.99"}}`,
		"array":  `{"recipient_id":[1,2,3,"4",5,6,7,8],"type":"team_update","text":"hello"}`,
	} {
		b.Run(name, func(b *testing.B) {
			p := []byte(payload)
			b.ReportAllocs()
			for range b.N {
				if _, reason := recipients(p, "recipient_id"); reason != "" {
					b.Fatal(reason)
				}
			}
		})
	}
}
