package terminator

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/nanobus/limit"
)

// accessLog is the front's access log: a line per request, with its ID,
// route, status, the service and version that answered, bus and total
// time, bytes. Lines of requests that went well are sampled: at most
// Config.AccessLogRate a second, the rest counted; a request not written
// costs no allocation (TestProxyAllocs). A 5xx from the bus (ERROR) and a
// request slower than Config.SlowRequest (WARN) are always written.
//
// A client that went away (499) is logged at DEBUG. Load shed (503 before
// any bus work, or busy from the bus) is logged at WARN and sampled: a
// refusal is meant to cost less than a hello, and a storm of them is what
// admission is there to absorb; they are counted in the status
// (http.overloaded, the bus's Busy) either way.
type accessLog struct {
	sampled limit.PerSecond // lines of requests that went well, a second
	written atomic.Uint64
}

// maxLoggedPath bounds the path an access line carries.
const maxLoggedPath = 512

// access writes x's access line, if its level is on and, for a sampled
// one, the rate allows. Everything it formats is formatted after that
// decision.
func (s *Server) access(ctx *fasthttp.RequestCtx, x *exchange) {
	now := x.end // the answer is in: what is left is copying it out
	if now.IsZero() {
		now = time.Now()
	}
	total := now.Sub(x.begin)
	status := ctx.Response.StatusCode()
	if x.gone {
		status = 499 // nothing was sent: nginx's word for a client that left
	}
	level, sampled := slog.LevelInfo, true
	switch {
	case status >= 500 && !x.shed:
		level, sampled = slog.LevelError, false
	case total >= s.cfg.SlowRequest:
		level, sampled = slog.LevelWarn, false
	case x.shed:
		level = slog.LevelWarn
	case x.gone:
		level = slog.LevelDebug // the client's doing, not the system's
	}
	if !s.log.Enabled(context.Background(), level) || sampled && !s.accessLog.sampled.Allow(now) {
		return
	}
	s.accessLog.written.Add(1)
	path := ctx.URI().PathOriginal()
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath]
	}
	route, service := "", ""
	if x.route != nil {
		route, service = x.route.Name, x.route.Service
	}
	client := string(x.client)
	if client == "" {
		if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
			client = a.IP.String()
		}
	}
	attrs := []slog.Attr{
		slog.String("request_id", string(x.reqID)),
		slog.String("method", string(ctx.Method())),
		slog.String("path", string(path)),
		slog.String("route", route),
		slog.Int("status", status),
		slog.String("service", service),
		slog.String("version", x.version),
		slog.Float64("bus_s", x.bus.Seconds()),
		slog.Float64("total_s", total.Seconds()),
		slog.Int("bytes_in", len(x.req.Body)),
		slog.Int("bytes_out", len(ctx.Response.Body())),
		slog.String("client", client),
	}
	if x.err != nil {
		attrs = append(attrs, slog.String("err", x.err.Error()))
	}
	s.log.LogAttrs(context.Background(), level, "request", attrs...)
}
