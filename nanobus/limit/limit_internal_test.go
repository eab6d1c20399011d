package limit

import (
	"testing"
	"time"
)

// drive drives one window of the limiter by hand: peak pieces of work at
// once, n samples of latency rtt; then the window closes.
func (l *Limiter) drive(t *testing.T, now *time.Time, n, peak int, rtt time.Duration) {
	t.Helper()
	for i := 0; i < peak; i++ {
		if !l.Acquire() {
			t.Fatalf("refused %d in flight under a limit of %d", i, l.Limit())
		}
	}
	for i := 0; i < max(n, peak); i++ {
		if i >= peak {
			l.Acquire()
		}
		l.inflight.Add(-1)
		if i < n {
			l.sumNanos.Add(int64(rtt))
			l.samples.Add(1)
		}
	}
	*now = now.Add(l.window)
	l.update(now.UnixNano())
}

// A service whose latency is flat up to a capacity of 50 in flight and
// grows in proportion beyond (a queue): after a quiet start (where the
// latency without a queue is learned), load beyond the limit brings the
// limit near the capacity, where latency starts to grow, whatever it
// started at.
func TestLimiterFindsTheKnee(t *testing.T) {
	const capacity = 50
	rtt := func(inFlight int) time.Duration {
		return time.Millisecond * time.Duration(max(inFlight, capacity)) / capacity
	}
	for _, start := range []int{16, 100, 1000} {
		now := time.Now()
		l := New(start, 10, 2000)
		l.due.Store(now.UnixNano())
		for range 20 { // 2 s of light use
			l.drive(t, &now, 100, 5, rtt(5))
		}
		for range 300 { // 30 s of windows, fully used (more clients than the limit)
			l.drive(t, &now, 200, l.Limit(), rtt(l.Limit()))
		}
		if got := l.Limit(); got < capacity/2 || got > 3*capacity {
			t.Errorf("from %d: limit %d, want near the knee at %d", start, got, capacity)
		}
	}
}

func TestLimiterHoldsWhenIdle(t *testing.T) {
	now := time.Now()
	l := New(100, 10, 1000)
	l.due.Store(now.UnixNano())
	// Flat latency at full use: the limit grows.
	for range 30 {
		l.drive(t, &now, 200, l.Limit(), time.Millisecond)
	}
	grown := l.Limit()
	if grown <= 100 {
		t.Fatalf("limit %d after flat latency at full use, want above 100", grown)
	}
	// Little use, even slow: nothing learned, the limit stays.
	for range 10 {
		l.drive(t, &now, 200, 1, time.Second)
	}
	// Too few samples: the window says nothing.
	l.drive(t, &now, minSamples-1, l.Limit(), time.Second)
	if got := l.Limit(); got != grown {
		t.Fatalf("limit moved from %d to %d while barely used", grown, got)
	}
	if len(l.History()) == 0 {
		t.Fatal("no history kept")
	}
}

func TestLimiterBounds(t *testing.T) {
	for _, tt := range []struct{ initial, lo, hi, want int }{
		{100, 10, 1000, 100},
		{5000, 10, 1000, 1000},
		{1, 10, 1000, 10},
		{512, 16, 2, 2}, // a ceiling under the floor wins: a fixed bound
		{0, 0, 0, 1},
	} {
		if got := New(tt.initial, tt.lo, tt.hi).Limit(); got != tt.want {
			t.Errorf("New(%d, %d, %d).Limit() = %d, want %d", tt.initial, tt.lo, tt.hi, got, tt.want)
		}
	}
	l := New(2, 2, 2)
	if !l.Acquire() || !l.Acquire() || l.Acquire() {
		t.Fatal("a fixed bound of 2 admitted other than 2")
	}
	l.Release(time.Millisecond)
	if !l.Acquire() {
		t.Fatal("no room after a release")
	}
}
