package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services"
	"github.com/terminator-gw/terminator/services/notifications"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/servicetest"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/web"
	"github.com/terminator-gw/terminator/terminator"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type stack struct {
	base  string
	nodes map[string]*nanobus.Node
	web   *nanobus.Node
	buses []*events.Bus // the domain services' events
}

func node(t testing.TB, service string) *nanobus.Node {
	return nanobustest.NewNode(t, nanobus.Config{Service: service})
}

var link = nanobustest.Connect

// newStack runs the real domain services (real stores), the aggregator and
// a terminator in front, over real loopback sockets. domain, when given,
// replaces the real domain services.
func newStack(t testing.TB, timeout time.Duration, domain ...*nanobus.Node) *stack {
	t.Helper()
	s := &stack{nodes: map[string]*nanobus.Node{}}
	if len(domain) == 0 {
		var buses []*events.Bus
		for _, svc := range services.All() {
			if !svc.Stateful { // the domain services
				continue
			}
			st, err := store.OpenPebble(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			n := node(t, svc.Name)
			ev := servicetest.Bus(t, n, st)
			must(t, svc.Register(n, st, ev))
			t.Cleanup(func() { ev.Close(); n.Close(); st.Close() })
			domain = append(domain, n)
			buses = append(buses, ev)
		}
		// The subscribers reach the publishers, then read.
		for _, n := range domain {
			link(t, n, domain...)
		}
		for _, ev := range buses {
			ev.Start()
		}
		s.buses = buses
	}
	for _, n := range domain {
		s.nodes[n.Service()] = n
	}
	s.web = node(t, web.Service)
	must(t, web.Register(s.web))
	link(t, s.web, domain...)

	front := node(t, "")
	link(t, front, s.web)
	srv, err := terminator.New(terminator.Config{Listen: "127.0.0.1:0", Timeout: timeout, MaxBodyBytes: 64 << 10}, front, quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRoutes(terminator.PublicRoutes(s.web.Peer()))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Drain(context.Background()); srv.Close() })
	s.base = "http://" + srv.Addr()
	return s
}

// waitDown waits until web sees no live instance of service.
func (s *stack) waitDown(t *testing.T, service string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		up := false
		for _, p := range s.web.Instances(service) {
			up = up || p.Ready
		}
		if !up {
			return
		}
	}
	t.Fatalf("web still sees %s up", service)
}

func (s *stack) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// doHeadOnly sends the request line and headers (with the body's length)
// but not the body, and reads the answer. A server refusing a body from its
// Content-Length closes the connection; had the client been sending the
// body, it could see a reset instead of the answer.
func (s *stack) doHeadOnly(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", method, path, len(body))
	req, _ := http.NewRequest(method, path, nil)
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProfileLifecycle(t *testing.T) {
	s := newStack(t, 3*time.Second)
	steps := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"PUT", "/profiles/ann", `{"name":"Ann","age":31,"city":"Lyon","bio":"hiker","photo_url":"https://p.example/a.jpg"}`, 201, `"name":"Ann"`},
		{"PUT", "/profiles/ann", `{"name":"Ann","age":32,"city":"Lyon"}`, 200, `"age":32`},
		{"PUT", "/profiles/bob", `{"name":"Bob","age":40}`, 201, `"bob"`},
		{"POST", "/profiles/ann/visits", `{"visitor":"bob"}`, 200, `{"count":1}`},
		{"POST", "/profiles/ann/visits", `{"visitor":"bob"}`, 200, `{"count":2}`},
		{"POST", "/profiles/ann/flirts", `{"from":"bob","message":"hi"}`, 201, `{"count":1}`},
		{"POST", "/profiles/ann/flirts", `{"from":"bob","message":"hi again"}`, 409, "already"},
		{"GET", "/profiles/ann/visitors", "", 200, `"visitor":"bob"`},
		// Bad input: clear 4xx answers.
		{"GET", "/profiles/nobody", "", 404, "no profile"},
		{"GET", "/profiles/BAD!", "", 400, "bad profile id"},
		{"PUT", "/profiles/ann", `{"name":`, 400, "body"},
		{"PUT", "/profiles/ann", `{"name":"Ann","age":"old"}`, 400, "body"},
		{"PUT", "/profiles/ann", `{"name":"Ann","age":12}`, 400, "age"},
		{"PUT", "/profiles/ann", `{"name":"Ann","age":30,"photo_url":"javascript:alert(1)"}`, 400, "photo_url"},
		{"PUT", "/profiles/ann", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, 413, ""},
		{"POST", "/profiles/ann/visits", `{"visitor":"ghost"}`, 404, "no profile ghost"},
		{"POST", "/profiles/ann/visits", `{"visitor":"ann"}`, 400, "itself"},
		{"POST", "/profiles/ann/flirts", `{"from":"bob","message":"` + strings.Repeat("x", 600) + `"}`, 400, "message"},
		// ...and the stored data is intact.
		{"GET", "/profiles/ann", "", 200, `"age":32,"city":"Lyon"`},
	}
	for _, st := range steps {
		do := s.do
		if st.want == 413 {
			do = s.doHeadOnly
		}
		code, body := do(t, st.method, st.path, st.body)
		if code != st.want || !strings.Contains(body, st.contains) {
			t.Fatalf("%s %s %.60s: %d %.200s, want %d containing %q", st.method, st.path, st.body, code, body, st.want, st.contains)
		}
	}
	// The page's counts are the notifications service's projection of the
	// events: they arrive a moment after the writes' answers.
	nanobustest.Eventually(t, "ann's page counts", func() bool {
		code, body := s.do(t, "GET", "/profiles/ann", "")
		return code == 200 && strings.HasSuffix(body, `,"visits":2,"flirts":1}`)
	})
	// The notifications are the events' projection: who visited and who
	// flirted, in order, named, and only after ?since=.
	var feed notifications.Feed
	nanobustest.Eventually(t, "ann's notifications", func() bool {
		code, body := s.do(t, "GET", "/profiles/ann/notifications", "")
		feed = notifications.Feed{}
		return code == 200 && json.Unmarshal([]byte(body), &feed) == nil && len(feed.Items) == 3
	})
	// Visits and flirts are two services' logs, applied as each comes: the
	// feed keeps each one's order, not an order across them.
	var got []string
	for i, it := range feed.Items {
		if it.ID != uint64(i+1) {
			t.Errorf("item %d has id %d", i, it.ID)
		}
		got = append(got, fmt.Sprintf("%s %s %s", it.Kind, it.From, it.FromName))
	}
	slices.Sort(got)
	if want := "[flirt bob Bob visit bob Bob visit bob Bob]"; fmt.Sprint(got) != want || feed.Last != 3 {
		t.Errorf("notifications %v last %d, want %s last 3", got, feed.Last, want)
	}
	if code, body := s.do(t, "GET", "/profiles/ann/notifications?since=2", ""); code != 200 || !strings.Contains(body, `"id":3,`) || strings.Contains(body, `"id":2`) {
		t.Errorf("since=2: %d %s", code, body)
	}
	if code, body := s.do(t, "GET", "/profiles/ann/notifications?since=x", ""); code != 400 {
		t.Errorf("since=x: %d %s, want 400", code, body)
	}
	s.writeEdges(t)
}

