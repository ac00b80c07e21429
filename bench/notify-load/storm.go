package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuTrace samples the summed CPU time of some processes at a fixed
// interval, so that the CPU spent between two instants known only later
// (the reconnect storm's first close and last re-established stream) can be
// read off it.
type cpuTrace struct {
	mu      sync.Mutex
	samples []cpuSample
}

type cpuSample struct {
	ns  int64
	cpu float64
}

// run samples pids every interval until ctx is done.
func (t *cpuTrace) run(ctx context.Context, pids []int, interval time.Duration) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		s := sampleCPU(pids)
		if s >= 0 {
			t.mu.Lock()
			t.samples = append(t.samples, cpuSample{time.Now().UnixNano(), s})
			t.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// sampleCPU sums utime+stime of pids; -1 when one cannot be read.
func sampleCPU(pids []int) float64 {
	var sum float64
	for _, p := range pids {
		c, err := procCPU(p)
		if err != nil {
			return -1
		}
		sum += c
	}
	return sum
}

// at interpolates the CPU time at ns; ok is false outside the samples.
func (t *cpuTrace) at(ns int64) (float64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.samples
	i := sort.Search(len(s), func(i int) bool { return s[i].ns >= ns })
	switch {
	case i == len(s):
		return 0, false
	case s[i].ns == ns:
		return s[i].cpu, true
	case i == 0:
		return 0, false
	}
	a, b := s[i-1], s[i]
	return a.cpu + (b.cpu-a.cpu)*float64(ns-a.ns)/float64(b.ns-a.ns), true
}

// between is the CPU time spent from ns0 to ns1.
func (t *cpuTrace) between(ns0, ns1 int64) (float64, bool) {
	c0, ok0 := t.at(ns0)
	c1, ok1 := t.at(ns1)
	return c1 - c0, ok0 && ok1
}

// promCounters reads the caddy_notify_* series of a Prometheus text
// exposition: "name{labels}" → value. Histogram series are left out.
func promCounters(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "caddy_notify_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		key, val := line[:i], line[i+1:]
		name, _, _ := strings.Cut(key, "{")
		if strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		out[key] = v
	}
	return out, sc.Err()
}

// fetchMetrics GETs a Prometheus endpoint and returns its caddy_notify_* series.
func fetchMetrics(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	return promCounters(resp.Body)
}

// metricDeltas is after − before for every counter (name ending in _total)
// of after that moved.
func metricDeltas(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		name, _, _ := strings.Cut(k, "{")
		if !strings.HasSuffix(name, "_total") {
			continue
		}
		if x := v - before[k]; x != 0 {
			d[k] = x
		}
	}
	return d
}
