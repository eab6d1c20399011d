package nanobus

import (
	"context"
	"log/slog"
	"time"

	"github.com/terminator-gw/terminator/wire"
)

// defaultErrorLogRate is Config.ErrorLogRate's default: enough to see
// every failure of a quiet system, and the shape of a storm in a loud one.
const defaultErrorLogRate = 20

// hdrRequestID is the header the front gives every request: the ID that
// follows one request through every hop, and every log line about it.
const hdrRequestID = "X-Request-Id"

// logsFailure reports whether a line about a failed request is written
// now: its level is on, and the node's error log rate allows it (if not,
// it is counted). Asked first, so that a storm of failures formats nothing.
func (n *Node) logsFailure(level slog.Level) bool {
	return n.log.Enabled(context.Background(), level) && n.reqLog.Allow(time.Now())
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
