package terminator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// seen is what the echo service reports back about a request.
type seen struct {
	Method, Path, Query, Client, TraceParent, Body string
	Header                                         map[string]string
}

// echoService starts a service node whose handlers report what they got.
// "/slow" sleeps for the duration in its body; "/block" waits for release.
func echoService(t testing.TB, service string, release <-chan struct{}) *nanobus.Node {
	t.Helper()
	n := nanobustest.NewNode(t, nanobus.Config{Service: service})
	report := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		s := seen{Method: string(req.Method), Path: string(req.Path), Query: string(req.Query),
			Client: string(req.Client), TraceParent: string(req.TraceParent), Body: string(req.Body), Header: map[string]string{}}
		for k, v := range req.Header.All() {
			s.Header[string(k)] = string(v)
		}
		b, _ := json.Marshal(s)
		rep := nanobus.Reply{Body: b}
		rep.Header.Add("Content-Type", "application/json")
		rep.Header.Add("X-Service", service)
		rep.Header.Add("Connection", "close") // hop-by-hop: must not reach the client
		return rep, nil
	}
	must(t, n.Handle("GET /echo", report))
	must(t, n.Handle("POST /echo", report))
	must(t, n.Handle("GET /items/{id}", report))
	must(t, n.Handle("GET /slow", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
		return nanobus.Reply{Body: []byte("slow")}, nil
	}))
	must(t, n.Handle("POST /block", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nanobus.Reply{Body: []byte("released")}, nil
	}))
	return n
}

func echoRoutes(service string) []terminator.Route {
	var out []terminator.Route
	for _, key := range []string{"GET /echo", "POST /echo", "GET /items/{id}", "GET /slow", "POST /block"} {
		timeout := time.Duration(0)
		if key == "GET /slow" {
			timeout = 100 * time.Millisecond
		}
		r, _ := nanobus.ParseRoute(key)
		r.Timeout = timeout
		out = append(out, terminator.Route{Route: r, Service: service})
	}
	return out
}

// front starts a terminator on loopback ports, routing to the given nodes.
func front(t testing.TB, cfg terminator.Config, routes []terminator.Route, services ...*nanobus.Node) (*terminator.Server, *nanobus.Node) {
	t.Helper()
	return frontLog(t, cfg, quiet, routes, services...)
}

// frontLog is front logging to log.
func frontLog(t testing.TB, cfg terminator.Config, log *slog.Logger, routes []terminator.Route, services ...*nanobus.Node) (*terminator.Server, *nanobus.Node) {
	t.Helper()
	node := nanobustest.NewNode(t, nanobus.Config{})
	nanobustest.Connect(t, node, services...)
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	srv, err := terminator.New(cfg, node, log)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRoutes(routes)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Drain(ctx)
		srv.Close()
	})
	return srv, node
}

func get(t testing.TB, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	return do(t, "GET", url, "", header)
}

