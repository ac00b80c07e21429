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

func TestTableReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, json string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("text\n"+json+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("caddy-s.log", `{"proto":"h1","streams_requested":19000,"streams_established":19000,"rate":1000,"reload":{"kind":"unchanged","how":"admin",`+
		`"at_secs":5,"took_secs":0.02,"done":true,"streams_ended":19000,"ends":19000,"ends_first_secs":0.01,"ends_last_secs":1.1,`+
		`"reconnects":19000,"up_p50_secs":8.26,"up_max_secs":9.61,"lost":14368,"losing":14368,"lost_max":1,"back_p50_secs":8.3,"back_max_secs":9.61,`+
		`"all_back_secs":9.61,"auth_calls_window":19151,"auth_peak_inflight":2,"probe_window":{"probes":151,"ok":151,"p50_ms":2.8,"p99_ms":5111.8,"max_ms":5214}},"ok":true}`)
	write("nchan-s.log", `{"proto":"h1","streams_requested":19000,"streams_established":19000,"rate":1000,"reload":{"kind":"unchanged","how":"command",`+
		`"done":false,"error":"nginx: exit status 1","streams_ended":20000,"down":10572,"pending":10000,"not_back":3,"all_back_secs":-1,"auth_calls_window":12589},"ok":false}`)
	var sb strings.Builder
	writeTable(&sb, dir, []string{"s"})
	out := sb.String()
	for _, want := range []string{
		"| (s) reload, unchanged config, 19000 h1 streams / 1000 ev/s, at 5 s | streams established | 19000 / 19000 | 19000 / 19000 | – |",
		"| reload | admin, 0.02 s | FAILED: nginx: exit status 1 | – |",
		"| **streams ended by the server** | 19000 | 20000 | 0.95 |",
		"| lost: events / streams / max per stream | 14368 / 14368 / 1 | 0 / 0 / 0 | – |",
		"| **every stream receiving again (s after the reload)** | 9.61 | never (10572 down, 10000 waiting for an answer; 3 not receiving) | – |",
		"| **new user's time to stream, reload window** | 2.8 / 5111.8 / 5214.0, 0 of 151 failed |",
		"| auth API calls in the reload window | 19151 | 12589 | 1.52 |",
		"| result | OK | PROBLEMS | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
