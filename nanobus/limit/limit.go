package limit

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter is an adaptive concurrency limit driven by measured latency, a
// gradient limit in the manner of Netflix's concurrency-limits: work is
// admitted while fewer than Limit pieces are in progress, and every window
// (100 ms) the limit moves toward the concurrency at which latency starts
// to grow. Its reference is the lowest window latency of the last minute
// (the latency without a queue); while a window's latency stays within 1.5
// times it, the limit grows by about its square root, and beyond, it
// shrinks in proportion (by half at most). A service whose latency grows
// with a queue past some concurrency settles a little above that knee.
// Refusing the excess at once keeps the latency of what is admitted near
// the unloaded one, where a fixed bound lets a queue build up to it. Nodes
// limit the handlers they run with one; the terminator limits the requests
// it waits on with another.
//
// Acquire and Release cost a few atomic operations; the limit itself is
// recomputed by one of the callers, once per window.
type Limiter struct {
	min, max int64
	window   time.Duration

	limit    atomic.Int64
	inflight atomic.Int64
	peak     atomic.Int64 // most in flight during the window
	sumNanos atomic.Int64 // latencies of the window's samples
	samples  atomic.Int64
	due      atomic.Int64 // unix nanos: the window's end

	q queue // work over the limit waiting for a turn (Admit)

	mu       sync.Mutex          // one recomputation at a time
	minRTT   [refSeconds]float64 // each second's lowest window latency (ns), a ring
	second   int64               // unix second of minRTT's newest entry
	estimate float64             // the limit before rounding
	history  []Point
}

// Point is the limit at one moment, for showing it over time.
type Point struct {
	At       time.Time     `json:"at"`
	Limit    int           `json:"limit"`
	InFlight int           `json:"in_flight"` // the most in flight in the window before
	RTT      time.Duration `json:"rtt"`       // the window's mean latency
}

// Tuning of the gradient algorithm (its published defaults).
const (
	limitWindow    = 100 * time.Millisecond
	limitSmoothing = 0.2 // share of a window's new limit taken at once
	rttTolerance   = 1.5 // how far latency may rise over the reference before the limit shrinks
	refSeconds     = 60  // the reference is the lowest latency of this many seconds
	minSamples     = 10  // a window with fewer says nothing
	historyLen     = 120 // points kept: 2 minutes of 1 s points
)

// New returns a limiter starting at initial, kept within [lo, hi];
// with lo == hi it is a fixed bound.
func New(initial, lo, hi int) *Limiter {
	hi = max(hi, 1)
	lo = min(max(lo, 1), hi)
	initial = min(max(initial, lo), hi)
	l := &Limiter{min: int64(lo), max: int64(hi), window: limitWindow, estimate: float64(initial)}
	l.limit.Store(int64(initial))
	l.due.Store(time.Now().Add(limitWindow).UnixNano())
	return l
}

// Acquire admits one piece of work if fewer than the limit are in progress;
// call Release when it is done. Refused, it returns false and the caller
// answers "busy" at once.
func (l *Limiter) Acquire() bool { return l.acquire(l.limit.Load()) }

// AcquireNested is Acquire for work done on behalf of work already
// admitted upstream (a call a handler makes for the request it serves): it
// may use up to twice the limit, so that under load new work is refused
// before work whose first steps were already paid for.
func (l *Limiter) AcquireNested() bool { return l.acquire(2 * l.limit.Load()) }

func (l *Limiter) acquire(bound int64) bool {
	n := l.inflight.Add(1)
	if n > bound {
		l.inflight.Add(-1)
		return false
	}
	for {
		p := l.peak.Load()
		if n <= p || l.peak.CompareAndSwap(p, n) {
			return true
		}
	}
}

// Release ends one admitted piece of work that took rtt, and gives its
// slot to the first waiter, if any. Work that failed for reasons of its
// own (not load) is best released with its latency all the same: what
// counts is how long admitted work takes.
func (l *Limiter) Release(rtt time.Duration) {
	if l.q.waiting.Load() == 0 || !l.handOver() {
		l.inflight.Add(-1)
	}
	l.sumNanos.Add(int64(rtt))
	l.samples.Add(1)
	if now := time.Now().UnixNano(); now >= l.due.Load() {
		l.update(now)
	}
}

// Forget gives back a slot like Release, without a sample: for work whose
// time says nothing of the load (a request its client gave up on, and
// cancelled).
func (l *Limiter) Forget() {
	if l.q.waiting.Load() == 0 || !l.handOver() {
		l.inflight.Add(-1)
	}
}

// Limit is the current limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// InFlight is the work in progress now.
func (l *Limiter) InFlight() int { return int(l.inflight.Load()) }

// History is the limit over the last two minutes, a point a second.
func (l *Limiter) History() []Point {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Point(nil), l.history...)
}

// reference records a window's latency and returns the lowest of the last
// refSeconds seconds. Called with mu held.
func (l *Limiter) reference(second int64, rtt float64) float64 {
	if second != l.second {
		// Seconds that passed without a window record nothing.
		for s := max(l.second+1, second-refSeconds+1); s <= second; s++ {
			l.minRTT[s%refSeconds] = 0
		}
		l.second = second
	}
	i := second % refSeconds
	if l.minRTT[i] == 0 || rtt < l.minRTT[i] {
		l.minRTT[i] = rtt
	}
	ref := rtt
	for _, v := range l.minRTT {
		if v > 0 && v < ref {
			ref = v
		}
	}
	return ref
}

// update closes the window that ended and computes the next limit.
func (l *Limiter) update(now int64) {
	if !l.mu.TryLock() {
		return // another caller is at it
	}
	defer l.mu.Unlock()
	due := l.due.Load()
	if now < due {
		return
	}
	l.due.Store(now + int64(l.window))
	n, sum, peak := l.samples.Swap(0), l.sumNanos.Swap(0), l.peak.Swap(l.inflight.Load())
	if n < minSamples {
		return
	}
	short := float64(sum) / float64(n)
	ref := l.reference(now/int64(time.Second), short)
	limit := l.estimate
	// Grow only when the limit was what held work back; a limit the load
	// never reached says nothing about a larger one.
	if float64(peak) >= limit/2 {
		gradient := math.Max(0.5, math.Min(1, rttTolerance*ref/short))
		next := limit*gradient + math.Sqrt(limit)
		limit = limit*(1-limitSmoothing) + next*limitSmoothing
	}
	limit = math.Max(float64(l.min), math.Min(float64(l.max), limit))
	l.estimate = limit
	l.limit.Store(int64(limit))
	at := time.Unix(0, now)
	if len(l.history) == 0 || at.Sub(l.history[len(l.history)-1].At) >= time.Second {
		l.history = append(l.history, Point{At: at.UTC(), Limit: int(limit), InFlight: int(peak), RTT: time.Duration(short)})
		if len(l.history) > historyLen {
			l.history = l.history[len(l.history)-historyLen:]
		}
	}
}