// writeEdges writes the cascade graph's edges the stack's events carried
// to the file $TERMINATOR_EDGES_OUT names, if any (make graph marks the
// others untested).
func (s *stack) writeEdges(t *testing.T) {
	out := os.Getenv("TERMINATOR_EDGES_OUT")
	if out == "" {
		return
	}
	var edges []events.Edge
	for _, ev := range s.buses {
		for e := range ev.Exercised() {
			edges = append(edges, e)
		}
	}
	slices.SortFunc(edges, func(a, b events.Edge) int { return strings.Compare(a.From+" "+a.To, b.From+" "+b.To) })
	b, err := json.MarshalIndent(edges, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The page's two downstream calls run at once: each domain handler waits
// until both are in, which only happens if they are in flight together.
func TestPageFansOutInParallel(t *testing.T) {
	var arrived atomic.Int32
	all := make(chan struct{})
	barrier := func(body []byte) nanobus.Handler {
		return func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			if arrived.Add(1) == 2 {
				close(all)
			}
			select {
			case <-all:
			case <-ctx.Done():
				return nanobus.Reply{}, ctx.Err()
			}
			return nanobus.Reply{Body: body}, nil
		}
	}
	p, c := node(t, profiles.Service), node(t, notifications.Service)
	must(t, p.Handle(profiles.RouteGet, barrier([]byte(`{"id":"x","name":"X","age":30}`))))
	must(t, c.Handle(notifications.RouteCounts, barrier([]byte(`{"visits":4,"flirts":2}`))))
	s := newStack(t, 2*time.Second, p, c)

	code, body := s.do(t, "GET", "/profiles/x", "")
	var page web.Page
	if err := json.Unmarshal([]byte(body), &page); err != nil || code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if page.Visits == nil || *page.Visits != 4 || page.Flirts == nil || *page.Flirts != 2 || len(page.Missing) != 0 {
		t.Fatalf("page %s: the calls did not all run at once", body)
	}
}

// Without the counts the page degrades: they are missing and named;
// without the profile itself the page fails.
func TestPageDegrades(t *testing.T) {
	s := newStack(t, time.Second)
	if code, body := s.do(t, "PUT", "/profiles/ann", `{"name":"Ann","age":31}`); code != 201 {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := s.do(t, "GET", "/profiles/ann", ""); code != 200 || !strings.HasSuffix(body, `,"visits":0,"flirts":0}`) {
		t.Fatalf("page before any visit: %d %s", code, body)
	}

	// A slow (not dead) counts service is cut off at its share of the
	// deadline.
	slow := node(t, notifications.Service)
	must(t, slow.Handle(notifications.RouteCounts, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		<-ctx.Done()
		return nanobus.Reply{}, ctx.Err()
	}))
	s.web.RemovePeer(nanobus.Peer{Service: notifications.Service, Addr: s.nodes[notifications.Service].Addr()})
	link(t, s.web, slow)
	code, body := s.do(t, "GET", "/profiles/ann", "")
	var page web.Page
	if err := json.Unmarshal([]byte(body), &page); err != nil || code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if page.Visits != nil || page.Flirts != nil || fmt.Sprint(page.Missing) != "[visits flirts]" {
		t.Fatalf("with the counts timing out: %s, want both missing and named", body)
	}

	// With no counts service at all, the same.
	slow.Close()
	s.waitDown(t, notifications.Service)
	if code, body := s.do(t, "GET", "/profiles/ann", ""); code != 200 || !strings.Contains(body, `"missing":["visits","flirts"]`) {
		t.Fatalf("without the counts service: %d %s", code, body)
	}

	s.nodes[profiles.Service].Close()
	s.waitDown(t, profiles.Service)
	if code, body := s.do(t, "GET", "/profiles/ann", ""); code != 503 {
		t.Fatalf("without the profile service: %d %s, want 503", code, body)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
