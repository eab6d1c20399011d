package terminator_test

// Attacks on the HTTP edge (issue 15, cases 4, 6, 7 and 9), each performed
// over a real socket with raw bytes against a real front, and the behaviour
// the front must show instead.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// rawConn is a client connection that writes raw bytes and reads parsed
// responses, every read bounded.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) write(s string) {
	rc.t.Helper()
	rc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// response reads one response (an interim one too) and its body. A front
// that does not answer within 5 s fails the test: every case here must be
// answered at once, not by a read timeout.
func (rc *rawConn) response() (*http.Response, string) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Fatalf("no response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("response body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the front closed the connection (EOF within 5 s).
func (rc *rawConn) closed() bool {
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.r.ReadByte()
	return err == io.EOF
}

// roundTrip sends raw on a new connection and reads the response.
func roundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.write(raw)
	return rc.response()
}

// prefix is what fasthttp reads of a body before the handler runs
// (StreamRequestBody): 8 KiB at most.
const prefix = 8 << 10

// Case 4: bodies are admitted against a byte budget before they are read.
// A holds most of the budget with a body it has only begun to send; B's
// declared body does not fit and gets 503 with Retry-After at once, before
// it sends more than the prefix. Then A completes, the budget is free again, and a
// chunked body is reserved as it arrives.
func TestBodyBudget(t *testing.T) {
	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{BodyBudget: 64 << 10, MaxBodyBytes: 1 << 20}, echoRoutes("echo"), svc)

	a := dialRaw(t, srv.Addr())
	const aLen = 60000
	a.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(aLen) + "\r\n\r\n")
	a.write(strings.Repeat("a", 20000))
	eventually(t, "A's body reserved", func() bool { return srv.Status().HTTP["body_bytes"] == aLen })

	// B sends its head and the prefix fasthttp reads before the handler
	// runs (8 KiB), and no more.
	b := dialRaw(t, srv.Addr())
	b.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("b", prefix))
	resp, body := b.response()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("over the budget: %d %q (Retry-After %q, X-Request-Id %q), want 503 with both",
			resp.StatusCode, body, resp.Header.Get("Retry-After"), resp.Header.Get("X-Request-Id"))
	}
	if !resp.Close || !b.closed() {
		t.Error("a refused body left the connection open: its bytes would be read as the next request")
	}
	if n := srv.Status().HTTP["body_budget"]; n != 1 {
		t.Errorf("body_budget counter %d, want 1", n)
	}

	a.write(strings.Repeat("a", aLen-20000))
	resp, body = a.response()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); resp.StatusCode != 200 || err != nil || len(s.Body) != aLen {
		t.Fatalf("A: %d, body of %d bytes reached the service, want 200 and %d", resp.StatusCode, len(s.Body), aLen)
	}
	eventually(t, "budget released", func() bool { return srv.Status().HTTP["body_bytes"] == 0 })

	// Chunked: reserved chunk by chunk; the whole body reaches the service.
	a.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"1388\r\n" + strings.Repeat("c", 5000) + "\r\n1388\r\n" + strings.Repeat("d", 5000) + "\r\n0\r\n\r\n")
	resp, body = a.response()
	s = seen{}
	if err := json.Unmarshal([]byte(body), &s); resp.StatusCode != 200 || err != nil || len(s.Body) != 10000 {
		t.Fatalf("chunked: %d, %d bytes reached the service, want 200 and 10000", resp.StatusCode, len(s.Body))
	}
	// A chunked body that outgrows the budget is refused as it grows.
	c := dialRaw(t, srv.Addr())
	c.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 7 {
		c.write("2710\r\n" + strings.Repeat("e", 10000) + "\r\n")
	}
	resp, _ = c.response()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("chunked body over the budget: %d, want 503 with Retry-After", resp.StatusCode)
	}
	eventually(t, "budget released after the refusal", func() bool { return srv.Status().HTTP["body_bytes"] == 0 })
}

