package histogram

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Recorder counts durations in log-linear buckets of microseconds (8 per
// power of two: quantiles within 12.5%), with one atomic add per sample and
// no lock, so the hot path can afford it. It spans 0 to about 48 days. The
// zero Recorder is empty and ready.
type Recorder struct {
	buckets [histBuckets]atomic.Uint64
}

const histBuckets = 320

func histIndex(d time.Duration) int {
	v := uint64(max(d, 0) / time.Microsecond)
	if v < 8 {
		return int(v)
	}
	k := bits.Len64(v) // ≥ 4
	i := (k-3)*8 + int(v>>(k-4)) - 8
	return min(i, histBuckets-1)
}

// histLower is the smallest duration bucket i holds.
func histLower(i int) time.Duration {
	if i < 8 {
		return time.Duration(i) * time.Microsecond
	}
	k, m := i/8+3, uint64(i%8+8)
	return time.Duration(m<<(k-4)) * time.Microsecond
}

// Record counts one sample.
func (h *Recorder) Record(d time.Duration) { h.buckets[histIndex(d)].Add(1) }

// Reset empties h. Samples recorded meanwhile may or may not survive it.
func (h *Recorder) Reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
}

// Snapshot copies the counts.
func (h *Recorder) Snapshot() Histogram {
	var s Histogram
	for i := range h.buckets {
		if n := h.buckets[i].Load(); n > 0 {
			s = append(s, Bucket{Index: i, Count: n})
		}
	}
	return s
}

// Histogram is a snapshot of latency counts: the non-empty buckets, in
// order. Histograms from many nodes add up (Add), and the counts of a
// window are a later snapshot minus an earlier one (Sub).
type Histogram []Bucket

// Bucket is one bucket's count; Index places it (8 buckets per power of
// two of microseconds).
type Bucket struct {
	Index int    `json:"i"`
	Count uint64 `json:"n"`
}

// Count is the number of samples.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, b := range h {
		n += b.Count
	}
	return n
}

// Above counts the samples surely longer than d: those in buckets that
// start above it.
func (h Histogram) Above(d time.Duration) uint64 {
	var n uint64
	for _, b := range h {
		if b.Index >= 0 && b.Index < histBuckets && histLower(b.Index) > d {
			n += b.Count
		}
	}
	return n
}

// Add returns the sum of h and o.
func (h Histogram) Add(o Histogram) Histogram { return h.merge(o, 1) }

// Sub returns h minus an earlier snapshot of the same counters.
func (h Histogram) Sub(earlier Histogram) Histogram { return h.merge(earlier, -1) }

func (h Histogram) merge(o Histogram, sign int) Histogram {
	var dense [histBuckets]int64
	for _, b := range h {
		if b.Index >= 0 && b.Index < histBuckets {
			dense[b.Index] += int64(b.Count)
		}
	}
	for _, b := range o {
		if b.Index >= 0 && b.Index < histBuckets {
			dense[b.Index] += int64(sign) * int64(b.Count)
		}
	}
	var out Histogram
	for i, n := range dense {
		if n > 0 {
			out = append(out, Bucket{Index: i, Count: uint64(n)})
		}
	}
	return out
}

// Quantile is the q-quantile (0 < q ≤ 1), as the upper end of its bucket;
// 0 with no samples.
func (h Histogram) Quantile(q float64) time.Duration {
	total := h.Count()
	if total == 0 {
		return 0
	}
	rank := max(uint64(q*float64(total)+0.5), 1)
	var seen uint64
	for _, b := range h {
		if seen += b.Count; seen >= rank {
			return histLower(min(b.Index+1, histBuckets-1))
		}
	}
	return histLower(histBuckets - 1)
}

// Start is where the bucket holding d starts. Cumulative counts exactly at
// such a bound: every sample below it sits in a bucket wholly below it.
func Start(d time.Duration) time.Duration { return histLower(histIndex(d)) }

// Cumulative counts, for each of bounds (ascending), the samples in the
// buckets that end at or below it: the samples under it, exactly when the
// bound is a bucket's Start. It is what a Prometheus histogram's "le"
// buckets want.
func (h Histogram) Cumulative(bounds []time.Duration) []uint64 {
	out := make([]uint64, len(bounds))
	var seen uint64
	j := 0
	for _, b := range h {
		if b.Index < 0 || b.Index >= histBuckets {
			continue
		}
		end := histLower(min(b.Index+1, histBuckets-1))
		for j < len(bounds) && bounds[j] < end {
			out[j] = seen
			j++
		}
		seen += b.Count
	}
	for ; j < len(bounds); j++ {
		out[j] = seen
	}
	return out
}

// Sum estimates the samples' total from the middle of their buckets
// (within 6.25% of the truth, as each bucket is within 12.5% wide).
func (h Histogram) Sum() time.Duration {
	var sum time.Duration
	for _, b := range h {
		if b.Index < 0 || b.Index >= histBuckets {
			continue
		}
		lo, hi := histLower(b.Index), histLower(min(b.Index+1, histBuckets-1))
		sum += time.Duration(b.Count) * (lo + (hi-lo)/2)
	}
	return sum
}
