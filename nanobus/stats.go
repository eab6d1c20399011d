package nanobus

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// Stats is a snapshot of a node's counters. Every message the node drops is
// counted in exactly one of them.
type Stats struct {
	// Caller side.
	Calls          uint64 // requests sent
	Replies        uint64 // replies matched to a waiting call
	Busy           uint64 // calls refused at once: every instance at its in-flight bound
	NoPeer         uint64 // calls refused at once: no live instance
	Timeouts       uint64 // calls whose deadline passed before the reply
	PeerLost       uint64 // calls failed because their connection dropped
	Refused        uint64 // calls answered by an error frame (busy, expired, no route...)
	Retries        uint64 // idempotent calls retried on another instance after a lost peer
	Throttled      uint64 // retries not made: the service's retry budget was spent (its instances fail)
	Cancelled      uint64 // calls given up because their context was cancelled (the client left, a hedge lost...)
	CancelsSent    uint64 // cancel frames sent, so that the instance stops too
	LateReplies    uint64 // replies for calls already finished (timed out, failed, duplicate)
	StaleReplies   uint64 // replies addressed to an earlier life of this node
	UnknownReplies uint64 // replies for calls this node never made
	Misdirected    uint64 // frames on a connection that may not carry them: an answer not on its call's connection, a request on one this node dialed
	UnknownKinds   uint64 // frames of a kind this node does not know: answered with an error frame on its listener, dropped on a connection it dialed
	PlainRefused   uint64 // peers not dialed: a plain address on a TLS bus, or a TLS one without bus TLS
	InFlight       int64  // calls waiting for a reply now

	// Service side.
	Requests          uint64 // requests received
	Handled           uint64 // requests answered by a handler
	HandlerErrors     uint64 // handlers that returned a non-status error or panicked (answered 500)
	ExpiredOnArrival  uint64 // requests dropped before the handler: deadline already passed
	ExpiredInHandler  uint64 // replies dropped: the deadline passed while the handler ran
	NoRoute           uint64 // requests for a route with no handler, and events (no node handles events yet)
	Cancels           uint64 // cancel frames received
	HandlersCancelled uint64 // handlers whose context a cancel frame ended (or that it spared from starting)
	Overload          uint64 // requests refused: the asker over its in-flight bound, or the node over its handler bound
	Undeliverable     uint64 // replies dropped: the asker's connection was gone
	Serving           int64  // handlers running now

	// Both.
	Malformed uint64 // frames that did not decode (a request whose prefix read is answered with an error frame)
	Peers     int    // connections to other nodes that are up
	// LogsDropped counts the lines about failed requests not written:
	// over Config.ErrorLogRate.
	LogsDropped uint64

	// Connections the transport closed for a limit (see Limits).
	ConnsRefused  uint64 // over MaxConns, and no connection silent long enough to make room
	FrameTimeouts uint64 // a frame not finished within FrameTimeout
	IdleClosed    uint64 // no frame within IdleTimeout of connecting, or silent past it and closed to make room under MaxConns
	BufferRefused uint64 // a frame whose length would take the bytes held over MaxBuffered
	// Connections closed for what the peer sent.
	TooLong    uint64 // a frame length over the maximum frame size
	BadHeader  uint64 // not an SP BUS header (garbage, another SP version or protocol)
	TLSRefused uint64 // a failed TLS handshake (no certificate, unknown authority, expired...)
	Limits     Limits
}