func do(t testing.TB, method, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	resp, b, err := fetch(method, url, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// fetch is do for goroutines, which must not call t.Fatal.
func fetch(method, url, body string, header map[string]string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// fetchStatus is "status body" of a request, or the error.
func fetchStatus(method, url string) string {
	resp, body, err := fetch(method, url, "", nil)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(resp.StatusCode, " ", body)
}

// rawRequest writes raw bytes to addr and returns the status line.
func rawRequest(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// Every row of the status table (docs/status-codes.md), produced for real.
func TestStatusTable(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	svc := echoService(t, "echo", release)
	ghost, _ := nanobus.ParseRoute("GET /ghost")
	routes := append(echoRoutes("echo"), terminator.Route{Route: ghost, Service: "ghost"})
	srv, _ := front(t, terminator.Config{MaxBodyBytes: 1024, MaxHeaderBytes: 4096}, routes, svc)
	base := "http://" + srv.Addr()

	tests := []struct {
		name, method, path, body string
		header                   map[string]string
		want                     int
	}{
		{"routed", "GET", "/echo", "", nil, 200},
		{"no route", "GET", "/nowhere", "", nil, 404},
		{"wrong method", "DELETE", "/echo", "", nil, 405},
		{"no live instance", "GET", "/ghost", "", nil, 503},
		{"deadline", "GET", "/slow", "", nil, 504},
		{"body over the limit", "POST", "/echo", strings.Repeat("x", 2048), nil, 413},
		{"headers over the limit", "GET", "/echo", "", map[string]string{"X-Big": strings.Repeat("h", 5000)}, 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, base+tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
		})
	}
	if got := rawRequest(t, srv.Addr(), "GARBAGE\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400") {
		t.Fatalf("malformed request line: %q, want 400", got)
	}
}

// A peer lost mid-request: 502 for a POST (not retried), and a GET moves to
// the other instance.
func TestPeerLostMidRequest(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	dying := echoService(t, "echo", release)
	srv, node := front(t, terminator.Config{}, echoRoutes("echo"), dying)

	done := make(chan string, 1)
	go func() { done <- fetchStatus("POST", "http://"+srv.Addr()+"/block") }()
	eventually(t, "the request parked on the bus", func() bool { return node.Stats().InFlight == 1 })
	dying.Close()
	select {
	case got := <-done:
		if !strings.HasPrefix(got, "502 ") {
			t.Fatalf("got %q, want 502", got)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("request not failed at once after its peer died")
	}
}

// Busy: over the admission bound, 503 with Retry-After, at once.
func TestAdmissionLimit(t *testing.T) {
	release := make(chan struct{})
	svc := echoService(t, "echo", release)
	srv, _ := front(t, terminator.Config{MaxWaiting: 2}, echoRoutes("echo"), svc)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fetchStatus("POST", "http://"+srv.Addr()+"/block")
		}()
	}
	eventually(t, "two requests waiting", func() bool { return srv.Status().Waiting == 2 })
	start := time.Now()
	resp, _ := get(t, "http://"+srv.Addr()+"/echo", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if time.Since(start) > time.Second {
		t.Fatalf("refusal took %v: should be at once", time.Since(start))
	}
	close(release)
	wg.Wait()
}

// Over the limit a request waits for a turn, whatever the policy: a slot
// that frees goes to it; with none, it is refused with 503 and
// Retry-After after its wait, and leaves nothing queued. (Which waiter a
// standing queue serves first is nanobus/limit's test.)
func TestAdmissionQueue(t *testing.T) {
	for _, policy := range []limit.Policy{limit.CoDel, limit.FIFO} {
		t.Run(policy.String(), func(t *testing.T) {
			release := make(chan struct{})
			svc := echoService(t, "echo", release)
			srv, _ := front(t, terminator.Config{MaxWaiting: 1, FixedLimit: true, Admission: policy, QueueWait: time.Hour},
				echoRoutes("echo"), svc)
			blocked := make(chan string, 2)
			for range 2 {
				go func() { blocked <- fetchStatus("POST", "http://"+srv.Addr()+"/block") }()
			}
			eventually(t, "one request admitted, one queued", func() bool {
				st := srv.Status()
				return st.Waiting == 1 && st.Queued == 1 && st.Admission == policy.String()
			})
			release <- struct{}{} // the first's slot goes to the second
			eventually(t, "the queued request admitted", func() bool { return srv.Status().Queued == 0 })
			release <- struct{}{}
			for range 2 {
				if got := <-blocked; got != "200 released" {
					t.Fatalf("got %q, want 200 released", got)
				}
			}
		})
	}
	release := make(chan struct{})
	defer close(release)
	svc := echoService(t, "echo", release)
	srv, _ := front(t, terminator.Config{MaxWaiting: 1, FixedLimit: true, QueueWait: 50 * time.Millisecond},
		echoRoutes("echo"), svc)
	go fetchStatus("POST", "http://"+srv.Addr()+"/block")
	eventually(t, "one request admitted", func() bool { return srv.Status().Waiting == 1 })
	resp, body := get(t, "http://"+srv.Addr()+"/echo", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("status %d Retry-After %q (%s), want 503 with Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if st := srv.Status(); st.Queued != 0 || st.HTTP["overloaded"] != 1 {
		t.Fatalf("queued %d, overloaded %d; want 0, 1", st.Queued, st.HTTP["overloaded"])
	}
}

// Busy at the bus: the peer's in-flight credit is exhausted.
func TestPeerCreditExhausted(t *testing.T) {
	release := make(chan struct{})
	svc := echoService(t, "echo", release)
	node := nanobustest.NewNode(t, nanobus.Config{MaxInFlight: 1})
	nanobustest.Connect(t, node, svc)
	srv, err := terminator.New(terminator.Config{Listen: "127.0.0.1:0"}, node, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRoutes(echoRoutes("echo"))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	defer srv.Drain(context.Background())
	go fetchStatus("POST", "http://"+srv.Addr()+"/block")
	eventually(t, "one call in flight", func() bool { return node.Stats().InFlight == 1 })
	resp, _ := get(t, "http://"+srv.Addr()+"/echo", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, want 503 with Retry-After", resp.StatusCode)
	}
	close(release)
}

func TestForwarding(t *testing.T) {
	svc := echoService(t, "echo", nil)
	trusted, _ := terminator.ParsePrefixes("127.0.0.1")
	srv, _ := front(t, terminator.Config{TrustedProxies: trusted}, echoRoutes("echo"), svc)
	untrusted, _ := front(t, terminator.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, echoRoutes("echo"), svc)

	t.Run("request passes through", func(t *testing.T) {
		resp, body := do(t, "POST", "http://"+srv.Addr()+"/echo?a=1&b=2", "hello", map[string]string{
			"X-Custom": "yes", "Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"Keep-Alive": "timeout=5", "Proxy-Authorization": "secret", "Upgrade": "h2c", "Te": "trailers",
			"Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "named in Connection",
		})
		var s seen
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if s.Method != "POST" || s.Path != "/echo" || s.Query != "a=1&b=2" || s.Body != "hello" || s.Header["X-Custom"] != "yes" {
			t.Fatalf("service saw %+v", s)
		}
		if s.TraceParent != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
			t.Errorf("traceparent %q", s.TraceParent)
		}
		for _, h := range []string{"Keep-Alive", "Proxy-Authorization", "Upgrade", "Te", "Connection", "X-Drop-Me", "Transfer-Encoding"} {
			if v, ok := s.Header[h]; ok {
				t.Errorf("hop-by-hop header %s=%q crossed into the message", h, v)
			}
		}
		if resp.Header.Get("X-Service") != "echo" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("reply headers lost: %v", resp.Header)
		}
		if resp.Close {
			t.Error("the service's Connection: close reached the client")
		}
	})
	t.Run("request ID", func(t *testing.T) {
		resp, body := get(t, "http://"+srv.Addr()+"/echo", map[string]string{"X-Request-Id": "abc-123"})
		var s seen
		json.Unmarshal([]byte(body), &s)
		if resp.Header.Get("X-Request-Id") != "abc-123" || s.Header["X-Request-Id"] != "abc-123" {
			t.Fatalf("given ID: response %q, service %q", resp.Header.Get("X-Request-Id"), s.Header["X-Request-Id"])
		}
		resp, body = get(t, "http://"+srv.Addr()+"/echo", map[string]string{"X-Request-Id": "bad id <script>"})
		json.Unmarshal([]byte(body), &s)
		id := resp.Header.Get("X-Request-Id")
		if id == "" || id == "bad id <script>" || s.Header["X-Request-Id"] != id {
			t.Fatalf("generated ID: response %q, service %q", id, s.Header["X-Request-Id"])
		}
		resp2, _ := get(t, "http://"+srv.Addr()+"/echo", nil)
		if resp2.Header.Get("X-Request-Id") == id {
			t.Fatal("two requests got the same generated ID")
		}
	})
	t.Run("client address", func(t *testing.T) {
		xff := map[string]string{"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}
		_, body := get(t, "http://"+srv.Addr()+"/echo", xff)
		var s seen
		json.Unmarshal([]byte(body), &s)
		if s.Client != "203.0.113.7" {
			t.Errorf("behind a trusted proxy: client %q, want 203.0.113.7", s.Client)
		}
		_, body = get(t, "http://"+srv.Addr()+"/echo", map[string]string{"X-Real-Ip": "198.51.100.1"})
		json.Unmarshal([]byte(body), &s)
		if s.Client != "198.51.100.1" {
			t.Errorf("X-Real-IP from a trusted proxy: client %q", s.Client)
		}
		_, body = get(t, "http://"+untrusted.Addr()+"/echo", xff)
		s = seen{}
		json.Unmarshal([]byte(body), &s)
		if s.Client != "127.0.0.1" {
			t.Errorf("untrusted peer: client %q, want the peer's own address", s.Client)
		}
		if _, ok := s.Header["X-Forwarded-For"]; ok {
			t.Error("an untrusted peer's X-Forwarded-For reached the service")
		}
	})
	t.Run("path wildcard", func(t *testing.T) {
		_, body := get(t, "http://"+srv.Addr()+"/items/42", nil)
		var s seen
		json.Unmarshal([]byte(body), &s)
		if s.Path != "/items/42" {
			t.Fatalf("path %q", s.Path)
		}
	})
}

// Drain: readiness goes false, in-flight requests finish, new connections
// are refused.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	svc := echoService(t, "echo", release)
	srv, _ := front(t, terminator.Config{}, echoRoutes("echo"), svc)
	if err := srv.Ready(); err != nil {
		t.Fatalf("not ready before drain: %v", err)
	}
	inflight := make(chan string, 1)
	go func() { inflight <- fetchStatus("POST", "http://"+srv.Addr()+"/block") }()
	eventually(t, "request in flight", func() bool { return srv.Status().Waiting == 1 })
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- srv.Drain(ctx)
	}()
	eventually(t, "readiness false", func() bool { return srv.Ready() != nil })
	eventually(t, "new connections refused", func() bool {
		c, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if got := <-inflight; got != "200 released" {
		t.Fatalf("in-flight request during drain: %s", got)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

// The front's status: routes with their responses, the instances of their
// services, and the page that shows them.
func TestStatus(t *testing.T) {
	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{}, echoRoutes("echo"), svc)
	get(t, "http://"+srv.Addr()+"/echo", nil)
	st := srv.Status()
	b, _ := json.Marshal(st)
	if len(st.Services["echo"]) != 1 || !st.Services["echo"][0].Ready || !strings.Contains(string(b), `"pattern":"/items/{id}"`) ||
		!strings.Contains(string(b), `"2xx":1`) {
		t.Fatalf("status: %s", b)
	}
	var page strings.Builder
	if err := terminator.StatusPage.Execute(&page, st); err != nil || !strings.Contains(page.String(), "connected") {
		t.Fatalf("page: %v\n%s", err, page.String())
	}
}

var eventually = nanobustest.Eventually

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
