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

	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/nanobus/report"
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
	policy *policy.Ghost
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
	st.liveLatency.Record(live.took)
	st.ghostLatency.Record(ghost.took)
	if what := g.differs(live, ghost); what != "" {
		st.differing++
		st.diffs = append(st.diffs, report.GhostDiff{At: time.Now().UTC(), What: what, Live: shown(live), Ghost: shown(ghost)})
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

// shown is r as a differing pair shows it: the body cut to maxShownBody.
func shown(r ghostReply) report.ShownReply {
	b := r.body
	if len(b) > maxShownBody {
		b = b[:maxShownBody]
	}
	return report.ShownReply{Status: r.status, Header: r.header, Body: string(b)}
}

type ghostStats struct {
	ghosted, errors, dropped atomic.Uint64

	mu                                       sync.Mutex
	compared, matched, differing, liveFailed uint64
	liveLatency, ghostLatency                histogram.Recorder
	diffs                                    []report.GhostDiff
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
func (n *Node) GhostStats() []report.GhostStats {
	keys := slices.SortedFunc(func(yield func([2]string) bool) {
		n.ghostStats.Range(func(k, _ any) bool { return yield(k.([2]string)) })
	}, func(a, b [2]string) int { return strings.Compare(a[0]+" "+a[1], b[0]+" "+b[1]) })
	stats := make([]*ghostStats, len(keys))
	for i, k := range keys {
		st, _ := n.ghostStats.Load(k)
		stats[i] = st.(*ghostStats)
	}
	out := make([]report.GhostStats, len(keys))
	for i, st := range stats {
		g := report.GhostStats{Service: keys[i][0], Route: keys[i][1], Ghosted: st.ghosted.Load(), Errors: st.errors.Load(), Dropped: st.dropped.Load()}
		st.mu.Lock()
		g.Matched, g.Differing, g.LiveFailed = st.matched, st.differing, st.liveFailed
		g.Pending = g.Ghosted - min(g.Ghosted, st.compared)
		live, ghost := st.liveLatency.Snapshot(), st.ghostLatency.Snapshot()
		g.Diffs = slices.Clone(st.diffs)
		st.mu.Unlock()
		g.LiveP50, g.LiveP99 = live.Quantile(0.5), live.Quantile(0.99)
		g.GhostP50, g.GhostP99 = ghost.Quantile(0.5), ghost.Quantile(0.99)
		g.LiveLatency, g.GhostLatency = live, ghost
		out[i] = g
	}
	return out
}
