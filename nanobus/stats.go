package nanobus

import (
	"log/slog"
	"sync/atomic"
	"time"
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
	LateReplies    uint64 // replies for calls already finished (timed out, failed, duplicate)
	StaleReplies   uint64 // replies addressed to an earlier life of this node
	UnknownReplies uint64 // replies for calls this node never made
	InFlight       int64  // calls waiting for a reply now

	// Service side.
	Requests         uint64 // requests received
	Handled          uint64 // requests answered by a handler
	HandlerErrors    uint64 // handlers that returned a non-status error or panicked (answered 500)
	ExpiredOnArrival uint64 // requests dropped before the handler: deadline already passed
	ExpiredInHandler uint64 // replies dropped: the deadline passed while the handler ran
	NoRoute          uint64 // requests for a route with no handler
	Overload         uint64 // requests refused: the asker over its in-flight bound, or the node over its handler bound
	Undeliverable    uint64 // replies dropped: no connection to the asker before the deadline
	Serving          int64  // handlers running now

	// Both.
	Malformed uint64 // frames that did not decode
	Peers     int    // connections to other nodes that are up
}

type counters struct {
	calls, replies, busy, noPeer, timeouts, peerLost, refused, retries   atomic.Uint64
	lateReplies, staleReplies, unknownReplies                            atomic.Uint64
	requests, handled, handlerErrors, expiredOnArrival, expiredInHandler atomic.Uint64
	noRoute, overload, undeliverable, malformed                          atomic.Uint64
	inFlight, serving                                                    atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Calls: c.calls.Load(), Replies: c.replies.Load(), Busy: c.busy.Load(), NoPeer: c.noPeer.Load(),
		Timeouts: c.timeouts.Load(), PeerLost: c.peerLost.Load(), Refused: c.refused.Load(),
		Retries: c.retries.Load(), LateReplies: c.lateReplies.Load(), StaleReplies: c.staleReplies.Load(),
		UnknownReplies: c.unknownReplies.Load(), InFlight: c.inFlight.Load(),
		Requests: c.requests.Load(), Handled: c.handled.Load(), HandlerErrors: c.handlerErrors.Load(),
		ExpiredOnArrival: c.expiredOnArrival.Load(), ExpiredInHandler: c.expiredInHandler.Load(),
		NoRoute: c.noRoute.Load(), Overload: c.overload.Load(), Undeliverable: c.undeliverable.Load(),
		Serving: c.serving.Load(), Malformed: c.malformed.Load(),
	}
}

// rateLog logs at most once per interval, so bad input cannot flood the log.
type rateLog struct {
	next atomic.Int64
}

func (r *rateLog) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	next := r.next.Load()
	if now < next || !r.next.CompareAndSwap(next, now+int64(time.Second)) {
		return
	}
	log.Warn(msg, args...)
}
