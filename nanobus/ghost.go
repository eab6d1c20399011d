package nanobus

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/wire"
)

// maxGhosts bounds the ghost copies a node has in flight: past it, copies
// are dropped (counted) before anything live is.
const maxGhosts = 256

// maxDiffs is how many differing pairs a route keeps, the newest.
const maxDiffs = 8

// maxShownBody is how much of a body a kept pair shows.
const maxShownBody = 2 << 10

// ghostCall is a copy of one live call on its way to a ghost version; it
// compares the two replies once both are in, off the live call's path.
type ghostCall struct {
	node   *Node
	stats  *ghostStats
	policy *Ghost
	liveCh chan ghostReply // the live call's reply, once it has one
}

// ghostReply is what a comparison needs of one reply, copied out of its
// frame.
type ghostReply struct {
	took   time.Duration
	status int
	header map[string]string
	body   []byte
	err    error
}

// ghost sends a copy of req (about to go to live) to an instance of the
// service's ghost version, if its policy has one, the route may be ghosted
// (idempotent or ghost-safe, as live declared it) and the node has room. It
// returns nil when no copy went.
func (n *Node) ghost(s *service, name string, live *instance, req *wire.Request, deadline time.Time) *ghostCall {
	if s.policy == nil || s.policy.Ghost == nil || req.Flags&wire.FlagGhost != 0 || !live.ghostable(req) {
		return nil
	}
	g := s.policy.Ghost
	if g.Percent > 0 && g.Percent < 100 && rand.IntN(100) >= g.Percent {
		return nil
	}
	st := n.ghostStatsFor(name, string(req.Route))
	// Ghosts are the first thing dropped under load: at the node's ghost
	// bound, or when the live instance is half way to its own.
	if n.ghosts.Add(1) > maxGhosts || live.conn.inflight.Load() > int64(n.cfg.MaxInFlight)/2 {
		n.ghosts.Add(-1)
		st.dropped.Add(1)
		return nil
	}
	gin, _ := n.pickFrom(s.ghost, live.conn)
	if gin == nil {
		n.ghosts.Add(-1)
		st.dropped.Add(1)
		return nil
	}
	copied := *req
	copied.Flags |= wire.FlagGhost
	sent := time.Now()
	cl, err := n.dispatch(gin.conn, &copied) // encodes now, while req's views are valid
	if err != nil {
		gin.conn.inflight.Add(-1)
		n.ghosts.Add(-1)
		st.errors.Add(1)
		return nil
	}
	st.ghosted.Add(1)
	gc := &ghostCall{node: n, stats: st, policy: g, liveCh: make(chan ghostReply, 1)}
	go gc.run(gin.conn, cl, deadline, sent)
	return gc
}

// live hands over the live call's outcome. It copies what the comparison
// needs, so the caller may release resp at once.
func (g *ghostCall) live(resp *Response, err error, took time.Duration) {
	g.liveCh <- g.capture(resp, err, took)
}

func (g *ghostCall) capture(resp *Response, err error, took time.Duration) ghostReply {
	r := ghostReply{took: took, err: err}
	if err != nil {
		return r
	}
	r.status, r.body = resp.Status, bytes.Clone(resp.Body)
	for _, h := range g.policy.Headers {
		if v := resp.Header.Get(h); v != nil {
			if r.header == nil {
				r.header = map[string]string{}
			}
			r.header[h] = string(v)
		}
	}
	return r
}

// run waits for the ghost's reply and the live one, and compares them.
func (g *ghostCall) run(c *conn, cl *call, deadline, sent time.Time) {
	n := g.node
	resp, err := n.await(n.ctx, cl, deadline)
	c.inflight.Add(-1)
	n.ghosts.Add(-1)
	ghost := g.capture(resp, err, time.Since(sent))
	resp.Release()
	live := <-g.liveCh // Do always hands it over, once it has it
	st := g.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	st.compared++
	switch {
	case err != nil:
		st.errors.Add(1)
		return
	case live.err != nil:
		st.liveFailed++
		return
	}
	st.liveLatency.record(live.took)
	st.ghostLatency.record(ghost.took)
	if what := g.differs(live, ghost); what != "" {
		st.differing++
		st.diffs = append(st.diffs, GhostDiff{At: time.Now().UTC(), What: what, Live: shown(live), Ghost: shown(ghost)})
		if len(st.diffs) > maxDiffs {
			st.diffs = slices.Delete(st.diffs, 0, len(st.diffs)-maxDiffs)
		}
		return
	}
	st.matched++
}

// differs says what differs between the replies, or "".
func (g *ghostCall) differs(live, ghost ghostReply) string {
	if live.status != ghost.status {
		return "status"
	}
	for _, h := range g.policy.Headers {
		if live.header[h] != ghost.header[h] {
			return "header " + h
		}
	}
	if bytes.Equal(live.body, ghost.body) {
		return ""
	}
	a, aok := decodeJSON(live.body, g.policy.Ignore)
	b, bok := decodeJSON(ghost.body, g.policy.Ignore)
	if aok && bok && reflect.DeepEqual(a, b) {
		return ""
	}
	return "body"
}

