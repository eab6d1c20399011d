package terminator

import (
	"context"
	"net"
	"testing"
	"time"

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
// and TestProxyAllocs counts. It logs at info level, into nothing. Each driver reuses one RequestCtx, reset
// between requests, as fasthttp's server does: the buffers it keeps are
// what makes it cheap.
// With tp, the front and both nodes record spans.
func echoFront(tb testing.TB, cfg Config, tp trace.TracerProvider) (s *Server, driver func() func()) {
	tb.Helper()
	svc := nanobustest.NewNode(tb, nanobus.Config{Service: "echo", TracerProvider: tp})
	if err := svc.Handle("GET /echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: req.Body}, nil
	}); err != nil {
		tb.Fatal(err)
	}
	node := nanobustest.NewNode(tb, nanobus.Config{TracerProvider: tp})
	nanobustest.Connect(tb, node, svc)
	s, err := New(cfg, node, nanobustest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	s.SetTracerProvider(tp)
	s.SetRoutes(PublicRoutes(svc.Peer()))
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	return s, func() func() {
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
// and the service's. The access log is on, at info level into nothing, at
// its default rate: the lines it writes are part of the cost.
func BenchmarkProxy(b *testing.B) {
	_, driver := echoFront(b, Config{}, nil)
	benchProxy(b, driver)
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

// accessLogBench is a front (not started) logging at info level into
// nothing, with the access log at rate lines a second, and a request that
// went well to log. Its request began when the benchmark did: SlowRequest
// is an hour, or a benchmark running past the default second would time
// slow requests (always written) instead of sampled ones.
func accessLogBench(tb testing.TB, rate int) (*Server, *fasthttp.RequestCtx, *exchange) {
	tb.Helper()
	s, err := New(Config{AccessLogRate: rate, SlowRequest: time.Hour}, nil, nanobustest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	var rc fasthttp.RequestCtx
	rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	rc.Request.SetRequestURI("/echo")
	rc.Response.SetBody([]byte("hello"))
	x := &exchange{begin: time.Now(), reqID: []byte("0123abcd-1"), client: []byte("127.0.0.1"), version: "v1", bus: time.Millisecond}
	return s, &rc, x
}

// BenchmarkAccessLog is the access log's cost per request: sampled out
// (what nearly every request pays under load), and written (JSON-free text
// into nothing: the formatting alone).
func BenchmarkAccessLog(b *testing.B) {
	for _, c := range []struct {
		name string
		rate int
	}{{"sampled-out", 1}, {"written", 1 << 30}} {
		b.Run(c.name, func(b *testing.B) {
			s, rc, x := accessLogBench(b, c.rate)
			b.ReportAllocs()
			for b.Loop() {
				s.access(rc, x)
			}
		})
	}
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
			_, driver := echoFront(b, Config{}, tp)
			benchProxy(b, driver)
		})
	}
}
