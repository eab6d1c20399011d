package terminator

import (
	"context"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

// echoFront is a front routing GET /echo over a real loopback bus to an
// echo handler in the same process, and a driver that sends it one request
// through the public handler (no HTTP client): what BenchmarkProxy times
// and TestProxyAllocs counts. Each driver reuses one RequestCtx, reset
// between requests, as fasthttp's server does: the buffers it keeps are
// what makes it cheap.
func echoFront(tb testing.TB) (driver func() func()) {
	tb.Helper()
	_, driver = echoFrontServer(tb)
	return driver
}

// echoFrontServer is echoFront with its front.
func echoFrontServer(tb testing.TB) (*Server, func() func()) {
	tb.Helper()
	svc := nanobustest.NewNode(tb, nanobus.Config{Service: "echo"})
	if err := svc.Handle("GET /echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: req.Body}, nil
	}); err != nil {
		tb.Fatal(err)
	}
	node := nanobustest.NewNode(tb, nanobus.Config{})
	nanobustest.Connect(tb, node, svc)
	s, err := New(Config{}, node, nanobustest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
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
// and the service's.
func BenchmarkProxy(b *testing.B) {
	driver := echoFront(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		request := driver()
		for pb.Next() {
			request()
		}
	})
}
