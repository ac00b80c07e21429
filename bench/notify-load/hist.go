package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency histogram: log-linear buckets over microseconds, exact below 64 µs
// and within 1/32 (about 3 %) above, so it costs a fixed few KiB whatever the
// number of samples and merges across processes by adding counts.
const (
	histSub     = 32 // sub-buckets per power of two above histLinear
	histLinear  = 64 // values below this many µs get a bucket each
	histBuckets = histLinear + 58*histSub
)

// hist is safe for concurrent use: record uses atomic adds only.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64 // nanoseconds
}

// bucketOf returns the bucket of a value in microseconds.
func bucketOf(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 6 // ≥ 1; us>>shift is in [32, 63]
	i := histLinear + (shift-1)*histSub + int(us>>shift) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// bucketRange returns the smallest and largest µs value of bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < histLinear {
		return uint64(i), uint64(i)
	}
	shift := (i-histLinear)/histSub + 1
	m := uint64((i-histLinear)%histSub + histSub)
	return m << shift, (m+1)<<shift - 1
}

// record adds one latency; negative values (clock steps) count as 0.
func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// sparse returns the non-empty buckets as [bucket, count] pairs, for sending
// a histogram to the parent process.
func (h *hist) sparse() [][2]uint64 {
	var out [][2]uint64
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			out = append(out, [2]uint64{uint64(i), c})
		}
	}
	return out
}

// merge adds a sparse histogram and its maximum to h.
func (h *hist) merge(sp [][2]uint64, maxNs int64) {
	for _, bc := range sp {
		if bc[0] < histBuckets {
			h.counts[bc[0]].Add(bc[1])
			h.n.Add(bc[1])
		}
	}
	for {
		m := h.max.Load()
		if maxNs <= m || h.max.CompareAndSwap(m, maxNs) {
			return
		}
	}
}

// quantile returns the latency below which a fraction q of the samples
// fall: the upper bound of the bucket holding the sample of rank ceil(q·n),
// capped by the exact maximum. It returns 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank > n {
		rank = n
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			_, hi := bucketRange(i)
			d := time.Duration(hi)*time.Microsecond + time.Microsecond - 1
			if m := time.Duration(h.max.Load()); d > m {
				d = m
			}
			return d
		}
	}
	return time.Duration(h.max.Load())
}
