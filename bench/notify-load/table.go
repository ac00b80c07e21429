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
	wls := fs.String("workloads", "a b c d e f g", "workloads, in order")
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
		proto := ref.Proto
		if strings.HasPrefix(ref.URL, "https:") {
			proto += " TLS"
		}
		name := fmt.Sprintf("(%s) %d %s streams / %d users", wl, ref.StreamsRequested, proto, ref.Users)
		if ref.Rate > 0 {
			name += fmt.Sprintf(" / %.0f ev/s", ref.Rate)
		} else {
			name += " / connect only"
		}
		type metric struct {
			label string
			get   func(*summary) (float64, string, bool)
		}
		num := func(f func(*summary) float64, format string) func(*summary) (float64, string, bool) {
			return func(s *summary) (float64, string, bool) { v := f(s); return v, fmt.Sprintf(format, v), true }
		}
		publishing := ref.Rate > 0
		metrics := []metric{
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
				metric{"deliveries received / expected", func(s *summary) (float64, string, bool) {
					return float64(s.Received), fmt.Sprintf("%d / %d", s.Received, s.Expected), true
				}},
				metric{"CPU s per 1,000 deliveries", num(func(s *summary) float64 { return s.CPUPer1000Deliv }, "%.4f")},
				metric{"latency p50 (ms)", num(func(s *summary) float64 { return s.P50ms }, "%.2f")},
				metric{"latency p99 (ms)", num(func(s *summary) float64 { return s.P99ms }, "%.2f")},
				metric{"lost / dup / misrouted / out-of-order", func(s *summary) (float64, string, bool) {
					return 0, fmt.Sprintf("%d / %d / %d / %d", s.Lost, s.Duplicated, s.Misrouted, s.OutOfOrder), false
				}},
				metric{"deliveries/s", num(func(s *summary) float64 { return s.DeliveriesPerSec }, "%.0f")},
				metric{"Redis CPU s while publishing", num(func(s *summary) float64 { return s.RedisCPUSecs }, "%.2f")},
				metric{"publishing nginx CPU s (nchan only)", num(func(s *summary) float64 { return s.AuxCPUSecs }, "%.2f")},
			)
		}
		if ref.ReconnectAtSecs > 0 {
			metrics = append(metrics,
				metric{"reconnects done / failed", func(s *summary) (float64, string, bool) {
					return float64(s.Reconnects), fmt.Sprintf("%d / %d", s.Reconnects, s.ReconnectsFailed), true
				}},
				metric{"reconnects/s (first close → last re-established)", num(func(s *summary) float64 { return s.ReconnectsPerSec }, "%.0f")},
				metric{"reset events", num(func(s *summary) float64 { return float64(s.Resets) }, "%.0f")},
			)
		}
		metrics = append(metrics,
			metric{"server RSS connected (MiB)", num(func(s *summary) float64 { return float64(s.Server[1].RSSKiB) / 1024 }, "%.1f")},
			metric{"load tool CPU s (whole run)", num(func(s *summary) float64 { return s.ToolCPUSecs }, "%.2f")})
		for i, m := range metrics {
			cell := func(s *summary) (float64, string, bool) {
				if s == nil {
					return 0, "–", false
				}
				return m.get(s)
			}
			cv, cs, cok := cell(c)
			nv, ns, nok := cell(n)
			ratio := "–"
			if cok && nok && nv != 0 {
				ratio = fmt.Sprintf("%.2f", cv/nv)
			}
			label := ""
			if i == 0 {
				label = name
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", label, m.label, cs, ns, ratio)
		}
	}
}
