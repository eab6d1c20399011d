package terminator

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

// echoFront is a front routing GET /echo over a real loopback bus to an
// echo handler in the same process, and a driver that sends it one request
// through the public handler (no HTTP client): what BenchmarkProxy times
// and TestProxyAllocs counts. Each driver reuses one RequestCtx, reset
// between requests, as fasthttp's server does: the buffers it keeps are
// what makes it cheap.
// With tp, the front and both nodes record spans.
func echoFront(tb testing.TB, tp trace.TracerProvider) (driver func() func()) {
	tb.Helper()
	svc := nanobustest.NewNode(tb, nanobus.Config{Service: "echo", TracerProvider: tp})
	if err := svc.Handle("GET /echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: req.Body}, nil
	}); err != nil {
		tb.Fatal(err)
	}
	node := nanobustest.NewNode(tb, nanobus.Config{TracerProvider: tp})
	nanobustest.Connect(tb, node, svc)
	s, err := New(Config{}, node, nanobustest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	s.SetTracerProvider(tp)
	s.SetRoutes(PublicRoutes(svc.Peer()))
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	return func() func() {
		var rc fasthttp.RequestCtx
		rc.Init(&fasthttp.Request{}, remote, nil)
		return func() {
			req := &rc.Request
			req.Reset()
			rc.Response.Reset()
			req.Header.SetMethod("GET")
			req.SetRequestURI("/echo?x=1")
			req.Header.Set("User-Agent", "bench")
			req.Header.Set("Accept", "*/*")
			s.handle(&rc)
			if rc.Response.StatusCode() != 200 {
				tb.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
			}
		}
	}
}

// BenchmarkProxy drives the public handler directly (no HTTP client in the
// numbers) through a real loopback bus to an echo service in the same
// process: allocations per op are the terminator's, the bus's both ways
// and the service's.
func BenchmarkProxy(b *testing.B) {
	benchProxy(b, echoFront(b, nil))
}

func benchProxy(b *testing.B, driver func() func()) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		request := driver()
		for pb.Next() {
			request()
		}
	})
}

// BenchmarkProxyTraced is BenchmarkProxy with tracing on, three spans per
// request (the front's, its call's, the service's) batched to an exporter
// that drops them: every request recorded (sampled), or the default
// sampler's share (ratio), the others only propagated.
func BenchmarkProxyTraced(b *testing.B) {
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{
		{"sampled", sdktrace.AlwaysSample()},
		{"ratio-0.01", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
	} {
		b.Run(c.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.sampler),
				sdktrace.WithBatcher(tracetest.NewNoopExporter()))
			b.Cleanup(func() { tp.Shutdown(context.Background()) })
			benchProxy(b, echoFront(b, tp))
		})
	}
}
