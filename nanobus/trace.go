package nanobus

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/nanobus/tracing"
	"github.com/terminator-gw/terminator/wire"
)

// Tracing. With Config.TracerProvider set, a node records a client span
// for each call it makes and a server span for each request it handles,
// and the request frame's traceparent carries the client span to the
// instance, so that a handler's span is the child of its caller's call,
// and the calls the handler makes (with its context) are its children,
// hop after hop. Without one, nothing is recorded, nothing is allocated,
// and the calls a handler makes pass on the traceparent it was sent.

// scopeName is the instrumentation scope of the spans a node records.
const scopeName = "github.com/terminator-gw/terminator/nanobus"

// Attributes the semantic conventions have no name for, in nanobus's own
// namespace: the service a call went to, and the version that answered.
const (
	attrService = attribute.Key("nanobus.service")
	attrVersion = attribute.Key("nanobus.version")
	attrGhost   = attribute.Key("nanobus.ghost")
	attrRetried = attribute.Key("nanobus.retried")
)

var rpcSystem = semconv.RPCSystemNameKey.String("nanobus")

// tracerOf is tp's tracer for nodes, nil without a provider.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(scopeName, trace.WithSchemaURL(semconv.SchemaURL))
}

// traceParentOf is the traceparent value of sc (its own buffer), or nil.
func traceParentOf(sc trace.SpanContext) []byte {
	if !sc.IsValid() {
		return nil
	}
	return wire.AppendTraceParent(make([]byte, 0, wire.TraceParentLen), sc.TraceID(), sc.SpanID(), byte(sc.TraceFlags()))
}

// Span start options, made once: a span that is not sampled costs no
// more than its IDs and its context. Attributes are set only on spans
// that record.
var (
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
)

// startClientSpan starts the span of a call to service, going to in (nil
// when none was found), and puts it in req's traceparent. Its parent is
// the span in ctx (a handler's, or the front's), else the traceparent req
// carries already.
func (n *Node) startClientSpan(ctx context.Context, service string, req *wire.Request, in *instance) trace.Span {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tracing.RemoteParent(ctx, req.TraceParent)
	}
	// The route's name as the instance declared it, a string already.
	name := ""
	if in != nil {
		name = in.routes[string(req.Route)].Name
	}
	if name == "" {
		name = string(req.Route)
	}
	_, span := n.tracer.Start(ctx, name, clientSpan...)
	if span.IsRecording() {
		span.SetAttributes(rpcSystem, semconv.RPCMethod(name), attrService.String(service))
	}
	if tp := traceParentOf(span.SpanContext()); tp != nil {
		req.TraceParent = tp
	}
	return span
}

// propagate puts the span in ctx, if any, in req's traceparent: a stream
// call records no span of its own, and its handler's span is the child of
// the caller's.
func (n *Node) propagate(ctx context.Context, req *wire.Request) {
	if n.tracer == nil {
		return
	}
	if tp := traceParentOf(trace.SpanContextFromContext(ctx)); tp != nil {
		req.TraceParent = tp
	}
}

// endClientSpan ends the span of a call that went to in (nil if it went
// nowhere) and got resp or err.
func endClientSpan(span trace.Span, in *instance, resp *Response, err error, retried bool) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if in != nil {
		span.SetAttributes(attrVersion.String(in.version))
		if host, port, ok := hostPort(in.conn.addr); ok {
			span.SetAttributes(semconv.ServerAddress(host), semconv.ServerPort(port))
		}
	}
	if retried {
		span.SetAttributes(attrRetried.Bool(true))
	}
	status := 0
	if err == nil {
		status = resp.Status
	} else {
		status = StatusOf(err).Code
	}
	span.SetAttributes(semconv.RPCResponseStatusCode(strconv.Itoa(status)))
	switch {
	case err != nil:
		span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		span.SetStatus(codes.Error, tracing.Text(err.Error()))
	case status >= 500:
		span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		span.SetStatus(codes.Error, tracing.Text(resp.Body))
	}
	span.End()
}

// startServerSpan starts the span of req, the child of the call its
// traceparent names, and puts it in hc, the handler's context: the calls
// made with it are its children.
func (n *Node) startServerSpan(hc *handlerContext, req *Request, rt *route) trace.Span {
	ctx, span := n.tracer.Start(tracing.RemoteParent(n.ctx, req.TraceParent), rt.Name, serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(rpcSystem, semconv.RPCMethod(rt.Name), attrService.String(n.cfg.Service),
			attrVersion.String(n.cfg.Version))
		if req.Flags&wire.FlagGhost != 0 {
			span.SetAttributes(attrGhost.Bool(true))
		}
	}
	hc.values = ctx
	return span
}

// endServerSpan ends the span of a handled request: its status, and an
// error when it is a 5xx or the asker cancelled it.
func endServerSpan(span trace.Span, status int, err error, cancelled bool) {
	if !span.IsRecording() {
		span.End()
		return
	}
	switch {
	case cancelled:
		span.SetAttributes(semconv.ErrorTypeKey.String("canceled"))
		span.SetStatus(codes.Error, "cancelled by the asker")
	default:
		span.SetAttributes(semconv.RPCResponseStatusCode(strconv.Itoa(status)))
		if status >= 500 {
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
			msg := "status " + strconv.Itoa(status)
			if err != nil {
				msg = tracing.Text(err.Error())
			}
			span.SetStatus(codes.Error, msg)
		}
	}
	span.End()
}

// errorType names a bus error for the error.type attribute.
func errorType(err error) string {
	for _, e := range []struct {
		err  error
		name string
	}{
		{ErrDeadline, "deadline"}, {context.Canceled, "canceled"}, {ErrPeerLost, "peer_lost"},
		{ErrNoPeer, "no_peer"}, {ErrBusy, "busy"}, {ErrUnavailable, "unavailable"},
		{ErrNoRoute, "no_route"}, {ErrMalformed, "malformed"}, {ErrClosed, "closed"},
	} {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	var se *StatusError
	if errors.As(err, &se) {
		return strconv.Itoa(se.Status)
	}
	return "_OTHER"
}

// hostPort splits a bus address ("tcp://10.0.0.7:7100") for server.address
// and server.port.
func hostPort(addr string) (string, int, bool) {
	u, err := url.Parse(addr)
	if err != nil {
		return "", 0, false
	}
	host, p, err := net.SplitHostPort(u.Host)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(p)
	return host, port, err == nil
}
