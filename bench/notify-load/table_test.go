package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTableAttackAndMemory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, json string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("text\n"+json+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("caddy-i.log", `{"proto":"h1","attack":{"kind":"flood","token":"random","duration_secs":5,"requests":1000,"answered":10,"gave_up":990,`+
		`"auth_calls":100,"auth_calls_after":50,"auth_peak_inflight":64,"auth_conns":150,"probe":{"probes":20,"failed":3,"p50_ms":12.5,"max_ms":40},`+
		`"rss_before_kib":1024,"rss_peak_kib":2048,"rss_after_kib":2048},"ok":false}`)
	write("nchan-i.log", `{"proto":"h1","attack":{"kind":"flood","token":"random","duration_secs":5,"requests":2000,"auth_calls":300,"auth_peak_inflight":640,`+
		`"probe":{"probes":20,"failed":0,"p50_ms":2.5,"max_ms":4}},"ok":true}`)
	write("caddy-k.log", `{"proto":"h1","memory":{"kind":"big","message_bytes":20971520,"messages":1,"rss_before_kib":10240,"rss_peak_kib":51200,"rss_after_kib":20480,"delivered":true,"delivery_ms":150},"ok":true}`)
	write("caddy-l.log", `{"proto":"h1","memory":{"kind":"replay","message_bytes":1000000,"messages":300,"resumers":8,"statuses":{"200":8},`+
		`"reset_reasons":{"replay_limit":8},"complete":8,"complete_secs":1.5,"live_expected":40,"live_received":40,"live_max_ms":21},"ok":true}`)
	var sb strings.Builder
	writeTable(&sb, dir, []string{"i", "k", "l"})
	out := sb.String()
	for _, want := range []string{
		"| (i) HTTP/1.1 flood of distinct tokens, 5 s | requests sent | 1000 | 2000 | 0.50 |",
		"| auth API peak in flight | 64 | 640 | 0.10 |",
		"| auth API calls (attack + aftermath) | 150 | 300 | 0.50 |",
		"| **legit failures / probes, attack** | 3 / 20 | 0 / 20 | – |",
		"| result | PROBLEMS | OK | – |",
		"| (k) one 21 MB message | server RSS before / **peak** / after (MiB) | 10.0 / 50.0 / 20.0 | – | – |",
		"| peak − before / message size | 2.00 | – | – |",
		"| delivered | yes, 150 ms | – | – |",
		"| resumers: statuses / resets | 200 ×8 / replay_limit ×8 | – | – |",
		"| live client: received / expected, latency max (ms) | 40 / 40, 21.0 | – | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
