package terminator

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// refusalDriver drives the public handler with one request the front
// refuses itself (no bus work), reusing one RequestCtx as fasthttp does:
// what BenchmarkRefusal times and TestRefusalAllocs counts.
func refusalDriver(tb testing.TB, s *Server, method, path, accept string, want int) func() {
	tb.Helper()
	var rc fasthttp.RequestCtx
	rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	return func() {
		req := &rc.Request
		req.Reset()
		rc.Response.Reset()
		req.Header.SetMethod(method)
		req.SetRequestURI(path)
		req.Header.Set("Accept", accept)
		s.handle(&rc)
		if rc.Response.StatusCode() != want {
			tb.Fatalf("%s %s: status %d, want %d: %s", method, path, rc.Response.StatusCode(), want, rc.Response.Body())
		}
	}
}

// BenchmarkRefusal times the front's own refusals: a path with no route
// (404), as plain text and as problem+json, a method with none (405), and
// admission's 503 (over the limit, no room to wait).
func BenchmarkRefusal(b *testing.B) {
	for _, bc := range []struct{ name, method, path, accept string }{
		{"404-text", "GET", "/nowhere/at/all", "*/*"},
		{"404-json", "GET", "/nowhere/at/all", "application/json"},
		{"405-json", "DELETE", "/echo", "application/json"},
		{"503-overloaded", "GET", "/echo", "*/*"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := refusalFront(b)
			want := fasthttp.StatusNotFound
			switch bc.name {
			case "405-json":
				want = fasthttp.StatusMethodNotAllowed
			case "503-overloaded":
				s, want = overloadedFront(b), fasthttp.StatusServiceUnavailable
			}
			request := refusalDriver(b, s, bc.method, bc.path, bc.accept, want)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				request()
			}
		})
	}
}
