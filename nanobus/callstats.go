package nanobus

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// callStats counts the calls a node makes to one version of one service,
// as the caller sees them: what a rollout is judged by.
type callStats struct {
	calls, errors atomic.Uint64
	latency       histogram.Recorder
}

// record counts one call that took d and ended with status (0: a bus
// error).
func (c *callStats) record(d time.Duration, status int) {
	c.calls.Add(1)
	if status == 0 || status >= 500 {
		c.errors.Add(1)
	}
	c.latency.Record(d)
}

// callStatsFor returns the counters of calls to service's version, made on
// first use. Called with n.mu held.
func (n *Node) callStatsFor(service, version string) *callStats {
	k := [2]string{service, version}
	c := n.callStats[k]
	if c == nil {
		c = new(callStats)
		n.callStats[k] = c
	}
	return c
}

// CallStats returns the node's calls by service and version, sorted.
func (n *Node) CallStats() []report.VersionStats {
	n.mu.RLock()
	out := make([]report.VersionStats, 0, len(n.callStats))
	for k, c := range n.callStats {
		out = append(out, report.VersionStats{Service: k[0], Version: k[1], Calls: c.calls.Load(), Errors: c.errors.Load(),
			Latency: c.latency.Snapshot()})
	}
	n.mu.RUnlock()
	slices.SortFunc(out, func(a, b report.VersionStats) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	return out
}
