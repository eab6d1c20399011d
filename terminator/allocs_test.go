//go:build !race

package terminator

// Allocation guards. They run without the race detector only (its
// instrumentation allocates): `make test` runs them in a step of their own,
// go test -run Allocs ./...

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
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

// TestProxyAllocs: the access log is on (info level) at one line a second: nearly every
// request is sampled out, which must cost nothing (a line written costs
// about five allocations, which AllocsPerRun's average over 1000 runs
// hides at one or two a second).
func TestProxyAllocs(t *testing.T) {
	s, driver := echoFront(t, Config{AccessLogRate: 1}, nil)
	request := driver()
	for range 100 { // warm the pools and the connection
		request()
	}
	before := s.accessLog.sampled.Refused()
	if n := testing.AllocsPerRun(1000, request); n > maxProxyAllocs {
		t.Errorf("a request through the front allocates %v times, want at most %d", n, maxProxyAllocs)
	} else {
		t.Logf("%v allocations per request (bound %d)", n, maxProxyAllocs)
	}
	if out := s.accessLog.sampled.Refused() - before; out < 990 {
		t.Errorf("%d of 1001 requests sampled out of the access log, want all but a line a second", out)
	}
}

// A small body costs at most streamDrainAllocs more than a request without
// one: the front reads it from fasthttp's body stream into the exchange's
// pooled buffer, allocating nothing; fasthttp, after the handler, drains
// what is left of the stream with io.CopyN, whose io.LimitReader is one
// small allocation even when nothing is left (fasthttp's, not ours: it
// comes with StreamRequestBody, which bounds body memory). Both requests
// go through a real socket and fasthttp's server; the whole process's
// allocations are counted, so the test compares the two rather than
// bounding either.
const streamDrainAllocs = 1

func TestBodyAllocs(t *testing.T) {
	svc := nanobustest.NewNode(t, nanobus.Config{Service: "echo"})
	echo := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: req.Body}, nil
	}
	for _, r := range []string{"GET /echo", "POST /echo"} {
		if err := svc.Handle(r, echo); err != nil {
			t.Fatal(err)
		}
	}
	node := nanobustest.NewNode(t, nanobus.Config{})
	nanobustest.Connect(t, node, svc)
	s, err := New(Config{Listen: "127.0.0.1:0", HideServerTiming: true}, node, nanobustest.Quiet)
	if err != nil {
		t.Fatal(err)
	}
	s.SetRoutes(PublicRoutes(svc.Peer()))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Drain(context.Background()); s.Close() })

	perRequest := func(raw string) float64 {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		// The first response gives the length of every one (a fixed
		// request ID, no Server-Timing), so later ones are read whole
		// into one buffer, allocating nothing on the client's side.
		io.WriteString(c, raw)
		var first bytes.Buffer
		resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, &first)), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		io.ReadAll(resp.Body)
		buf := make([]byte, first.Len())
		req := []byte(raw)
		request := func() {
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
		}
		for range 100 {
			request()
		}
		return testing.AllocsPerRun(1000, request)
	}
	get := perRequest("GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: fixed\r\n\r\n")
	post := perRequest("POST /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: fixed\r\nContent-Length: 300\r\n\r\n" + strings.Repeat("b", 300))
	t.Logf("per request over a socket: GET %v allocations, POST with 300 bytes %v", get, post)
	if post > get+streamDrainAllocs {
		t.Errorf("a small body costs %v allocations more than none, want at most %d", post-get, streamDrainAllocs)
	}
}

// A request the access log samples out costs no allocation: the decision
// is made before anything is formatted.
func TestAccessLogSampledOutAllocs(t *testing.T) {
	s, rc, x := accessLogBench(t, 1)
	s.access(rc, x) // the window's one line
	if n := testing.AllocsPerRun(1000, func() { s.access(rc, x) }); n != 0 {
		t.Errorf("a request sampled out of the access log allocates %v times", n)
	}
	if s.accessLog.sampled.Refused() < 1000 {
		t.Errorf("%d sampled out, want 1000 or more", s.accessLog.sampled.Refused())
	}
}

// The front's own refusals allocate nothing: 404 and 405, as text and as
// problem+json, and admission's 503. (BenchmarkRefusal times them.)
func TestRefusalAllocs(t *testing.T) {
	s := refusalFront(t)
	for _, tt := range []struct {
		method, path, accept string
		want                 int
	}{
		{"GET", "/nowhere/at/all", "*/*", 404},
		{"GET", "/nowhere/at/all", "application/json", 404},
		{"DELETE", "/echo", "*/*", 405},
		{"PUT", "/items/42", "application/problem+json", 405},
	} {
		request := refusalDriver(t, s, tt.method, tt.path, tt.accept, tt.want)
		for range 10 {
			request()
		}
		if n := testing.AllocsPerRun(1000, request); n != 0 {
			t.Errorf("%s %s (Accept %s): %d refused with %v allocations, want 0", tt.method, tt.path, tt.accept, tt.want, n)
		}
	}
	request := refusalDriver(t, overloadedFront(t), "GET", "/echo", "*/*", 503)
	request()
	if n := testing.AllocsPerRun(1000, request); n != 0 {
		t.Errorf("admission's 503 with %v allocations, want 0", n)
	}
}
