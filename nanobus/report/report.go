package report

import (
	"time"

	"github.com/terminator-gw/terminator/nanobus/histogram"
)

// RouteStats are one route's numbers on the node that serves it, the way
// nats micro endpoints keep them (nanobus.Node.RouteStats).
type RouteStats struct {
	Route          string        `json:"route"`
	Requests       uint64        `json:"requests"`             // requests the handler ran for
	Errors         uint64        `json:"errors"`               // answered 5xx
	ClientErrors   uint64        `json:"client_errors"`        // answered 4xx
	Cancelled      uint64        `json:"cancelled"`            // cancelled by their asker (the client left, a hedge lost): not answered
	LastError      string        `json:"last_error,omitempty"` // the last 5xx's error
	ProcessingTime time.Duration `json:"processing_time_ns"`   // handler time in all
	AverageTime    time.Duration `json:"average_processing_time_ns"`
	P50            time.Duration `json:"p50_ns"` // handler time quantiles, to 12.5%
	P99            time.Duration `json:"p99_ns"`
	// Stream: the route answers with a stream of chunks, its handler
	// time is how long the stream lasted, not a latency.
	Stream bool `json:"stream,omitempty"`
	// Latency is the handler times the quantiles come from: for
	// Prometheus, and for quantiles over a window (the difference of two
	// snapshots); not in JSON.
	Latency histogram.Histogram `json:"-"`
}

// VersionStats are the calls a node made to one version of a service since
// it started (nanobus.Node.CallStats): errors are bus errors and 5xx
// replies, latency is the time to the reply as the caller saw it.
type VersionStats struct {
	Service string              `json:"service"`
	Version string              `json:"version"`
	Calls   uint64              `json:"calls"`
	Errors  uint64              `json:"errors"`
	Latency histogram.Histogram `json:"latency"`
}

// GhostStats are the comparisons of one route's live and ghost replies on
// the node that made the calls (nanobus.Node.GhostStats).
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
	// nodes add up (histogram.Histogram.Add).
	LiveLatency  histogram.Histogram `json:"live_latency,omitempty"`
	GhostLatency histogram.Histogram `json:"ghost_latency,omitempty"`
	Diffs        []GhostDiff         `json:"diffs,omitempty"` // the newest differing pairs
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

// PeerState is an instance of a service as a node sees it now
// (nanobus.Node.Instances): what its registry said of it (see
// nanobus.Peer), and its connection.
type PeerState struct {
	Service  string `json:"service"`
	Addr     string `json:"addr"`
	Weight   int    `json:"weight"`
	Version  string `json:"version,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
	Ready    bool   `json:"ready"`     // connected: calls can go to it
	InFlight int    `json:"in_flight"` // calls waiting on its connection
}

// HedgeStats are a caller's numbers for one hedged route of a service
// (nanobus.Node.HedgeStats).
type HedgeStats struct {
	Service   string        `json:"service"`
	Route     string        `json:"route"`
	Calls     uint64        `json:"calls"`     // calls made to the route
	Hedged    uint64        `json:"hedged"`    // second copies sent
	Won       uint64        `json:"won"`       // second copies that answered first
	Throttled uint64        `json:"throttled"` // copies not sent: the retry budget or the share of calls was spent
	P95       time.Duration `json:"p95_ns"`    // the last measured window's; 0 until measured
}
