package nanobus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/wire"
)

// recorder is a tracer provider that keeps every span, sampling all.
func recorder(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, rec
}

// spanNamed finds the one ended span of kind with name.
func spanNamed(t *testing.T, rec *tracetest.SpanRecorder, kind trace.SpanKind, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == kind && s.Name() == name {
			if found != nil {
				t.Fatalf("two %v spans named %q", kind, name)
			}
			found = s
		}
	}
	if found == nil {
		t.Fatalf("no %v span named %q among %d", kind, name, len(rec.Ended()))
	}
	return found
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// A call's client span is the parent of the handler's server span, and
// the calls the handler makes are its children: hop after hop, one trace.
// A failing hop is marked on both sides.
func TestSpansFollowCalls(t *testing.T) {
	tp, rec := recorder(t)
	b := newNode(t, nanobus.Config{Service: "b", Version: "v2", TracerProvider: tp})
	must(t, b.Handle("b.get", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, errors.New("boom")
	}))
	a := newNode(t, nanobus.Config{Service: "a", TracerProvider: tp})
	must(t, a.Handle("a.get", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		resp, err := a.Call(ctx, "b", "b.get", nil)
		if err != nil {
			return nanobus.Reply{}, err
		}
		defer resp.Release()
		return nanobus.Reply{Status: 502}, nil
	}))
	connect(t, a, b)
	caller := newNode(t, nanobus.Config{TracerProvider: tp})
	connect(t, caller, a)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := caller.Call(ctx, "a", "a.get", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	eventually(t, "4 spans", func() bool { return len(rec.Ended()) >= 4 })

	callA := spanNamed(t, rec, trace.SpanKindClient, "a.get")
	serveA := spanNamed(t, rec, trace.SpanKindServer, "a.get")
	callB := spanNamed(t, rec, trace.SpanKindClient, "b.get")
	serveB := spanNamed(t, rec, trace.SpanKindServer, "b.get")
	for _, c := range []struct {
		what          string
		child, parent sdktrace.ReadOnlySpan
	}{
		{"a's server span", serveA, callA}, {"the call to b", callB, serveA}, {"b's server span", serveB, callB},
	} {
		if c.child.Parent().SpanID() != c.parent.SpanContext().SpanID() || c.child.SpanContext().TraceID() != callA.SpanContext().TraceID() {
			t.Errorf("%s: parent %v, want %v in trace %v", c.what, c.child.Parent(), c.parent.SpanContext(), callA.SpanContext().TraceID())
		}
	}
	if callA.Parent().IsValid() {
		t.Errorf("the first call has a parent: %v", callA.Parent())
	}
	if !serveB.Parent().IsRemote() {
		t.Error("a server span's parent is not marked remote")
	}
	for _, c := range []struct {
		s          sdktrace.ReadOnlySpan
		key, value string
	}{
		{callA, "rpc.system.name", "nanobus"}, {callA, "rpc.method", "a.get"}, {callA, "nanobus.service", "a"},
		{callA, "rpc.response.status_code", "502"}, {callA, "server.address", "127.0.0.1"},
		{callB, "nanobus.version", "v2"}, {callB, "rpc.response.status_code", "500"}, {callB, "error.type", "500"},
		{serveB, "nanobus.service", "b"}, {serveB, "nanobus.version", "v2"}, {serveB, "rpc.response.status_code", "500"},
		{serveA, "rpc.response.status_code", "502"},
	} {
		if got := attr(c.s, c.key); got != c.value {
			t.Errorf("%v span %q: %s = %q, want %q", c.s.SpanKind(), c.s.Name(), c.key, got, c.value)
		}
	}
	for _, s := range []sdktrace.ReadOnlySpan{callA, serveA, callB, serveB} {
		if s.Status().Code != codes.Error {
			t.Errorf("%v span %q: status %v, want an error (a 5xx)", s.SpanKind(), s.Name(), s.Status())
		}
	}
	if serveB.Status().Description != "boom" {
		t.Errorf("b's span: status %q, want the handler's error", serveB.Status().Description)
	}

	// A call that goes nowhere ends its span at once, an error.
	if _, err := caller.Call(ctx, "nosuch", "nosuch.get", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("call to no service: %v", err)
	}
	if s := spanNamed(t, rec, trace.SpanKindClient, "nosuch.get"); s.Status().Code != codes.Error || attr(s, "error.type") != "no_peer" {
		t.Errorf("call to no service: span status %v, error.type %q", s.Status(), attr(s, "error.type"))
	}
}

