//go:build !race

package terminator

// Allocation guards. They run without the race detector only (its
// instrumentation allocates): `make test` runs them in a step of their own,
// go test -run Allocs ./...

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// A route lookup allocates nothing, wildcards and all.
func TestRouterLookupAllocs(t *testing.T) {
	r := NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var routes []Route
	for _, name := range []string{"GET /profiles/{id}", "GET /profiles/{id}/visitors", "GET /files/{path...}", "GET /"} {
		rt, err := nanobus.ParseRoute(name)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, Route{Route: rt, Service: "s"})
	}
	r.Set(routes, time.Second)
	for _, path := range []string{"/profiles/42/visitors", "/files/a/b/c", "/", "/nope/nope"} {
		if n := testing.AllocsPerRun(100, func() { r.lookup([]byte("GET"), []byte(path)) }); n != 0 {
			t.Errorf("lookup of %s allocates %v times", path, n)
		}
	}
}

// maxProxyAllocs bounds the allocations of one request through the front:
// the public handler driven with a fasthttp.RequestCtx, through a real
// loopback bus to an echo handler in the same process, and back. Measured
// on go1.26 (amd64), as BenchmarkProxy reports (go test -run '^$' -bench
// Proxy -benchmem ./terminator): 5 per request when a goroutine served
// each request and mangos' queues carried the messages; 1 now, the
// service's handler context. Lower the bound when the path gets leaner;
// raising it needs a reason.
const maxProxyAllocs = 1

func TestProxyAllocs(t *testing.T) {
	request := echoFront(t)()
	for range 100 { // warm the pools and the connection
		request()
	}
	if n := testing.AllocsPerRun(1000, request); n > maxProxyAllocs {
		t.Errorf("a request through the front allocates %v times, want at most %d", n, maxProxyAllocs)
	} else {
		t.Logf("%v allocations per request (bound %d)", n, maxProxyAllocs)
	}
}
