package terminator

import (
	"context"
	"strconv"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/nanobus/tracing"
)

// Tracing at the front: with a tracer provider (SetTracerProvider), each
// request gets a server span, the child of the traceparent its client sent
// (when valid) or a new trace's root. The request's bus call runs with it
// in its context, so the node's client span for the call is its child and
// the service's span that one's. Without a provider, none of this runs.

// scopeName is the instrumentation scope of the front's spans.
const scopeName = "github.com/terminator-gw/terminator/terminator"

// Attributes the semantic conventions have no name for: the service the
// route belongs to, and the version of the instance that answered (as the
// bus's spans name them).
const (
	attrService = attribute.Key("nanobus.service")
	attrVersion = attribute.Key("nanobus.version")
)

// SetTracerProvider makes the front record a span per request with tp.
// Call it before Start; nil (the default) records none.
func (s *Server) SetTracerProvider(tp trace.TracerProvider) {
	if tp == nil {
		s.tracer = nil
		return
	}
	s.tracer = tp.Tracer(scopeName, trace.WithSchemaURL(semconv.SchemaURL))
}

// startSpan starts x's server span, and puts it in the context of x's bus
// call.
func (s *Server) startSpan(ctx *fasthttp.RequestCtx, x *exchange) {
	parent := tracing.RemoteParent(context.Background(), ctx.Request.Header.PeekBytes(hdrTraceParent))
	method := knownMethod(ctx.Method())
	name := method
	if method == "_OTHER" {
		name = "HTTP"
	}
	var sctx context.Context
	sctx, x.span = s.tracer.Start(parent, name, serverSpan...)
	x.ctx.values = sctx
	if !x.span.IsRecording() {
		return // a span not sampled: only its IDs travel
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(method),
		semconv.URLPath(tracing.Text(ctx.URI().PathOriginal())),
		semconv.URLScheme("http"),
		semconv.HTTPRequestHeader("x-request-id", string(x.reqID)),
	}
	if ua := ctx.Request.Header.UserAgent(); len(ua) > 0 {
		attrs = append(attrs, semconv.UserAgentOriginal(tracing.Text(ua)))
	}
	if method == "_OTHER" {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginal(tracing.Text(ctx.Method())))
	}
	// The client's address as fill will send it (it runs only for a
	// request that reaches a route: refusals are spans too).
	peer, trusted := s.peer(ctx)
	if a := s.clientAddr(peer, trusted, &ctx.Request.Header); a.IsValid() {
		attrs = append(attrs, semconv.ClientAddress(a.String()))
	}
	x.span.SetAttributes(attrs...)
}

var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// routeSpan names x's span after the route the request matched.
func routeSpan(x *exchange, e *entry) {
	if !x.span.IsRecording() {
		return
	}
	x.span.SetName(e.Name) // "GET /profiles/{id}"
	x.span.SetAttributes(semconv.HTTPRoute(e.Pattern), attrService.String(e.Service))
}

// endSpan ends x's span with the response's status: an error for a 5xx.
// A client that went away is nginx's 499, and no error of the server's.
func endSpan(ctx *fasthttp.RequestCtx, x *exchange) {
	if !x.span.IsRecording() {
		x.span.End()
		return
	}
	status := ctx.Response.StatusCode()
	if x.gone {
		status = 499
	}
	attrs := []attribute.KeyValue{semconv.HTTPResponseStatusCode(status)}
	if x.version != "" {
		attrs = append(attrs, attrVersion.String(x.version))
	}
	if status >= 500 {
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		x.span.SetStatus(codes.Error, tracing.Text(ctx.Response.Body()))
	}
	x.span.SetAttributes(attrs...)
	x.span.End()
}

// errorSpan records the span of a request fasthttp could not read (its
// head too large, its body over the limit, malformed): named "HTTP", as
// nothing of it can be trusted, with its status and request ID.
func (s *Server) errorSpan(ctx *fasthttp.RequestCtx, id []byte) {
	_, span := s.tracer.Start(context.Background(), "HTTP", serverSpan...)
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(ctx.Response.StatusCode()),
			semconv.HTTPRequestHeader("x-request-id", string(id)))
	}
	span.End()
}

// knownMethod is the method as the semantic conventions want it: one of
// the known ones, or "_OTHER" (a client's made-up methods would make a
// span name per method).
func knownMethod(m []byte) string {
	for _, k := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "QUERY"} {
		if string(m) == k {
			return k
		}
	}
	return "_OTHER"
}