// Case 4: a declared body over -max-body is refused at once, and so is one
// larger than the whole budget (it could never fit); the rest is never
// read: the connection closes.
func TestBodyOverLimitsRefusedUnread(t *testing.T) {
	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{BodyBudget: 32 << 10, MaxBodyBytes: 1 << 20}, echoRoutes("echo"), svc)
	// With the first bytes of the body sent, and with the head alone (a
	// client that waits before it sends): 413 at once either way.
	for _, sent := range []int{prefix, 0} {
		for _, n := range []int{2 << 20, 40 << 10} {
			rc := dialRaw(t, srv.Addr())
			rc.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("p", sent))
			resp, _ := rc.response()
			if resp.StatusCode != 413 || resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("Content-Length %d, %d sent: %d (X-Request-Id %q), want 413 at once", n, sent, resp.StatusCode, resp.Header.Get("X-Request-Id"))
			}
			if !rc.closed() {
				t.Errorf("Content-Length %d, %d sent: connection left open after 413, its body unread", n, sent)
			}
		}
	}
}

// Case 6: a connection over -max-conns is answered 503 with Retry-After,
// an X-Request-Id and Connection: close, counted, and closed; once a
// connection goes, a new one is served.
func TestConnectionCap(t *testing.T) {
	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{MaxConns: 2}, echoRoutes("echo"), svc)
	var held []*rawConn
	for range 2 { // two keep-alive connections, served and held
		rc := dialRaw(t, srv.Addr())
		rc.write("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := rc.response(); resp.StatusCode != 200 {
			t.Fatalf("within the cap: %d", resp.StatusCode)
		}
		held = append(held, rc)
	}
	over := dialRaw(t, srv.Addr())
	over.write("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, _ := over.response()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Request-Id") == "" || !resp.Close {
		t.Fatalf("over the cap: %d, Retry-After %q, X-Request-Id %q, close %v; want 503 with all three",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-Request-Id"), resp.Close)
	}
	if !over.closed() {
		t.Error("the refused connection stayed open")
	}
	if n := srv.Status().HTTP["conns_refused"]; n != 1 {
		t.Errorf("conns_refused %d, want 1", n)
	}
	held[0].c.Close()
	eventually(t, "a connection served once one left", func() bool {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == 200
	})
}

// Case 7: every reply the front makes itself carries X-Request-Id: the
// client's when it sent a valid one, else a generated one.
func TestRequestIDOnEveryReply(t *testing.T) {
	release := make(chan struct{})
	svc := echoService(t, "echo", release)
	ghost, _ := nanobus.ParseRoute("GET /ghost")
	routes := append(echoRoutes("echo"), terminator.Route{Route: ghost, Service: "ghost"})
	srv, _ := front(t, terminator.Config{MaxWaiting: 2, MaxBodyBytes: 1024, MaxHeaderBytes: 4096}, routes, svc)
	addr := srv.Addr()

	cases := []struct {
		name, raw string
		want      int
	}{
		{"no route", "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404},
		{"no live instance", "GET /ghost HTTP/1.1\r\nHost: x\r\n\r\n", 503},
		{"deadline", "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", 504},
		{"body over the limit", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + strings.Repeat("x", 2048), 413},
		{"headers over the limit", "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 5000) + "\r\n\r\n", 431},
		{"malformed", "GARBAGE\r\n\r\n", 400},
		{"no Host", "GET /echo HTTP/1.1\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := roundTrip(t, addr, tc.raw)
			if resp.StatusCode != tc.want || resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("%d %q, X-Request-Id %q; want %d with an ID", resp.StatusCode, body, resp.Header.Get("X-Request-Id"), tc.want)
			}
		})
	}
	t.Run("the client's own", func(t *testing.T) {
		resp, _ := roundTrip(t, addr, "GET /nowhere HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine-42\r\n\r\n")
		if resp.StatusCode != 404 || resp.Header.Get("X-Request-Id") != "mine-42" {
			t.Fatalf("%d, X-Request-Id %q; want 404 with mine-42", resp.StatusCode, resp.Header.Get("X-Request-Id"))
		}
	})
	t.Run("overloaded", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); fetchStatus("POST", "http://"+addr+"/block") }()
		}
		eventually(t, "two requests waiting", func() bool { return srv.Status().Waiting == 2 })
		resp, _ := roundTrip(t, addr, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: over-1\r\n\r\n")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Request-Id") != "over-1" {
			t.Errorf("%d, Retry-After %q, X-Request-Id %q; want 503 with both, the client's ID", resp.StatusCode,
				resp.Header.Get("Retry-After"), resp.Header.Get("X-Request-Id"))
		}
		close(release)
		wg.Wait()
	})
}