type counters struct {
	calls, replies, busy, noPeer, timeouts, peerLost, refused, retries   atomic.Uint64
	lateReplies, staleReplies, unknownReplies, misdirected, plainRefused atomic.Uint64
	requests, handled, handlerErrors, expiredOnArrival, expiredInHandler atomic.Uint64
	noRoute, overload, undeliverable, malformed                          atomic.Uint64
	connsRefused, frameTimeouts, idleClosed, bufferRefused               atomic.Uint64
	tooLong, badHeader, tlsRefused, unknownKinds, cancels                atomic.Uint64
	throttled, cancelled, cancelsSent, handlersCancelled                 atomic.Uint64
	inFlight, serving                                                    atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Calls: c.calls.Load(), Replies: c.replies.Load(), Busy: c.busy.Load(), NoPeer: c.noPeer.Load(),
		Timeouts: c.timeouts.Load(), PeerLost: c.peerLost.Load(), Refused: c.refused.Load(),
		Retries: c.retries.Load(), LateReplies: c.lateReplies.Load(), StaleReplies: c.staleReplies.Load(),
		UnknownReplies: c.unknownReplies.Load(), Misdirected: c.misdirected.Load(),
		PlainRefused: c.plainRefused.Load(), InFlight: c.inFlight.Load(),
		Requests: c.requests.Load(), Handled: c.handled.Load(), HandlerErrors: c.handlerErrors.Load(),
		ExpiredOnArrival: c.expiredOnArrival.Load(), ExpiredInHandler: c.expiredInHandler.Load(),
		NoRoute: c.noRoute.Load(), Overload: c.overload.Load(), Undeliverable: c.undeliverable.Load(),
		Serving: c.serving.Load(), Malformed: c.malformed.Load(),
		ConnsRefused: c.connsRefused.Load(), FrameTimeouts: c.frameTimeouts.Load(),
		IdleClosed: c.idleClosed.Load(), BufferRefused: c.bufferRefused.Load(),
		TooLong: c.tooLong.Load(), BadHeader: c.badHeader.Load(), TLSRefused: c.tlsRefused.Load(),
		UnknownKinds: c.unknownKinds.Load(), Cancels: c.cancels.Load(),
		Throttled: c.throttled.Load(), Cancelled: c.cancelled.Load(), CancelsSent: c.cancelsSent.Load(),
		HandlersCancelled: c.handlersCancelled.Load(),
	}
}

type routeCounters struct {
	requests, errors, clientErrors atomic.Uint64
	cancelled                      atomic.Uint64 // handlers their asker cancelled: no reply went out
	nanos                          atomic.Int64
	hist                           histogram.Recorder
	lastErr                        atomic.Pointer[string]
}

func (c *routeCounters) record(status int, d time.Duration, err error) {
	c.requests.Add(1)
	c.nanos.Add(int64(d))
	c.hist.Record(d)
	switch {
	case status >= 500:
		c.errors.Add(1)
		msg := fmt.Sprintf("status %d", status)
		if err != nil {
			msg = err.Error()
		}
		c.lastErr.Store(&msg)
	case status >= 400:
		c.clientErrors.Add(1)
	}
}

// RouteStats returns each registered route's numbers, sorted by route.
func (n *Node) RouteStats() []report.RouteStats {
	m := *n.routes.Load()
	out := make([]report.RouteStats, 0, len(m))
	for _, r := range m {
		c := &r.stats
		s := report.RouteStats{Route: r.Name, Requests: c.requests.Load(), Errors: c.errors.Load(),
			ClientErrors: c.clientErrors.Load(), Cancelled: c.cancelled.Load(), ProcessingTime: time.Duration(c.nanos.Load()), Stream: r.stream != nil}
		if s.Requests > 0 {
			s.AverageTime = s.ProcessingTime / time.Duration(s.Requests)
		}
		if e := c.lastErr.Load(); e != nil {
			s.LastError = *e
		}
		s.Latency = c.hist.Snapshot()
		s.P50, s.P99 = s.Latency.Quantile(0.5), s.Latency.Quantile(0.99)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b report.RouteStats) int { return strings.Compare(a.Route, b.Route) })
	return out
}

// warnSometimes logs through s, which lets one line a second through, so
// bad input cannot flood the log.
func warnSometimes(s *rate.Sometimes, log *slog.Logger, msg string, args ...any) {
	s.Do(func() { log.Warn(msg, args...) })
}
