package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// freeportMain prints a free loopback TCP port (for the bench script).
func freeportMain([]string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "freeport:", err)
		return 1
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return 0
}

// lastJSONLine returns the summary a run printed as its last line.
func lastJSONLine(path string) (*summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "{") {
			last = l
		}
	}
	if last == "" {
		return nil, fmt.Errorf("%s: no JSON summary", path)
	}
	var s summary
	if err := json.Unmarshal([]byte(last), &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// tableMain prints the side-by-side markdown table of the runs in a
// directory: files <target>-<workload>.log, target caddy or nchan.
func tableMain(args []string) int {
	fs := flag.NewFlagSet("table", flag.ExitOnError)
	dir := fs.String("dir", ".", "directory of the run logs")
	wls := fs.String("workloads", "a b c d e f g h h-valid i j k k-default l m n o p q r s s-change s-h2 s-h2-change t-group t-list", "workloads (runs), in order")
	_ = fs.Parse(args)
	writeTable(os.Stdout, *dir, strings.Fields(*wls))
	return 0
}

func writeTable(w io.Writer, dir string, wls []string) {
	load := func(target, wl string) *summary {
		s, err := lastJSONLine(filepath.Join(dir, target+"-"+wl+".log"))
		if err != nil {
			return nil
		}
		return s
	}
	fmt.Fprintln(w, "| workload | metric | caddy-notify | nchan | caddy/nchan |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|")
	for _, wl := range wls {
		c, n := load("caddy", wl), load("nchan", wl)
		if c == nil && n == nil {
			continue
		}
		ref := c
		if ref == nil {
			ref = n
		}
		if ref.Attack != nil || ref.Memory != nil {
			writeExtraRows(w, wl, c, n)
			continue
		}
		if ref.Reload != nil {
			writeReloadRows(w, wl, c, n)
			continue
		}
		proto := ref.Proto
		if strings.HasPrefix(ref.URL, "https:") {
			proto += " TLS"
		}
		name := fmt.Sprintf("(%s) %d %s streams / %d users", wl, ref.StreamsRequested, proto, ref.Users)
		switch {
		case ref.Fan > 0:
			name += fmt.Sprintf(" / %g msg/s, each to %s (%d bytes)", ref.Rate, fanTarget(ref), ref.MessageBytes)
		case ref.Rate > 0:
			name += fmt.Sprintf(" / %.0f ev/s", ref.Rate)
		default:
			name += " / connect only"
		}
		num := func(f func(*summary) float64, format string) func(*summary) (float64, string, bool) {
			return func(s *summary) (float64, string, bool) { v := f(s); return v, fmt.Sprintf(format, v), true }
		}
		publishing := ref.Rate > 0
		metrics := []row{
			{"streams established", func(s *summary) (float64, string, bool) {
				return float64(s.Streams), fmt.Sprintf("%d / %d", s.Streams, s.StreamsRequested), true
			}},
			{"memory per idle stream (KiB)", num(func(s *summary) float64 { return s.IdleKiBPerStream }, "%.1f")},
			{"memory per idle stream, PSS (KiB)", num(func(s *summary) float64 { return s.IdlePSSPerStream }, "%.1f")},
			{"connects/s", num(func(s *summary) float64 { return s.ConnectsPerSec }, "%.0f")},
			{"auth API calls", num(func(s *summary) float64 { return float64(s.AuthCalls) }, "%.0f")},
			{"server CPU s while connecting", num(func(s *summary) float64 { return s.CPUConnectSecs }, "%.2f")},
		}
		if publishing {
			metrics = append(metrics,
				row{"deliveries received / expected", func(s *summary) (float64, string, bool) {
					return float64(s.Received), fmt.Sprintf("%d / %d", s.Received, s.Expected), true
				}},
				row{"CPU s per 1,000 deliveries", num(func(s *summary) float64 { return s.CPUPer1000Deliv }, "%.4f")},
				row{"latency p50 (ms)", num(func(s *summary) float64 { return s.P50ms }, "%.2f")},
				row{"latency p99 (ms)", num(func(s *summary) float64 { return s.P99ms }, "%.2f")},
				row{"lost / dup / misrouted / out-of-order", func(s *summary) (float64, string, bool) {
					return 0, fmt.Sprintf("%d / %d / %d / %d", s.Lost, s.Duplicated, s.Misrouted, s.OutOfOrder), false
				}},
				row{"deliveries/s", num(func(s *summary) float64 { return s.DeliveriesPerSec }, "%.0f")},
				row{"Redis CPU s while publishing", num(func(s *summary) float64 { return s.RedisCPUSecs }, "%.2f")},
				row{"publishing server CPU s (nchan's nginx; Caddy with notify_publish for -publish http)", num(func(s *summary) float64 { return s.AuxCPUSecs }, "%.2f")},
				row{"publishing server CPU s per 1,000 messages", num(func(s *summary) float64 { return s.AuxCPUPer1000 }, "%.4f")},
				row{"messages/s published without error", num(func(s *summary) float64 { return s.PublishedPerSec }, "%.0f")},
			)
		}
		if ref.ReconnectAtSecs > 0 {
			metrics = append(metrics,
				row{"reconnects done / failed", func(s *summary) (float64, string, bool) {
					return float64(s.Reconnects), fmt.Sprintf("%d / %d", s.Reconnects, s.ReconnectsFailed), true
				}},
				row{"reconnects/s (first close → last re-established)", num(func(s *summary) float64 { return s.ReconnectsPerSec }, "%.0f")},
				row{"reset events", num(func(s *summary) float64 { return float64(s.Resets) }, "%.0f")},
			)
		}
		metrics = append(metrics,
			row{"server RSS connected (MiB)", num(func(s *summary) float64 { return float64(s.Server[1].RSSKiB) / 1024 }, "%.1f")},
			row{"load tool CPU s (whole run)", num(func(s *summary) float64 { return s.ToolCPUSecs }, "%.2f")})
		writeRows(w, name, metrics, c, n)
	}
}

// fanTarget says how a fan-out run addressed its messages.
func fanTarget(s *summary) string {
	per := s.Users / max(s.Fan, 1)
	if s.FanBy == "list" {
		return fmt.Sprintf("%d users listed in recipient_id", per)
	}
	if s.Fan == 1 {
		return fmt.Sprintf("one group of %d users", per)
	}
	return fmt.Sprintf("a group of %d users", per)
}

// writeReloadRows prints the rows of a reload run (reload.go).
func writeReloadRows(w io.Writer, wl string, c, n *summary) {
	ref := c
	if ref == nil {
		ref = n
	}
	r := ref.Reload
	name := fmt.Sprintf("(%s) reload, %s config, %d %s streams / %.0f ev/s, at %.0f s",
		wl, r.Kind, ref.StreamsRequested, ref.Proto, ref.Rate, r.AtSecs)
	text := func(label string, f func(s *summary, r *reloadSummary) string) row {
		return row{label, func(s *summary) (float64, string, bool) { return 0, f(s, s.Reload), false }}
	}
	num := func(label, format string, f func(r *reloadSummary) float64) row {
		return row{label, func(s *summary) (float64, string, bool) { v := f(s.Reload); return v, fmt.Sprintf(format, v), true }}
	}
	secs := func(v float64) string {
		if v < 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", v)
	}
	probe := func(p probeSummary) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f, %d of %d failed", p.P50ms, p.P99ms, p.Maxms, p.Failed, p.Probes)
	}
	rows := []row{
		text("streams established", func(s *summary, _ *reloadSummary) string {
			return fmt.Sprintf("%d / %d", s.Streams, s.StreamsRequested)
		}),
		text("reload", func(_ *summary, r *reloadSummary) string {
			if !r.Done {
				return "FAILED: " + r.Error
			}
			return fmt.Sprintf("%s, %.2f s", r.How, r.TookSecs)
		}),
		num("**streams ended by the server**", "%.0f", func(r *reloadSummary) float64 { return float64(r.StreamsEnded) }),
		text("ends: first / last (s after the reload)", func(_ *summary, r *reloadSummary) string {
			return secs(r.EndsFirstSecs) + " / " + secs(r.EndsLastSecs)
		}),
		text("reconnects / failed attempts", func(_ *summary, r *reloadSummary) string {
			return fmt.Sprintf("%d / %d", r.Reconnects, r.ReconnectFailures)
		}),
		text("re-established p50 / last (s after)", func(_ *summary, r *reloadSummary) string {
			return secs(r.UpP50Secs) + " / " + secs(r.UpMaxSecs)
		}),
		text("lost: events / streams / max per stream", func(_ *summary, r *reloadSummary) string {
			return fmt.Sprintf("%d / %d / %d", r.Lost, r.Losing, r.LostMax)
		}),
		text("duplicated: events / streams / max per stream", func(_ *summary, r *reloadSummary) string {
			return fmt.Sprintf("%d / %d / %d", r.Dups, r.Duplicating, r.DupMax)
		}),
		text("streams losing events after they were back (or unended) / not receiving at the end", func(_ *summary, r *reloadSummary) string {
			return fmt.Sprintf("%d / %d", r.Late, r.NotBack)
		}),
		text("streams receiving again p50 (s after the reload)", func(_ *summary, r *reloadSummary) string { return secs(r.BackP50Secs) }),
		row{"**every stream receiving again (s after the reload)**", func(s *summary) (float64, string, bool) {
			r := s.Reload
			if r.AllBackSecs < 0 {
				return 0, fmt.Sprintf("never (%d down, %d waiting for an answer; %d not receiving)", r.Down, r.Pending, r.NotBack), false
			}
			return r.AllBackSecs, fmt.Sprintf("%.2f", r.AllBackSecs), true
		}},
		text("id regressions / resumes skipping events", func(_ *summary, r *reloadSummary) string {
			return fmt.Sprintf("%d / %d", r.IDRegressions, r.ResumeGaps)
		}),
		num("auth API calls in the reload window", "%.0f", func(r *reloadSummary) float64 { return float64(r.AuthCallsWindow) }),
		num("auth API calls after it", "%.0f", func(r *reloadSummary) float64 { return float64(r.AuthCallsAfter) }),
		num("auth API peak in flight (window)", "%.0f", func(r *reloadSummary) float64 { return float64(r.AuthPeakInflight) }),
		text("new user's time to stream p50 / p99 / max (ms), before", func(_ *summary, r *reloadSummary) string { return probe(r.ProbeBefore) }),
		text("**new user's time to stream, reload window**", func(_ *summary, r *reloadSummary) string { return probe(r.ProbeWindow) }),
		text("new user's time to stream, after", func(_ *summary, r *reloadSummary) string { return probe(r.ProbeAfter) }),
	}
	writeRows(w, name, rows, c, n)
	okRow := func(s *summary) string {
		if s == nil {
			return "–"
		}
		return map[bool]string{true: "OK", false: "PROBLEMS"}[s.OK]
	}
	fmt.Fprintf(w, "|  | result | %s | %s | – |\n", okRow(c), okRow(n))
}