// profilesService answers GET /profiles/{id} and /profiles/{id}/visitors
// with the route that matched and the id it saw.
func profilesService(t *testing.T) (*nanobus.Node, []terminator.Route) {
	n := nanobustest.NewNode(t, nanobus.Config{Service: "profiles"})
	var routes []terminator.Route
	for _, name := range []string{"GET /profiles/{id}", "GET /profiles/{id}/visitors", "GET /files/{path...}"} {
		must(t, n.Handle(name, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			v := req.PathValue("id")
			if v == "" {
				v = req.PathValue("path")
			}
			return nanobus.Reply{Body: []byte(name + " " + v + " " + string(req.Path))}, nil
		}))
		r, _ := nanobus.ParseRoute(name)
		routes = append(routes, terminator.Route{Route: r, Service: "profiles"})
	}
	return n, routes
}

// Case 9: the edge is strict (RFC 9112). Obs-fold, versions other than
// HTTP/1.0 and 1.1 and bare-LF line ends get 400 at once; an over-limit body
// with Expect: 100-continue gets 413 and no 100; an encoded slash never
// separates segments, and dot segments or empty ones are refused.
func TestStrictHTTP(t *testing.T) {
	svc := echoService(t, "echo", nil)
	profiles, routes := profilesService(t)
	srv, _ := front(t, terminator.Config{MaxBodyBytes: 1024}, append(echoRoutes("echo"), routes...), svc, profiles)
	addr := srv.Addr()

	refused := []struct{ name, raw string }{
		{"obs-fold", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
		{"obs-fold in Transfer-Encoding", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
		{"obs-fold with a tab", "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n"},
		{"HTTP/9.9", "GET /echo HTTP/9.9\r\nHost: x\r\n\r\n"},
		{"HTTP/1.2", "GET /echo HTTP/1.2\r\nHost: x\r\n\r\n"},
		{"HTTP/2.0", "GET /echo HTTP/2.0\r\nHost: x\r\n\r\n"},
		{"bare LF everywhere", "GET /echo HTTP/1.1\nHost: x\n\n"},
		{"bare LF in a header line", "GET /echo HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n"},
		{"bare LF after the request line", "GET /echo HTTP/1.1\nHost: x\r\n\r\n"},
		{"bare LF ending the block", "GET /echo HTTP/1.1\r\nHost: x\r\n\n"},
		{"encoded slash", "GET /profiles/1%2Fvisitors HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"encoded slash, lower case", "GET /profiles/1%2fvisitors HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"encoded slash in a rest wildcard", "GET /files/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"dot-dot segment", "GET /profiles/2/../1/visitors HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"encoded dot-dot segment", "GET /profiles/%2e%2e/visitors HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"dot segment", "GET /profiles/./1 HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"empty segment", "GET /profiles//1 HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"encoded control byte", "GET /profiles/1%00 HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := roundTrip(t, addr, tc.raw)
			if resp.StatusCode != 400 || resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("%d %q (X-Request-Id %q), want 400", resp.StatusCode, body, resp.Header.Get("X-Request-Id"))
			}
		})
	}

	t.Run("no 100 Continue before a refusal", func(t *testing.T) {
		for _, tc := range []struct {
			raw  string
			want int
		}{
			{"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n", 413},
			{"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 404},
			{"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 405},
		} {
			resp, _ := roundTrip(t, addr, tc.raw)
			if resp.StatusCode != tc.want || resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("first response %d (X-Request-Id %q), want %d and no 100 before it", resp.StatusCode, resp.Header.Get("X-Request-Id"), tc.want)
			}
		}
		// Within the limits, 100 and then the answer.
		rc := dialRaw(t, addr)
		rc.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		if resp, _ := rc.response(); resp.StatusCode != 100 {
			t.Fatalf("within the limits: %d, want 100", resp.StatusCode)
		}
		rc.write("hello")
		resp, body := rc.response()
		if resp.StatusCode != 200 || !strings.Contains(body, `"Body":"hello"`) {
			t.Fatalf("after 100: %d %s", resp.StatusCode, body)
		}
	})

	served := []struct{ name, raw, want string }{
		{"visitors", "GET /profiles/1/visitors HTTP/1.1\r\nHost: x\r\n\r\n", "GET /profiles/{id}/visitors 1 /profiles/1/visitors"},
		{"encoded letters", "GET /pro%66iles/%31 HTTP/1.1\r\nHost: x\r\n\r\n", "GET /profiles/{id} 1 /profiles/1"},
		{"UTF-8", "GET /profiles/caf%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n", "GET /profiles/{id} café /profiles/café"},
		{"rest wildcard", "GET /files/a/b HTTP/1.1\r\nHost: x\r\n\r\n", "GET /files/{path...} a/b /files/a/b"},
		{"HTTP/1.0", "GET /profiles/7 HTTP/1.0\r\n\r\n", "GET /profiles/{id} 7 /profiles/7"},
	}
	for _, tc := range served {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := roundTrip(t, addr, tc.raw)
			if resp.StatusCode != 200 || body != tc.want {
				t.Fatalf("%d %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
		})
	}
	t.Run("keep-alive after a strict check passed", func(t *testing.T) {
		rc := dialRaw(t, addr)
		for range 3 {
			rc.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na\nb")
			if resp, body := rc.response(); resp.StatusCode != 200 || !strings.Contains(body, `"Body":"a\nb"`) {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		}
		rc.write("GET /echo HTTP/1.1\nHost: x\n\n")
		if resp, _ := rc.response(); resp.StatusCode != 400 {
			t.Fatalf("bare LF on a kept-alive connection: %d, want 400", resp.StatusCode)
		}
	})
	t.Run("keep-alive after a refusal", func(t *testing.T) {
		rc := dialRaw(t, addr)
		rc.write("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := rc.response(); resp.StatusCode != 404 {
			t.Fatalf("%d, want 404", resp.StatusCode)
		}
		rc.write("GET /echo HTTP/1.1\nHost: x\n\n")
		if resp, _ := rc.response(); resp.StatusCode != 400 {
			t.Fatalf("bare LF after a 404 on the same connection: %d, want 400", resp.StatusCode)
		}
	})
	if n := srv.Status().HTTP["malformed"] + srv.Status().HTTP["bad_path"]; n < uint64(len(refused)) {
		t.Errorf("malformed + bad_path = %d, want at least %d: every refusal counted", n, len(refused))
	}
}

// Case 4: the front listens on loopback unless told otherwise.
func TestListenDefaultIsLoopback(t *testing.T) {
	var c terminator.Config
	fs := flag.NewFlagSet("front", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if got := fs.Lookup("listen").DefValue; got != "127.0.0.1:8080" {
		t.Fatalf("-listen defaults to %q, want 127.0.0.1:8080", got)
	}
}

// Case 4: a body is read after the admission decision but before its slot
// is taken: an upload in progress holds body budget, not a slot, so slow
// uploads cannot starve the requests waiting for replies.
func TestSlowUploadHoldsNoSlot(t *testing.T) {
	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{MaxWaiting: 1, FixedLimit: true}, echoRoutes("echo"), svc)
	a := dialRaw(t, srv.Addr())
	a.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("a", prefix))
	eventually(t, "A's body reserved", func() bool { return srv.Status().HTTP["body_bytes"] == 20000 })
	if resp, body := roundTrip(t, srv.Addr(), "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("while an upload is under way: %d %s, want 200", resp.StatusCode, body)
	}
	a.write(strings.Repeat("a", 20000-prefix))
	if resp, _ := a.response(); resp.StatusCode != 200 {
		t.Fatalf("the upload: %d", resp.StatusCode)
	}
}
