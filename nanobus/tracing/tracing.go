// Package tracing is the OpenTelemetry glue that bus nodes and the front
// share: the W3C traceparent a request carries as a remote parent span,
// and text made safe for a span.
package tracing

import (
	"context"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/wire"
)

// RemoteParent is ctx with the span traceParent names as the remote
// parent, or ctx itself when traceParent is absent or invalid. Only the
// sampled flag is kept.
func RemoteParent(ctx context.Context, traceParent []byte) context.Context {
	tid, sid, flags, ok := wire.ParseTraceParent(traceParent)
	if !ok {
		return ctx
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
		TraceFlags: trace.TraceFlags(flags) & trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Text is b as span text: at most 256 bytes (of a path, a user agent, an
// error body), valid UTF-8. OTLP carries strings as protobuf strings, and
// one invalid byte would fail the export of its whole batch.
func Text[T string | []byte](b T) string {
	s := string(b[:min(len(b), 256)])
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
