package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// NodeStats is what one node publishes at <prefix>/stats/<node>: the calls
// it made, by service and version, and its ghost comparisons, counted
// since it started.
type NodeStats struct {
	Node    string                `json:"node"`
	Service string                `json:"service"` // the node's own service
	Version string                `json:"version"`
	At      time.Time             `json:"at"` // when the numbers were read
	Calls   []report.VersionStats `json:"calls,omitempty"`
	Ghosts  []report.GhostStats   `json:"ghosts,omitempty"`
}

// What a published value may hold: a route keeps its newest differing
// pairs, cut short, and the value stays far below etcd's request limit
// (1.5 MiB by default) whatever the routes.
const (
	publishedDiffs   = 4
	publishedBody    = 1 << 10
	maxPublishedSize = 512 << 10
)

// statsOf reads node's numbers, bounded for publication.
func statsOf(node *nanobus.Node) NodeStats {
	st := NodeStats{Node: nodeID(node), Service: node.Service(), Version: node.Version(), At: time.Now().UTC(),
		Calls: node.CallStats(), Ghosts: node.GhostStats()}
	for i := range st.Ghosts {
		g := &st.Ghosts[i]
		g.Diffs = g.Diffs[max(0, len(g.Diffs)-publishedDiffs):]
		for j := range g.Diffs {
			d := &g.Diffs[j]
			d.Live.Body, d.Ghost.Body = cut(d.Live.Body), cut(d.Ghost.Body)
		}
	}
	return st
}

func cut(s string) string {
	if len(s) > publishedBody {
		return s[:publishedBody] + "…"
	}
	return s
}

func nodeID(n *nanobus.Node) string { return fmt.Sprintf("%016x", n.ID()) }

// ReportOptions tunes a Reporter.
type ReportOptions struct {
	Prefix string        // default discovery.DefaultPrefix
	Every  time.Duration // default 1s
	TTL    time.Duration // of the lease the key lives under; default 5s
	Logger *slog.Logger
}

