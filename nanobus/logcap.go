package nanobus

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/wire"
)

// defaultErrorLogRate is Config.ErrorLogRate's default: enough to see
// every failure of a quiet system, and the shape of a storm in a loud one.
const defaultErrorLogRate = 20

// hdrRequestID is the header the front gives every request: the ID that
// follows one request through every hop, and every log line about it.
const hdrRequestID = "X-Request-Id"

// logCap lets at most rate lines a second through: an error storm is
// counted, not written (Stats.LogsDropped). Lock-free and allocation-free,
// as a request that is not logged must cost nothing: a window per second,
// approximate at its edge (two goroutines may both open it).
type logCap struct {
	rate    int64
	second  atomic.Int64 // unix second of the window
	n       atomic.Int64 // lines let through in it
	dropped atomic.Uint64
}

func (c *logCap) allow(now time.Time) bool {
	sec := now.Unix()
	if old := c.second.Load(); old != sec && c.second.CompareAndSwap(old, sec) {
		c.n.Store(0)
	}
	if c.n.Add(1) > c.rate {
		c.dropped.Add(1)
		return false
	}
	return true
}

// logsFailure reports whether a line about a failed request is written
// now: its level is on, and the node's error log rate allows it (if not,
// it is counted). Asked first, so that a storm of failures formats nothing.
func (n *Node) logsFailure(level slog.Level) bool {
	return n.log.Enabled(context.Background(), level) && n.reqLog.allow(time.Now())
}

// requestLog writes one line about a request that failed or was dropped,
// with its route and request ID. Ask logsFailure first.
func (n *Node) requestLog(level slog.Level, msg string, req *wire.Request, args ...slog.Attr) {
	attrs := make([]slog.Attr, 0, len(args)+3)
	attrs = append(attrs, slog.String("request_id", string(req.Header.Get(hdrRequestID))),
		slog.String("route", string(req.Route)))
	if req.Flags&wire.FlagGhost != 0 {
		// A ghost copy's failure is the ghost version's: the client's
		// request did not fail.
		attrs = append(attrs, slog.Bool("ghost", true))
	}
	n.log.LogAttrs(context.Background(), level, msg, append(attrs, args...)...)
}

// RequestID returns the ID of the request being handled that ctx is the
// context of (or derives from): the front's X-Request-Id, which every
// call made with ctx carries on. "" outside a handler.
func RequestID(ctx context.Context) string {
	if r := RequestOf(ctx); r != nil {
		return string(r.Header.Get(hdrRequestID))
	}
	return ""
}
