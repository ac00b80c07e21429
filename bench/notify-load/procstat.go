package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procSample is the CPU time and resident memory of a set of processes.
type procSample struct {
	CPUSecs float64 `json:"cpu_secs"`
	RSSKiB  int64   `json:"rss_kib"`
	PSSKiB  int64   `json:"pss_kib"` // proportional set size: shared pages split between the processes
	OK      bool    `json:"ok"`
}

// sampleProcs sums utime+stime and VmRSS over pids. OK is false when any
// pid could not be read (it exited, or no pid was given).
func sampleProcs(pids []int) procSample {
	s := procSample{OK: len(pids) > 0}
	for _, pid := range pids {
		cpu, err := procCPU(pid)
		if err != nil {
			s.OK = false
			continue
		}
		rss, err := procRSS(pid)
		if err != nil {
			s.OK = false
			continue
		}
		s.CPUSecs += cpu
		s.RSSKiB += rss
		if pss, err := procPSS(pid); err == nil {
			s.PSSKiB += pss
		}
	}
	return s
}

// sampleTree is sampleProcs of pids and their children (one level, as an
// nginx master's workers), the CPU of the children each pid has reaped
// included (cutime+cstime): the workers a reload replaced are counted.
func sampleTree(pids []int) procSample {
	s := procSample{OK: len(pids) > 0}
	for _, pid := range pids {
		kids := procChildren(pid)
		p := sampleProcs(append([]int{pid}, kids...))
		reaped, err := procChildCPU(pid)
		if !p.OK && len(kids) > 0 { // a child exited between the two reads: once more
			kids = procChildren(pid)
			p = sampleProcs(append([]int{pid}, kids...))
			reaped, err = procChildCPU(pid)
		}
		if !p.OK || err != nil {
			s.OK = false
			continue
		}
		s.CPUSecs += p.CPUSecs + reaped
		s.RSSKiB += p.RSSKiB
		s.PSSKiB += p.PSSKiB
	}
	return s
}

// procChildren lists the children of pid (/proc/<pid>/task/*/children).
func procChildren(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var kids []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// procCPU returns utime+stime of pid in seconds.
func procCPU(pid int) (float64, error) {
	f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	return statSecs(pid, f[11], f[12])
}

// procChildCPU returns cutime+cstime of pid in seconds: the CPU of the
// children it waited for.
func procChildCPU(pid int) (float64, error) {
	f, err := procStatFields(pid)
	if err != nil {
		return 0, err
	}
	return statSecs(pid, f[13], f[14])
}

// statSecs adds two clock-tick fields of /proc/<pid>/stat in seconds.
func statSecs(pid int, a, b string) (float64, error) {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad time fields", pid)
	}
	return float64(x+y) / clockTicks, nil
}

// procStatFields returns the fields of /proc/<pid>/stat from field 3
// (state) on.
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// The command name (field 2) may hold spaces: fields are counted
	// after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime and cstime are fields
	// 14 to 17.
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return f, nil
}

// procRSS returns VmRSS of pid in KiB.
func procRSS(pid int) (int64, error) { return procStatusKiB(pid, "VmRSS") }

// procPSS returns the Pss of pid in KiB, from /proc/<pid>/smaps_rollup.
func procPSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Pss", pid)
}

// parsePids parses a comma-separated list of process ids.
func parsePids(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("bad pid %q", f)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit and returns it.
func raiseNofile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// procStatusKiB returns a "<field>: <n> kB" line of /proc/<pid>/status
// (VmRSS, VmHWM) in KiB.
func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return statusField(b, field)
}

// statusField reads "<field>: <n> kB" from the text of /proc/<pid>/status.
func statusField(b []byte, field string) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("status: no %s", field)
}

// resetHWM restarts the kernel's peak-RSS record of pid (VmHWM) from its
// current RSS (writing 5 to /proc/<pid>/clear_refs, Linux ≥ 4.0; the
// process must be ours).
func resetHWM(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// rssPeak follows the resident memory of a set of processes: it samples
// their summed VmRSS at an interval and keeps the highest sum; for a single
// process it also reads the kernel's own peak (VmHWM, restarted by start),
// which catches a peak shorter than the interval.
type rssPeak struct {
	pids   []int
	hwm    bool // VmHWM was reset at start: it is the peak since then
	mu     sync.Mutex
	maxKiB int64
	maxAt  time.Time
	start  time.Time
	stop   context.CancelFunc
	done   chan struct{}
}

// startRSSPeak starts sampling pids every interval until stopped.
func startRSSPeak(pids []int, interval time.Duration) *rssPeak {
	ctx, cancel := context.WithCancel(context.Background())
	p := &rssPeak{pids: pids, stop: cancel, done: make(chan struct{}), start: time.Now()}
	p.hwm = len(pids) == 1 && resetHWM(pids[0]) == nil
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			p.sample()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *rssPeak) sample() {
	var sum int64
	for _, pid := range p.pids {
		v, err := procStatusKiB(pid, "VmRSS")
		if err != nil {
			return
		}
		sum += v
	}
	p.mu.Lock()
	if sum > p.maxKiB {
		p.maxKiB, p.maxAt = sum, time.Now()
	}
	p.mu.Unlock()
}

// peak returns the highest RSS seen so far in KiB, and how long after the
// start it was sampled (zero when it comes from VmHWM only).
func (p *rssPeak) peak() (int64, time.Duration) {
	p.sample()
	p.mu.Lock()
	kib, at := p.maxKiB, time.Duration(0)
	if !p.maxAt.IsZero() {
		at = p.maxAt.Sub(p.start)
	}
	p.mu.Unlock()
	if p.hwm {
		if h, err := procStatusKiB(p.pids[0], "VmHWM"); err == nil && h > kib {
			kib, at = h, 0
		}
	}
	return kib, at
}

// close stops the sampling and returns the peak.
func (p *rssPeak) close() int64 {
	p.stop()
	<-p.done
	kib, _ := p.peak()
	return kib
}
