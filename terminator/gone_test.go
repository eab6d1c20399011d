package terminator_test

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// cancelledOf is the route's count of calls cancelled because the client
// went away (499).
func cancelledOf(srv *terminator.Server, method, pattern string) uint64 {
	for _, r := range srv.Status().Routes {
		if r.Method == method && r.Pattern == pattern {
			return r.Cancelled
		}
	}
	return 0
}

func cancelledTotal(srv *terminator.Server) uint64 {
	var n uint64
	for _, r := range srv.Status().Routes {
		n += r.Cancelled
	}
	return n
}

// dialFront opens a raw connection to the front; it is closed with the test.
func dialFront(t *testing.T, srv *terminator.Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

const blockRequest = "POST /block HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"

// readResponse reads one response from br, body and all.
func readResponse(t *testing.T, br *bufio.Reader) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, string(b)
}

// A client that closes its connection while its request is parked on the
// bus: the front cancels the call within a watcher tick or two, frees its
// admission slot, writes nothing, counts it as the route's 499 and logs it
// at debug level, not as an error. The front goes on serving.
func TestClientGoneCancelsCall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	svc := echoService(t, "echo", release)
	var logs nanobustest.Logs
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A deadline far off: only the client's leaving can end the call soon.
	srv, _ := frontLog(t, terminator.Config{Timeout: 30 * time.Second}, log, echoRoutes("echo"), svc)

	// Closed at once after parking (the watcher polls requests parked for
	// a quarter tick: up to a tick and a quarter), and after the watcher
	// has polled it (up to one tick).
	for i, watched := range []bool{false, true} {
		c := dialFront(t, srv)
		if _, err := io.WriteString(c, blockRequest); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the request parked on the bus", func() bool { return terminator.Parked(srv) == 1 })
		if watched {
			polled := terminator.Polled(srv)
			eventually(t, "the socket polled", func() bool { return terminator.Polled(srv) > polled })
		}
		closed := time.Now()
		c.Close()
		var took time.Duration
		for end := closed.Add(2 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			if cancelledOf(srv, "POST", "/block") == uint64(i+1) {
				took = time.Since(closed)
				break
			}
			if time.Now().After(end) {
				t.Fatalf("call not cancelled 2s after its client left; status %+v", srv.Status().Routes)
			}
		}
		t.Logf("client close to call cancelled (polled before: %v): %v", watched, took)
		eventually(t, "the admission slot freed", func() bool { return srv.Status().Waiting == 0 })
		eventually(t, "the connection closed", func() bool { return srv.Status().HTTP["conns"] == 0 })
		if n := terminator.Parked(srv); n != 0 {
			t.Fatalf("%d requests still parked", n)
		}
	}
	eventually(t, "the 499 logged", func() bool { return strings.Contains(logs.String(), "status=499") })
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "status=499") && !strings.Contains(line, "level=DEBUG") {
			t.Errorf("499 logged above debug: %s", line)
		}
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("error logged: %s", line)
		}
	}
	st := srv.Status()
	for _, r := range st.Routes {
		if r.Method == "POST" && r.Pattern == "/block" && len(r.Responses) != 0 {
			t.Errorf("a cancelled call counted as a response: %v", r.Responses)
		}
	}

	// Still serving, on a keep-alive connection.
	k := dialFront(t, srv)
	br := bufio.NewReader(k)
	for i := range 2 {
		if _, err := io.WriteString(k, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if code, body := readResponse(t, br); code != 200 {
			t.Fatalf("request %d after the cancel: %d %s", i, code, body)
		}
	}
}

// A second request pipelined behind a parked one makes the socket readable
// with data: the watcher peeks, sees a request, not EOF, and leaves it to
// fasthttp. Both are answered, in order.
func TestPipelinedNotMistakenForGone(t *testing.T) {
	release := make(chan struct{})
	svc := echoService(t, "echo", release)
	srv, _ := front(t, terminator.Config{Timeout: 30 * time.Second}, echoRoutes("echo"), svc)

	c := dialFront(t, srv)
	if _, err := io.WriteString(c, blockRequest); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the request parked on the bus", func() bool { return terminator.Parked(srv) == 1 })
	seen := terminator.Pipelined(srv)
	if _, err := io.WriteString(c, "GET /echo?second=1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Two ticks that found the pipelined bytes and cancelled nothing.
	eventually(t, "the watcher seeing the pipelined request twice", func() bool { return terminator.Pipelined(srv) >= seen+2 })
	if n := cancelledTotal(srv); n != 0 {
		t.Fatalf("a pipelined request taken for a client gone: %d cancelled", n)
	}
	close(release)
	br := bufio.NewReader(c)
	if code, body := readResponse(t, br); code != 200 || body != "released" {
		t.Fatalf("first: %d %q", code, body)
	}
	if code, body := readResponse(t, br); code != 200 || !strings.Contains(body, `"Query":"second=1"`) {
		t.Fatalf("second (pipelined): %d %q", code, body)
	}
	if n := cancelledTotal(srv); n != 0 {
		t.Fatalf("%d cancelled", n)
	}
}

// A request whose client stays is never cancelled, however long the
// watcher looks at its socket, and neither are requests that end within a
// tick.
func TestCompletedNeverCancelled(t *testing.T) {
	release := make(chan struct{})
	svc := echoService(t, "echo", release)
	srv, _ := front(t, terminator.Config{Timeout: 30 * time.Second}, echoRoutes("echo"), svc)

	c := dialFront(t, srv)
	if _, err := io.WriteString(c, blockRequest); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the request parked on the bus", func() bool { return terminator.Parked(srv) == 1 })
	polled := terminator.Polled(srv)
	eventually(t, "the watcher polling the socket three times", func() bool { return terminator.Polled(srv) >= polled+3 })
	close(release)
	br := bufio.NewReader(c)
	if code, body := readResponse(t, br); code != 200 || body != "released" {
		t.Fatalf("parked request: %d %q", code, body)
	}
	for i := range 200 {
		if _, err := io.WriteString(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if code, body := readResponse(t, br); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	if n := cancelledTotal(srv); n != 0 {
		t.Fatalf("%d requests cancelled whose clients stayed", n)
	}
	if w := srv.Status().Waiting; w != 0 {
		t.Fatalf("%d still admitted", w)
	}
}
