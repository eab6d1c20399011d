package terminator

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/DataDog/datadog-go/v5/statsd"

	"github.com/terminator-gw/terminator/nanobus/histogram"
)

// routeStats counts one route's responses by status class. Counting is an
// atomic add; the statsd client sees the totals once per flush, so the hot
// path builds no metric names or tags at all.
type routeStats struct {
	key     string
	classes [6]atomic.Uint64 // index status/100: 1xx..5xx
	sent    [6]uint64        // what the last flush reported (flush goroutine only)
	// cancelled counts calls cancelled because the client went away
	// (nginx's 499): no response was sent, so no class counts them.
	cancelled     atomic.Uint64
	sentCancelled uint64
	// latency is the time from admission to the response, of every
	// request that got one: one atomic add each (Prometheus reads it).
	latency histogram.Recorder
}

func (r *routeStats) count(status int) {
	if c := status / 100; c >= 1 && c <= 5 {
		r.classes[c].Add(1)
	}
}

// metrics sends the terminator's numbers to a DogStatsD agent, with
// client-side aggregation on.
type metrics struct {
	s        *Server
	client   *statsd.Client // nil: metrics off
	interval time.Duration
	done     chan struct{}
	lastBus  map[string]uint64
}

var classTags = [6]string{"", "status:1xx", "status:2xx", "status:3xx", "status:4xx", "status:5xx"}

func newMetrics(s *Server) (*metrics, error) {
	m := &metrics{s: s, interval: s.cfg.StatsdInterval, done: make(chan struct{}), lastBus: map[string]uint64{}}
	if s.cfg.StatsdAddr == "" {
		return m, nil
	}
	c, err := statsd.New(s.cfg.StatsdAddr,
		statsd.WithNamespace("terminator."),
		statsd.WithClientSideAggregation(),
		statsd.WithExtendedClientSideAggregation(),
		statsd.WithAggregationInterval(m.interval),
		statsd.WithoutTelemetry(),
	)
	if err != nil {
		return nil, err
	}
	m.client = c
	return m, nil
}

// latency sends a sample of request latencies. The sampling decision comes
// first, so a discarded sample costs one random number.
func (m *metrics) latency(e *entry, d time.Duration) {
	if m.client == nil || rand.Float64() >= m.s.cfg.LatencySample {
		return
	}
	_ = m.client.Distribution("latency_ms", float64(d)/1e6, e.latencyTags(), m.s.cfg.LatencySample)
}

func (m *metrics) start() {
	if m.client == nil {
		return
	}
	go func() {
		t := time.NewTicker(m.interval)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				m.flush()
				_ = m.client.Close()
				return
			case <-t.C:
				m.flush()
			}
		}
	}()
}

func (m *metrics) stop() {
	if m.client != nil {
		close(m.done)
	}
}

// flush reports counters as deltas since the last flush, and gauges.
func (m *metrics) flush() {
	c := m.client
	m.s.router.mu.Lock()
	for _, rs := range m.s.router.stats {
		for class := 1; class <= 5; class++ {
			now := rs.classes[class].Load()
			if d := now - rs.sent[class]; d > 0 {
				_ = c.Count("requests", int64(d), []string{"route:" + rs.key, classTags[class]}, 1)
				rs.sent[class] = now
			}
		}
		if now := rs.cancelled.Load(); now > rs.sentCancelled {
			_ = c.Count("cancelled", int64(now-rs.sentCancelled), []string{"route:" + rs.key}, 1)
			rs.sentCancelled = now
		}
	}
	m.s.router.mu.Unlock()
	if e := m.s.edge.Load(); e != nil {
		for _, ex := range e.experiments {
			for _, v := range ex.counts {
				for class := 1; class <= 5; class++ {
					now := v.classes[class].Load()
					if d := now - v.sent[class]; d > 0 {
						_ = c.Count("variant.requests", int64(d), []string{"service:" + ex.service, "experiment:" + v.experiment,
							"variant:" + v.variant, classTags[class]}, 1)
						v.sent[class] = now
					}
				}
			}
		}
	}
	_ = c.Gauge("in_flight", float64(m.s.limiter.InFlight()), nil, 1)
	_ = c.Gauge("limit", float64(m.s.limiter.Limit()), nil, 1)
	_ = c.Gauge("http.body_bytes", float64(m.s.bodyBytes.Load()), nil, 1)
	_ = c.Gauge("http.conns", float64(m.s.conns.Load()), nil, 1)

	hc := &m.s.counts
	bus := m.s.node.Stats()
	for name, v := range map[string]uint64{
		"http.overloaded": hc.overloaded.Load(), "http.no_route": hc.noRoute.Load(),
		"http.header_too_large": hc.headerTooLarge.Load(), "http.body_too_large": hc.bodyTooLarge.Load(),
		"http.malformed": hc.malformed.Load(), "http.read_timeouts": hc.timeouts.Load(),
		"http.body_budget": hc.bodyBudget.Load(), "http.conns_refused": hc.connsRefused.Load(), "http.bad_path": hc.badPath.Load(),
		"http.method_not_allowed": hc.badMethod.Load(), "http.preflights": hc.preflights.Load(),
		"bus.calls": bus.Calls, "bus.busy": bus.Busy, "bus.no_peer": bus.NoPeer, "bus.expired": bus.Timeouts,
		"bus.peer_lost": bus.PeerLost, "bus.refused": bus.Refused, "bus.retries": bus.Retries,
		"bus.dropped_late": bus.LateReplies, "bus.dropped_stale": bus.StaleReplies,
		"bus.dropped_unknown": bus.UnknownReplies, "bus.malformed": bus.Malformed,
		"bus.misdirected": bus.Misdirected, "bus.plain_refused": bus.PlainRefused,
		"bus.conns_refused": bus.ConnsRefused, "bus.frame_timeouts": bus.FrameTimeouts,
		"bus.idle_closed": bus.IdleClosed, "bus.buffer_refused": bus.BufferRefused,
		"bus.too_long": bus.TooLong, "bus.bad_header": bus.BadHeader, "bus.tls_refused": bus.TLSRefused,
		"bus.unknown_kinds": bus.UnknownKinds, "bus.cancels": bus.Cancels,
		"bus.cancelled": bus.Cancelled, "bus.cancels_sent": bus.CancelsSent, "bus.throttled": bus.Throttled,
	} {
		if d := v - m.lastBus[name]; d > 0 {
			_ = c.Count(name, int64(d), nil, 1)
			m.lastBus[name] = v
		}
	}
	for service, n := range m.s.livePeers() {
		_ = c.Gauge("peers", float64(n), []string{"service:" + service}, 1)
	}
}

// livePeers counts the connected instances of each routed service.
func (s *Server) livePeers() map[string]int {
	out := map[string]int{}
	for _, rt := range s.router.Routes() {
		if _, seen := out[rt.Service]; seen {
			continue
		}
		n := 0
		for _, p := range s.node.Instances(rt.Service) {
			if p.Ready {
				n++
			}
		}
		out[rt.Service] = n
	}
	return out
}
