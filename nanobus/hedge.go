package nanobus

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/report"
	"github.com/terminator-gw/terminator/wire"
)

// Hedge declares that callers may send a second copy of a request to
// another instance when the first has not answered after a delay, and take
// whichever answer comes first; the other copy is cancelled. after is the
// delay; 0 means the route's 95th percentile as each caller measures it
// (no copy goes out until enough calls were measured). Only for idempotent
// routes: Handle refuses it on others. A token budget switches hedging
// (and retries) off while the service's instances fail, so that a sick
// fleet is not sent twice the work.
func Hedge(after time.Duration) RouteOption {
	return func(r *Route) { r.Hedge, r.HedgeAfter = true, after }
}

// Hedging bounds.
const (
	minHedgeDelay = time.Millisecond // below it, the copy would go out with nearly every call
	hedgeWindow   = 5 * time.Second  // the p95 is measured over windows this long
	hedgeSamples  = 20               // calls a window needs before its p95 is used
	hedgeShare    = 10               // at most one copy per hedgeShare calls of the route
)

// hedging is what a caller knows of one hedged route of one service: its
// latency, and how hedging went.
type hedging struct {
	window  [2]histogram.Recorder // the window measured now, and the last one, cleared before reuse
	cur     atomic.Int32
	rotated atomic.Int64 // when cur last changed, Unix nanoseconds
	p95     atomic.Int64 // of the last full window; 0 until one had enough calls

	calls, hedged, won, throttled atomic.Uint64
}

// record counts one call of the route that took d.
func (h *hedging) record(d time.Duration, now time.Time) {
	h.calls.Add(1)
	cur := h.cur.Load()
	h.window[cur].Record(d)
	last := h.rotated.Load()
	if now.UnixNano()-last < int64(hedgeWindow) || !h.rotated.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	full := h.window[cur].Snapshot()
	if full.Count() >= hedgeSamples {
		h.p95.Store(int64(full.Quantile(0.95)))
	}
	h.window[1-cur].Reset()
	h.cur.Store(1 - cur)
}

// delay is when a copy goes out, or 0 for not (yet).
func (h *hedging) delay(fixed time.Duration) time.Duration {
	if fixed > 0 {
		return fixed
	}
	if p := time.Duration(h.p95.Load()); p > 0 {
		return max(p, minHedgeDelay)
	}
	return 0
}

// share reports whether one more copy stays within hedgeShare.
func (h *hedging) share() bool { return h.hedged.Load()*hedgeShare <= h.calls.Load() }

// budget is a service's retry throttle, as gRPC's (proposal A6): failed
// calls take a token, good ones give a tenth of one back, and retries and
// hedged copies go out only while more than half the tokens are left.
type budget struct{ milli atomic.Int64 } // tokens, in thousandths

const (
	budgetMax   = 10_000 // ten tokens
	budgetRatio = 100    // a good call gives 0.1
)

func newBudget() *budget {
	b := new(budget)
	b.milli.Store(budgetMax)
	return b
}

func (b *budget) allow() bool { return b.milli.Load() > budgetMax/2 }

// outcome counts a call's result.
func (b *budget) outcome(failed bool) {
	delta := int64(budgetRatio)
	if failed {
		delta = -1000
	}
	for {
		v := b.milli.Load()
		next := min(max(v+delta, 0), budgetMax)
		if next == v || b.milli.CompareAndSwap(v, next) {
			return
		}
	}
}

// hedgingFor returns the counters of service's hedged route, made on first
// use. Called with n.mu held.
func (n *Node) hedgingFor(service, route string) *hedging {
	k := [2]string{service, route}
	h := n.hedging[k]
	if h == nil {
		h = new(hedging)
		h.rotated.Store(time.Now().UnixNano())
		n.hedging[k] = h
	}
	return h
}

// budgetFor returns service's retry budget. Called with n.mu held.
func (n *Node) budgetFor(service string) *budget {
	b := n.budgets[service]
	if b == nil {
		b = newBudget()
		n.budgets[service] = b
	}
	return b
}

// HedgeStats returns the node's hedged routes, sorted by service and route.
func (n *Node) HedgeStats() []report.HedgeStats {
	n.mu.RLock()
	out := make([]report.HedgeStats, 0, len(n.hedging))
	for k, h := range n.hedging {
		out = append(out, report.HedgeStats{Service: k[0], Route: k[1], Calls: h.calls.Load(), Hedged: h.hedged.Load(),
			Won: h.won.Load(), Throttled: h.throttled.Load(), P95: time.Duration(h.p95.Load())})
	}
	n.mu.RUnlock()
	slices.SortFunc(out, func(a, b report.HedgeStats) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.Route, b.Route))
	})
	return out
}

// hedge waits for the answer to p's call and, if none came after the
// route's hedge delay, sends a copy to another instance and takes the
// first answer; the other copy is cancelled. It returns the instance that
// answered. The copy's in-flight slot is its own: p's stays with p.
func (p *Pending) hedge(h *hedging, delay time.Duration, req *wire.Request) (*Response, error, *instance) {
	n, in := p.node, p.in
	resp, err, _ := n.wait(p.ctx, p.cl, nil, p.deadline, time.Now().Add(delay))
	if err != errPatience {
		return resp, err, in
	}
	alone := func() (*Response, error, *instance) {
		resp, err := n.await(p.ctx, p.cl, p.deadline)
		return resp, err, in
	}
	if !in.budget.allow() || !h.share() {
		h.throttled.Add(1)
		return alone()
	}
	in2, _, perr := n.pick(p.service, in.conn, req.Labels)
	if perr != nil {
		return alone() // no other instance free: the first copy is all there is
	}
	defer in2.conn.inflight.Add(-1)
	second, derr := n.dispatch(in2.conn, req)
	if derr != nil {
		return alone()
	}
	h.hedged.Add(1)
	resp, err, won := n.wait(p.ctx, p.cl, second, p.deadline, time.Time{})
	if won == 1 {
		h.won.Add(1)
		return resp, err, in2
	}
	return resp, err, in
}
