package terminator

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/nanobus"
	_ "github.com/terminator-gw/terminator/nanobus/transport"
)

// BenchmarkProxy drives the public handler directly (no HTTP client in the
// numbers) through a real loopback bus to an echo service in the same
// process: allocations per op are the terminator's, the bus's both ways
// and the service's.
func BenchmarkProxy(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc, _ := nanobus.NewNode(nanobus.Config{Service: "echo", Logger: log})
	defer svc.Close()
	_ = svc.Handle("GET /echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: req.Body}, nil
	})
	node, _ := nanobus.NewNode(nanobus.Config{Logger: log})
	defer node.Close()
	node.AddPeer(svc.Peer())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := node.WaitReady(ctx, "echo"); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{}, node, log)
	if err != nil {
		b.Fatal(err)
	}
	s.SetRoutes(PublicRoutes(svc.Peer()))

	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		// One RequestCtx, reset between requests, as fasthttp's server
		// reuses it: the buffers it keeps are what makes it cheap.
		var rc fasthttp.RequestCtx
		rc.Init(&fasthttp.Request{}, remote, nil)
		for pb.Next() {
			req := &rc.Request
			req.Reset()
			rc.Response.Reset()
			req.Header.SetMethod("GET")
			req.SetRequestURI("/echo?x=1")
			req.Header.Set("User-Agent", "bench")
			req.Header.Set("Accept", "*/*")
			s.handle(&rc)
			if rc.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
			}
		}
	})
}