// row is one metric of a table: its cell for a run (ok false: nothing to
// compare).
type row struct {
	label string
	get   func(*summary) (v float64, cell string, ok bool)
}

// writeRows prints rows for caddy-notify's run c and nchan's n (either may
// be nil: "–"), with their ratio where both have a figure; the first row
// carries the workload's name.
func writeRows(w io.Writer, name string, rows []row, c, n *summary) {
	cell := func(r row, s *summary) (float64, string, bool) {
		if s == nil {
			return 0, "–", false
		}
		return r.get(s)
	}
	for i, r := range rows {
		cv, cs, cok := cell(r, c)
		nv, ns, nok := cell(r, n)
		ratio := "–"
		if cok && nok && nv != 0 {
			ratio = fmt.Sprintf("%.2f", cv/nv)
		}
		label := ""
		if i == 0 {
			label = name
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", label, r.label, cs, ns, ratio)
	}
}

// writeExtraRows prints the rows of an attack or memory run (its name: the
// workload and the variant, e.g. h-valid).
func writeExtraRows(w io.Writer, wl string, c, n *summary) {
	ref := c
	if ref == nil {
		ref = n
	}
	var rows []row
	var name string
	num := func(label, format string, f func(*summary) float64) row {
		return row{label, func(s *summary) (float64, string, bool) { v := f(s); return v, fmt.Sprintf(format, v), true }}
	}
	text := func(label string, f func(*summary) string) row {
		return row{label, func(s *summary) (float64, string, bool) { return 0, f(s), false }}
	}
	mib := func(k int64) float64 { return float64(k) / 1024 }
	if a := ref.Attack; a != nil {
		switch a.Kind {
		case "reset":
			name = fmt.Sprintf("(%s) h2c rapid reset, %s tokens, %.0f s", wl, strings.SplitN(a.Token, ":", 2)[0], a.DurationSecs)
			rows = append(rows,
				num("streams reset", "%.0f", func(s *summary) float64 { return float64(s.Attack.Streams) }),
				text("attacker connections / GOAWAYs", func(s *summary) string {
					return fmt.Sprintf("%d / %d", s.Attack.Conns, sumCounts(s.Attack.GoAways))
				}))
		default:
			name = fmt.Sprintf("(%s) HTTP/1.1 flood of distinct tokens, %.0f s", wl, a.DurationSecs)
			rows = append(rows,
				num("requests sent", "%.0f", func(s *summary) float64 { return float64(s.Attack.Requests) }),
				text("answered / gave up", func(s *summary) string {
					return fmt.Sprintf("%d / %d", s.Attack.Answered, s.Attack.GaveUp)
				}))
		}
		rows = append(rows,
			num("auth API calls (attack + aftermath)", "%.0f", func(s *summary) float64 {
				return float64(s.Attack.AuthCalls + s.Attack.AuthCallsAfter)
			}),
			num("auth API calls after the attack", "%.0f", func(s *summary) float64 { return float64(s.Attack.AuthCallsAfter) }),
			num("auth API peak in flight", "%.0f", func(s *summary) float64 { return float64(s.Attack.AuthPeakInflight) }),
			num("auth API connections accepted", "%.0f", func(s *summary) float64 { return float64(s.Attack.AuthConns) }),
			num("auth API busy after the attack (s)", "%.1f", func(s *summary) float64 { return s.Attack.AftermathSecs }),
			text("legit time to stream p50 / max (ms), baseline", func(s *summary) string {
				return fmt.Sprintf("%.1f / %.1f", s.Attack.Baseline.P50ms, s.Attack.Baseline.Maxms)
			}),
			num("**legit time to stream p50 (ms), attack**", "%.1f", func(s *summary) float64 { return s.Attack.Probe.P50ms }),
			num("legit time to stream max (ms), attack", "%.1f", func(s *summary) float64 { return s.Attack.Probe.Maxms }),
			text("**legit failures / probes, attack**", func(s *summary) string {
				return fmt.Sprintf("%d / %d", s.Attack.Probe.Failed, s.Attack.Probe.Probes)
			}),
			text("legit p50 / max (ms), failures, aftermath", func(s *summary) string {
				p := s.Attack.Aftermath
				return fmt.Sprintf("%.1f / %.1f, %d / %d", p.P50ms, p.Maxms, p.Failed, p.Probes)
			}),
			num("server CPU s, attack", "%.2f", func(s *summary) float64 { return s.Attack.CPUAttackSecs }),
			num("server CPU s, aftermath", "%.2f", func(s *summary) float64 { return s.Attack.CPUAftermathSecs }),
			text("server RSS before / **peak** / after (MiB)", func(s *summary) string {
				return fmt.Sprintf("%.0f / %.0f / %.0f", mib(s.Attack.RSSBeforeKiB), mib(s.Attack.RSSPeakKiB), mib(s.Attack.RSSAfterKiB))
			}),
		)
	}
	if m := ref.Memory; m != nil {
		rssRow := text("server RSS before / **peak** / after (MiB)", func(s *summary) string {
			return fmt.Sprintf("%.1f / %.1f / %.1f", mib(s.Memory.RSSBeforeKiB), mib(s.Memory.RSSPeakKiB), mib(s.Memory.RSSAfterKiB))
		})
		growth := num("peak − before (MiB)", "%.1f", func(s *summary) float64 { return mib(s.Memory.RSSPeakKiB - s.Memory.RSSBeforeKiB) })
		switch m.Kind {
		case "slow":
			name = fmt.Sprintf("(%s) a stream that never reads, %d × %.0f MB at %.0f/s", wl, m.Messages, float64(m.MessageBytes)/1e6, m.Rate)
			rows = append(rows, rssRow, growth,
				text("closed (slow_client) after", func(s *summary) string {
					if s.Memory.ClosedAfterSec < 0 {
						return fmt.Sprintf("never seen (closed: %v)", s.Memory.Closed)
					}
					return fmt.Sprintf("%.1f s, %d messages", s.Memory.ClosedAfterSec, s.Memory.ClosedAfterMsg)
				}))
		case "big":
			name = fmt.Sprintf("(%s) one %.0f MB message", wl, float64(m.MessageBytes)/1e6)
			if m.ExpectDrop {
				name += ", over max_message_size"
			}
			rows = append(rows, rssRow, growth,
				num("peak − before / message size", "%.2f", func(s *summary) float64 {
					return float64(s.Memory.RSSPeakKiB-s.Memory.RSSBeforeKiB) * 1024 / float64(s.Memory.MessageBytes)
				}),
				text("delivered", func(s *summary) string {
					if s.Memory.Delivered {
						return fmt.Sprintf("yes, %.0f ms", s.Memory.DeliveryMs)
					}
					return "no"
				}))
		case "replay":
			name = fmt.Sprintf("(%s) stream mode, %d × %.0f MB entries, %d clients resume", wl, m.Messages, float64(m.MessageBytes)/1e6, m.Resumers)
			rows = append(rows,
				text("server RSS at start / peak at start (MiB)", func(s *summary) string {
					return fmt.Sprintf("%.1f / %.1f", mib(s.Memory.StartRSSKiB), mib(s.Memory.StartPeakKiB))
				}),
				rssRow, growth,
				text("resumers: statuses / resets", func(s *summary) string {
					return fmt.Sprintf("%s / %s", countsText(s.Memory.Statuses), countsText(s.Memory.ResetReasons))
				}),
				text("resumers complete / time (s)", func(s *summary) string {
					return fmt.Sprintf("%d / %.2f", s.Memory.Complete, s.Memory.CompleteSecs)
				}),
				text("live client: received / expected, latency max (ms)", func(s *summary) string {
					return fmt.Sprintf("%d / %d, %.1f", s.Memory.LiveReceived, s.Memory.LiveExpected, s.Memory.LiveMaxms)
				}))
		}
	}
	writeRows(w, name, rows, c, n)
	okRow := func(s *summary) string {
		if s == nil {
			return "–"
		}
		return map[bool]string{true: "OK", false: "PROBLEMS"}[s.OK]
	}
	fmt.Fprintf(w, "|  | result | %s | %s | – |\n", okRow(c), okRow(n))
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// countsText is "200 ×8" for {"200": 8}, in decreasing counts.
func countsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
