package histogram

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// Buckets tile the durations: each starts where the one before ends, and
// is at most 1/8 of its start wide (quantiles within 12.5%).
func TestHistogramBuckets(t *testing.T) {
	for i := 0; i < histBuckets; i++ {
		lo := histLower(i)
		if got := histIndex(lo); got != i {
			t.Fatalf("bucket %d starts at %v, which indexes to %d", i, lo, got)
		}
		if i == 0 {
			continue
		}
		prev := histLower(i - 1)
		if lo <= prev {
			t.Fatalf("bucket %d starts at %v, not after bucket %d (%v)", i, lo, i-1, prev)
		}
		// The last microsecond before a bucket belongs to the one before.
		if got := histIndex(lo - time.Microsecond); got != i-1 {
			t.Fatalf("%v indexes to %d, want %d", lo-time.Microsecond, got, i-1)
		}
		if i > 8 && (lo-prev)*8 > prev {
			t.Fatalf("bucket %d is %v wide from %v: over 1/8", i-1, lo-prev, prev)
		}
	}
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 0},
		{0, 0},
		{999 * time.Nanosecond, 0},
		{time.Microsecond, 1},
		{7*time.Microsecond + 999, 7},
		{8 * time.Microsecond, 8},
		{9 * time.Microsecond, 9},
		{16 * time.Microsecond, 16},
		{18 * time.Microsecond, 17},
		{math.MaxInt64, histBuckets - 1},
	} {
		if got := histIndex(tt.d); got != tt.want {
			t.Errorf("histIndex(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	t.Logf("the last bucket starts at %v", histLower(histBuckets-1))
}

// Quantiles against a sorted-slice reference: the q-quantile is the
// nearest-rank sample's bucket, reported as the bucket's upper end.
func TestHistogramQuantiles(t *testing.T) {
	var h Recorder
	if q := h.Snapshot().Quantile(0.5); q != 0 {
		t.Errorf("quantile with no samples %v, want 0", q)
	}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	samples := make([]time.Duration, n)
	for i := range samples {
		// Log-uniform from 1ns to 10s, with some exact zeros.
		d := time.Duration(math.Pow(10, r.Float64()*10))
		if i%50 == 0 {
			d = 0
		}
		samples[i] = d
		h.Record(d)
	}
	slices.Sort(samples)
	s := h.Snapshot()
	for _, q := range []float64{0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1} {
		rank := max(int(math.Ceil(q*n-1e-9)), 1)
		ref := samples[rank-1]
		got := s.Quantile(q)
		if want := histLower(histIndex(ref) + 1); got != want {
			t.Errorf("q%v: %v, want %v (the end of the bucket of the reference %v)", q, got, want, ref)
		}
		// Which is above the reference and within 12.5% (or 1µs) of it.
		if got <= ref || got-ref > max(ref/8, time.Microsecond) {
			t.Errorf("q%v: %v, reference %v: not within 12.5%% above", q, got, ref)
		}
	}

	// sub leaves what was recorded since.
	var h2 Recorder
	h2.Record(time.Millisecond)
	before := h2.Snapshot()
	for range 99 {
		h2.Record(5 * time.Second)
	}
	d := h2.Snapshot().Sub(before)
	if q := d.Quantile(0.01); q < 5*time.Second {
		t.Errorf("since the snapshot, q0.01 is %v: the earlier sample is still counted", q)
	}
}

// Concurrent records all count (and the race detector sees no race).
func TestHistogramConcurrent(t *testing.T) {
	var h Recorder
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, c := range h.Snapshot() {
		total += c.Count
	}
	if total != 8000 {
		t.Fatalf("%d samples counted, want 8000", total)
	}
}

// Cumulative counts exactly under bounds that are bucket starts, and Sum
// stays within 6.25% of the true total.
func TestHistogramCumulative(t *testing.T) {
	var r Recorder
	samples := []time.Duration{50 * time.Microsecond, 900 * time.Microsecond, 3 * time.Millisecond,
		3 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second}
	var total time.Duration
	for _, d := range samples {
		r.Record(d)
		total += d
	}
	h := r.Snapshot()
	bounds := []time.Duration{Start(10 * time.Microsecond), Start(time.Millisecond), Start(5 * time.Millisecond),
		Start(50 * time.Millisecond), Start(time.Second), Start(10 * time.Second)}
	for i, tt := range []struct {
		bound time.Duration
		want  uint64
	}{
		{bounds[0], 0}, {bounds[1], 2}, {bounds[2], 4}, {bounds[3], 5}, {bounds[4], 5}, {bounds[5], 6},
	} {
		if got := h.Cumulative(bounds)[i]; got != tt.want {
			t.Errorf("samples under %v: %d, want %d", tt.bound, got, tt.want)
		}
	}
	if got := Histogram(nil).Cumulative(bounds); slices.Max(got) != 0 {
		t.Errorf("empty histogram: %v", got)
	}
	if sum := h.Sum(); math.Abs(float64(sum-total)) > 0.0625*float64(total) {
		t.Errorf("sum %v, true total %v: over 6.25%% off", sum, total)
	}
}
