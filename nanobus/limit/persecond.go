package limit

import (
	"sync/atomic"
	"time"
)

// PerSecond lets at most Max events a second through and counts the ones
// it refuses: whether a log line is written, decided on a hot path before
// anything is formatted. Lock-free and allocation-free; a window per
// second, approximate at its edge (two goroutines may both open it).
type PerSecond struct {
	Max     int64
	second  atomic.Int64 // unix second of the window
	n       atomic.Int64 // events let through in it
	refused atomic.Uint64
}

// Allow reports whether one more event may happen at now; if not, it is
// counted as refused.
func (p *PerSecond) Allow(now time.Time) bool {
	sec := now.Unix()
	if old := p.second.Load(); old != sec && p.second.CompareAndSwap(old, sec) {
		p.n.Store(0)
	}
	if p.n.Add(1) > p.Max {
		p.refused.Add(1)
		return false
	}
	return true
}

// Refused is how many events Allow refused.
func (p *PerSecond) Refused() uint64 { return p.refused.Load() }
