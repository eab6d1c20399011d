// Package nanobustest runs real bus nodes for tests, as net/http/httptest
// runs real servers: nodes on free loopback ports, over the bus's own
// transport, closed when the test ends.
//
//	svc := nanobustest.NewNode(t, nanobus.Config{Service: "greeter"})
//	svc.Handle("hello", hello)
//	caller := nanobustest.NewNode(t, nanobus.Config{})
//	nanobustest.Connect(t, caller, svc)
//	resp, err := caller.Call(ctx, "greeter", "hello", []byte("world"))
package nanobustest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	_ "github.com/terminator-gw/terminator/nanobus/transport" // the bus's tcp transport
)

// Quiet is a logger that drops everything: tests assert on counters, not
// on log lines.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// NewNode starts a node (on a free loopback port unless cfg says
// otherwise, logging nowhere unless cfg.Logger is set) and closes it when
// the test ends.
func NewNode(t testing.TB, cfg nanobus.Config) *nanobus.Node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Quiet
	}
	n, err := nanobus.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Connect tells from about each of to (with the routes they registered so
// far, as discovery would) and waits until from's connections to them are
// up.
func Connect(t testing.TB, from *nanobus.Node, to ...*nanobus.Node) {
	t.Helper()
	for _, n := range to {
		from.AddPeer(n.Peer())
		Eventually(t, "connection to "+n.Addr(), func() bool {
			for _, p := range from.Instances(n.Service()) {
				if p.Addr == n.Addr() && p.Ready {
					return true
				}
			}
			return false
		})
	}
}

// Pair starts a node serving service, lets register add its handlers, and
// starts a caller connected to it.
func Pair(t testing.TB, service string, register func(*nanobus.Node) error) (caller, svc *nanobus.Node) {
	t.Helper()
	svc = NewNode(t, nanobus.Config{Service: service})
	if err := register(svc); err != nil {
		t.Fatal(err)
	}
	caller = NewNode(t, nanobus.Config{})
	Connect(t, caller, svc)
	return caller, svc
}

// Eventually polls cond until it holds, and fails the test if it does not
// within 10 seconds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after 10s waiting for %s", what)
}

// Context is a context that ends with the test or after d, whichever is
// first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
