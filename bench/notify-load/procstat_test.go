package main

import (
	"os"
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