// Reporter publishes one node's numbers (NodeStats) every second under a
// lease: the key goes when the node dies or closes. A value is written only
// when it changed, and not at all before the node makes its first call. Nothing else needs it pushed, so watchers leave stats/
// out (see discovery.Watcher): readers get it when they want it.
type Reporter struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Report starts publishing node's numbers until Close.
func Report(cli *clientv3.Client, node *nanobus.Node, opt ReportOptions) *Reporter {
	if opt.Every <= 0 {
		opt.Every = time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	s := NewStore(cli, opt.Prefix)
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reporter{cancel: cancel, done: make(chan struct{})}
	go r.run(ctx, s, node, opt)
	return r
}

func (r *Reporter) run(ctx context.Context, s *Store, node *nanobus.Node, opt ReportOptions) {
	defer close(r.done)
	key := s.statsPrefix() + nodeID(node)
	lease := newLease(s.cli, opt.TTL)
	defer lease.revoke()
	warn := rate.Sometimes{Interval: 30 * time.Second}
	t := time.NewTicker(opt.Every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := statsOf(node)
		if last == "" && !st.called() {
			continue // a node that called nobody yet has nothing to say: no key, no lease
		}
		numbers := st.marshalNumbers()
		id, fresh, err := lease.get(ctx)
		if err == nil && !fresh && numbers == last {
			continue // nothing new: the value in etcd says it all ("at" is when it last changed)
		}
		if err == nil {
			b, _ := json.Marshal(st)
			pctx, cancel := context.WithTimeout(ctx, opt.Every)
			_, err = s.cli.Put(pctx, key, string(b), clientv3.WithLease(id))
			cancel()
		}
		if err != nil {
			lease.lost()
			last = ""
			if ctx.Err() == nil {
				warn.Do(func() { opt.Logger.Warn("cannot publish rollout numbers", "key", key, "err", err) })
			}
			continue
		}
		last = numbers
	}
}

// called reports whether the node made a call yet.
func (st *NodeStats) called() bool {
	for _, c := range st.Calls {
		if c.Calls > 0 {
			return true
		}
	}
	return len(st.Ghosts) > 0
}

// marshalNumbers is st without its time, to tell whether anything changed.
// A value too large to publish loses its differing pairs.
func (st *NodeStats) marshalNumbers() string {
	at := st.At
	st.At = time.Time{}
	defer func() { st.At = at }()
	b, _ := json.Marshal(st)
	if len(b) > maxPublishedSize {
		for i := range st.Ghosts {
			st.Ghosts[i].Diffs = nil
		}
		b, _ = json.Marshal(st)
	}
	return string(b)
}

// Close stops publishing and removes the key.
func (r *Reporter) Close() {
	r.cancel()
	<-r.done
}

// lease is one lease kept alive, granted again when lost.
type lease struct {
	cli    *clientv3.Client
	ttl    int64
	id     clientv3.LeaseID
	cancel context.CancelFunc // ends the keepalive
	gone   chan struct{}      // closed when the keepalive ends
}

func newLease(cli *clientv3.Client, ttl time.Duration) *lease {
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return &lease{cli: cli, ttl: max(1, int64(ttl/time.Second))}
}

// get returns a live lease, granting one if needed; fresh says it is new
// (keys put under the last one are gone).
func (l *lease) get(ctx context.Context) (id clientv3.LeaseID, fresh bool, err error) {
	if l.id != 0 {
		select {
		case <-l.gone:
			l.lost()
		default:
			return l.id, false, nil
		}
	}
	gctx, cancel := context.WithTimeout(ctx, time.Duration(l.ttl)*time.Second)
	defer cancel()
	resp, err := l.cli.Grant(gctx, l.ttl)
	if err != nil {
		return 0, false, fmt.Errorf("grant lease: %w", err)
	}
	kctx, stop := context.WithCancel(context.Background())
	ch, err := l.cli.KeepAlive(kctx, resp.ID)
	if err != nil {
		stop()
		return 0, false, fmt.Errorf("keep lease alive: %w", err)
	}
	l.id, l.cancel, l.gone = resp.ID, stop, make(chan struct{})
	go func(gone chan struct{}) {
		// Drain: clientv3 drops responses for a full channel, and the
		// channel closing is the only sign that the lease is lost.
		for range ch {
		}
		close(gone)
	}(l.gone)
	return l.id, true, nil
}

// lost forgets the lease: the next get grants a new one.
func (l *lease) lost() {
	if l.id != 0 {
		l.cancel()
		l.id = 0
	}
}

// revoke ends the lease and the keys under it.
func (l *lease) revoke() {
	if l.id == 0 {
		return
	}
	id := l.id
	l.lost()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = l.cli.Revoke(ctx, id)
}

// Reading is every node's published numbers, read at once.
type Reading struct {
	At    time.Time
	Nodes map[string]NodeStats // by node ID
}

// ReadStats reads every node's published numbers.
func (s *Store) ReadStats(ctx context.Context) (Reading, error) {
	resp, err := s.cli.Get(ctx, s.statsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return Reading{}, fmt.Errorf("read published numbers: %w", err)
	}
	r := Reading{At: time.Now(), Nodes: map[string]NodeStats{}}
	for _, kv := range resp.Kvs {
		var st NodeStats
		if json.Unmarshal(kv.Value, &st) == nil {
			r.Nodes[strings.TrimPrefix(string(kv.Key), s.statsPrefix())] = st
		}
	}
	return r, nil
}

// Window is the calls to one version of a service, summed over the
// callers, between two readings (or since each caller started).
type Window struct {
	Calls, Errors uint64
	Latency       histogram.Histogram
	Rate          float64 // calls per second (0 without an earlier reading)
}

// ErrorRate is the share of calls that failed (bus errors and 5xx), 0 to 1.
func (w Window) ErrorRate() float64 {
	if w.Calls == 0 {
		return 0
	}
	return float64(w.Errors) / float64(w.Calls)
}

// P99 is the window's 99th percentile latency.
func (w Window) P99() time.Duration { return w.Latency.Quantile(0.99) }

// Calls returns the calls made to service by version, between earlier and
// r, or since each caller started when earlier is nil. A caller's numbers
// count from its value in earlier, or whole if it was not there (it
// started since); callers gone since earlier count no more.
func (r Reading) Calls(service string, earlier *Reading) map[string]Window {
	out := map[string]Window{}
	for id, n := range r.Nodes {
		var base NodeStats
		if earlier != nil {
			base = earlier.Nodes[id]
		}
		for _, c := range n.Calls {
			if c.Service != service {
				continue
			}
			w := out[c.Version]
			calls, errs, lat := c.Calls, c.Errors, c.Latency
			if i := slices.IndexFunc(base.Calls, func(b report.VersionStats) bool { return b.Service == service && b.Version == c.Version }); i >= 0 {
				b := base.Calls[i]
				calls, errs, lat = calls-min(calls, b.Calls), errs-min(errs, b.Errors), lat.Sub(b.Latency)
			}
			w.Calls += calls
			w.Errors += errs
			w.Latency = w.Latency.Add(lat)
			if earlier != nil {
				// A node's rate is over the span between the numbers it
				// published (a value is rewritten only when it changed).
				span := n.At.Sub(base.At)
				if base.At.IsZero() {
					span = r.At.Sub(earlier.At)
				}
				if span > 0 {
					w.Rate += float64(calls) / span.Seconds()
				}
			}
			out[c.Version] = w
		}
	}
	return out
}

// Ghosts returns the ghost comparisons of calls to service, by route,
// summed over the callers since each started; the quantiles are the sum's,
// the differing pairs the newest few of all.
func (r Reading) Ghosts(service string) []report.GhostStats {
	byRoute := map[string]*report.GhostStats{}
	for _, n := range r.Nodes {
		for _, g := range n.Ghosts {
			if g.Service != service {
				continue
			}
			sum := byRoute[g.Route]
			if sum == nil {
				sum = &report.GhostStats{Service: service, Route: g.Route}
				byRoute[g.Route] = sum
			}
			sum.Ghosted += g.Ghosted
			sum.Matched += g.Matched
			sum.Differing += g.Differing
			sum.Errors += g.Errors
			sum.LiveFailed += g.LiveFailed
			sum.Dropped += g.Dropped
			sum.Pending += g.Pending
			sum.LiveLatency = sum.LiveLatency.Add(g.LiveLatency)
			sum.GhostLatency = sum.GhostLatency.Add(g.GhostLatency)
			sum.Diffs = append(sum.Diffs, g.Diffs...)
		}
	}
	out := make([]report.GhostStats, 0, len(byRoute))
	for _, route := range sortedKeys(byRoute) {
		g := byRoute[route]
		g.LiveP50, g.LiveP99 = g.LiveLatency.Quantile(0.5), g.LiveLatency.Quantile(0.99)
		g.GhostP50, g.GhostP99 = g.GhostLatency.Quantile(0.5), g.GhostLatency.Quantile(0.99)
		slices.SortFunc(g.Diffs, func(a, b report.GhostDiff) int { return a.At.Compare(b.At) })
		g.Diffs = g.Diffs[max(0, len(g.Diffs)-publishedDiffs):]
		out = append(out, *g)
	}
	return out
}
