package terminator

import (
	"testing"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

// refusalFront is a front with routes but no bus peer: what it refuses,
// it refuses before any bus work.
func refusalFront(tb testing.TB) *Server {
	tb.Helper()
	s, err := New(Config{}, nanobustest.NewNode(tb, nanobus.Config{}), nanobustest.Quiet)
	if err != nil {
		tb.Fatal(err)
	}
	var routes []Route
	for _, name := range []string{"GET /echo", "POST /echo", "GET /items/{id}"} {
		rt, err := nanobus.ParseRoute(name)
		if err != nil {
			tb.Fatal(err)
		}
		routes = append(routes, Route{Route: rt, Service: "echo"})
	}
	s.SetRoutes(routes)
	return s
}

// overloadedFront is refusalFront at its admission limit with no room to
// wait: every routed request is refused (503) at once.
func overloadedFront(tb testing.TB) *Server {
	tb.Helper()
	s := refusalFront(tb)
	s.limiter = limit.New(1, 1, 1)
	s.limiter.Acquire()
	return s
}
