package main

import (
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestStatusFieldAndRSSPeak(t *testing.T) {
	st := []byte("Name:\tcaddy\nVmPeak:\t 1000 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
	if v, err := statusField(st, "VmRSS"); err != nil || v != 1024 {
		t.Errorf("VmRSS %d %v", v, err)
	}
	if v, err := statusField(st, "VmHWM"); err != nil || v != 2048 {
		t.Errorf("VmHWM %d %v", v, err)
	}
	if _, err := statusField(st, "VmSwap"); err == nil {
		t.Error("a missing field was found")
	}
	// This process: touching 64 MiB raises the peak by about that much.
	before, err := procRSS(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	p := startRSSPeak([]int{os.Getpid()}, 10*time.Millisecond)
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	time.Sleep(30 * time.Millisecond)
	peak := p.close()
	if peak < before+48<<10 {
		t.Errorf("peak %d KiB, want at least %d KiB + 48 MiB", peak, before)
	}
	_ = b[len(b)-1]
}

// TestSampleTree: a parent's sample counts its children, and the CPU of a
// child it waited for stays counted once the child is gone (an nginx
// master whose workers a reload replaced).
func TestSampleTree(t *testing.T) {
	me := os.Getpid()
	burn := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30")
	if err := burn.Start(); err != nil {
		t.Skip("no sh:", err)
	}
	defer func() { _ = burn.Process.Kill(); _ = burn.Wait() }()
	if !slices.Contains(procChildren(me), burn.Process.Pid) {
		t.Fatalf("children of %d: %v, want %d among them", me, procChildren(me), burn.Process.Pid)
	}
	var with procSample
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := procCPU(burn.Process.Pid); err == nil && c >= 0.05 {
			break
		}
	}
	with = sampleTree([]int{me})
	alone := sampleProcs([]int{me})
	child, _ := procCPU(burn.Process.Pid)
	if !with.OK || with.CPUSecs < alone.CPUSecs+child-0.02 || with.RSSKiB <= alone.RSSKiB {
		t.Errorf("tree %+v, process alone %+v, child cpu %.2f", with, alone, child)
	}
	_ = burn.Process.Kill()
	_ = burn.Wait()
	after := sampleTree([]int{me})
	if !after.OK || after.CPUSecs < with.CPUSecs-0.01 {
		t.Errorf("after the child was reaped: %+v, before %+v", after, with)
	}
	if s := sampleTree([]int{1 << 30}); s.OK {
		t.Error("a missing pid sampled OK")
	}
}