// decodeJSON parses b as JSON and drops the ignored keys at any depth.
func decodeJSON(b []byte, ignore []string) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil || d.More() {
		return nil, false
	}
	var strip func(v any)
	strip = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for _, k := range ignore {
				delete(t, k)
			}
			for _, e := range t {
				strip(e)
			}
		case []any:
			for _, e := range t {
				strip(e)
			}
		}
	}
	strip(v)
	return v, true
}

// GhostStats are the comparisons of one route's live and ghost replies on
// the node that made the calls.
type GhostStats struct {
	Service    string        `json:"service"`
	Route      string        `json:"route"`
	Ghosted    uint64        `json:"ghosted"`     // copies sent
	Matched    uint64        `json:"matched"`     // replies alike
	Differing  uint64        `json:"differing"`   // replies not alike
	Errors     uint64        `json:"errors"`      // copies that got no reply (bus error)
	LiveFailed uint64        `json:"live_failed"` // not compared: the live call failed
	Dropped    uint64        `json:"dropped"`     // copies not sent: the node was loaded
	Pending    uint64        `json:"pending"`     // copies sent, not compared yet
	LiveP50    time.Duration `json:"live_p50_ns"`
	LiveP99    time.Duration `json:"live_p99_ns"`
	GhostP50   time.Duration `json:"ghost_p50_ns"`
	GhostP99   time.Duration `json:"ghost_p99_ns"`
	// The latencies the quantiles come from, so that numbers from many
	// nodes add up (Histogram.Add).
	LiveLatency  Histogram   `json:"live_latency,omitempty"`
	GhostLatency Histogram   `json:"ghost_latency,omitempty"`
	Diffs        []GhostDiff `json:"diffs,omitempty"` // the newest differing pairs
}

// GhostDiff is one differing pair of replies.
type GhostDiff struct {
	At    time.Time  `json:"at"`
	What  string     `json:"what"` // "status", "header Content-Type", "body"
	Live  ShownReply `json:"live"`
	Ghost ShownReply `json:"ghost"`
}

// ShownReply is a reply as a differing pair shows it: the body cut to 2 KiB.
type ShownReply struct {
	Status int               `json:"status"`
	Header map[string]string `json:"header,omitempty"`
	Body   string            `json:"body"`
}

func shown(r ghostReply) ShownReply {
	b := r.body
	if len(b) > maxShownBody {
		b = b[:maxShownBody]
	}
	return ShownReply{Status: r.status, Header: r.header, Body: string(b)}
}

type ghostStats struct {
	ghosted, errors, dropped atomic.Uint64

	mu                                       sync.Mutex
	compared, matched, differing, liveFailed uint64
	liveLatency, ghostLatency                histogram
	diffs                                    []GhostDiff
}

// ghostStatsFor returns the comparisons of service's route, made on first
// use. (A sync.Map: every ghosted call looks its route up.)
func (n *Node) ghostStatsFor(service, route string) *ghostStats {
	k := [2]string{service, route}
	if st, ok := n.ghostStats.Load(k); ok {
		return st.(*ghostStats)
	}
	st, _ := n.ghostStats.LoadOrStore(k, new(ghostStats))
	return st.(*ghostStats)
}

// GhostStats returns the node's ghost comparisons by service and route.
func (n *Node) GhostStats() []GhostStats {
	keys := slices.SortedFunc(func(yield func([2]string) bool) {
		n.ghostStats.Range(func(k, _ any) bool { return yield(k.([2]string)) })
	}, func(a, b [2]string) int { return strings.Compare(a[0]+" "+a[1], b[0]+" "+b[1]) })
	stats := make([]*ghostStats, len(keys))
	for i, k := range keys {
		st, _ := n.ghostStats.Load(k)
		stats[i] = st.(*ghostStats)
	}
	out := make([]GhostStats, len(keys))
	for i, st := range stats {
		g := GhostStats{Service: keys[i][0], Route: keys[i][1], Ghosted: st.ghosted.Load(), Errors: st.errors.Load(), Dropped: st.dropped.Load()}
		st.mu.Lock()
		g.Matched, g.Differing, g.LiveFailed = st.matched, st.differing, st.liveFailed
		g.Pending = g.Ghosted - min(g.Ghosted, st.compared)
		live, ghost := st.liveLatency.snapshot(), st.ghostLatency.snapshot()
		g.Diffs = slices.Clone(st.diffs)
		st.mu.Unlock()
		g.LiveP50, g.LiveP99 = live.Quantile(0.5), live.Quantile(0.99)
		g.GhostP50, g.GhostP99 = ghost.Quantile(0.5), ghost.Quantile(0.99)
		g.LiveLatency, g.GhostLatency = live, ghost
		out[i] = g
	}
	return out
}