// A node that records no spans passes on the traceparent its request
// came with: the next traced hop is the child of the last traced one.
func TestUntracedNodePassesTraceParentOn(t *testing.T) {
	tp, rec := recorder(t)
	b := newNode(t, nanobus.Config{Service: "b", TracerProvider: tp})
	must(t, b.Handle("b.get", echo))
	a := newNode(t, nanobus.Config{Service: "a"}) // no tracing
	must(t, a.Handle("a.get", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		resp, err := a.Call(ctx, "b", "b.get", nil)
		if err != nil {
			return nanobus.Reply{}, err
		}
		resp.Release()
		return nanobus.Reply{}, nil
	}))
	connect(t, a, b)
	caller := newNode(t, nanobus.Config{TracerProvider: tp})
	connect(t, caller, a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := caller.Call(ctx, "a", "a.get", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	eventually(t, "2 spans", func() bool { return len(rec.Ended()) >= 2 })
	call, serve := spanNamed(t, rec, trace.SpanKindClient, "a.get"), spanNamed(t, rec, trace.SpanKindServer, "b.get")
	if serve.Parent().SpanID() != call.SpanContext().SpanID() || serve.SpanContext().TraceID() != call.SpanContext().TraceID() {
		t.Errorf("b's span: parent %v, want the caller's call %v", serve.Parent(), call.SpanContext())
	}
}

// A request that carries a traceparent already (the front's, from its
// client) makes it the parent of the call's span when the context holds
// no span.
func TestCallContinuesRequestTraceParent(t *testing.T) {
	tp, rec := recorder(t)
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	caller := newNode(t, nanobus.Config{TracerProvider: tp})
	connect(t, caller, svc)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := wire.Request{Route: []byte("echo"), TraceParent: []byte(parent)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := caller.Do(ctx, "echo", &req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	s := spanNamed(t, rec, trace.SpanKindClient, "echo")
	if got := s.SpanContext().TraceID().String() + "-" + s.Parent().SpanID().String(); got != parent[3:52] {
		t.Errorf("span in trace-parent %s, want %s", got, parent[3:52])
	}
}

// A trace not sampled records nothing, and still travels: every hop gets
// the trace's ID, with the parent its caller's call, not sampled.
func TestUnsampledTraceTravels(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	got := make(chan string, 2)
	b := newNode(t, nanobus.Config{Service: "b", TracerProvider: tp})
	must(t, b.Handle("b.get", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		got <- string(req.TraceParent)
		return nanobus.Reply{}, nil
	}))
	a := newNode(t, nanobus.Config{Service: "a", TracerProvider: tp})
	must(t, a.Handle("a.get", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		got <- string(req.TraceParent)
		resp, err := a.Call(ctx, "b", "b.get", nil)
		if err != nil {
			return nanobus.Reply{}, err
		}
		resp.Release()
		return nanobus.Reply{}, nil
	}))
	connect(t, a, b)
	caller := newNode(t, nanobus.Config{TracerProvider: tp})
	connect(t, caller, a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := caller.Call(ctx, "a", "a.get", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	atA, atB := <-got, <-got
	tidA, sidA, flagsA, okA := wire.ParseTraceParent([]byte(atA))
	tidB, sidB, flagsB, okB := wire.ParseTraceParent([]byte(atB))
	if !okA || !okB || tidA != tidB || sidA == sidB || flagsA != 0 || flagsB != 0 {
		t.Errorf("a got traceparent %q, b %q: want one trace, two parents, not sampled", atA, atB)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded, want none", n)
	}
}
