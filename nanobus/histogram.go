package nanobus

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets of microseconds (8 per
// power of two: quantiles within 12.5%), with one atomic add per sample and
// no lock, so the hot path can afford it. It spans 0 to about 12 days.
type histogram struct {
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

func (h *histogram) record(d time.Duration) { h.buckets[histIndex(d)].Add(1) }

// snapshot copies the counts.
func (h *histogram) snapshot() (s histSnapshot) {
	for i := range h.buckets {
		s[i] = h.buckets[i].Load()
	}
	return s
}

type histSnapshot [histBuckets]uint64

// sub is the counts added since an earlier snapshot.
func (s histSnapshot) sub(earlier histSnapshot) (d histSnapshot) {
	for i := range s {
		d[i] = s[i] - earlier[i]
	}
	return d
}

// quantile is the q-quantile (0 < q ≤ 1), as the upper end of its bucket;
// 0 with no samples.
func (s histSnapshot) quantile(q float64) time.Duration {
	var total uint64
	for _, n := range s {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i, n := range s {
		if seen += n; seen >= rank {
			if i+1 < histBuckets {
				return histLower(i + 1)
			}
			return histLower(i)
		}
	}
	return histLower(histBuckets - 1)
}
