package flirts_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/flirts"
	"github.com/terminator-gw/terminator/services/servicetest"
)

func start(t *testing.T, dir string) *servicetest.Service {
	return servicetest.Start(t, flirts.Service, flirts.Register, dir)
}

func flirt(from, to, message string) string {
	b, _ := json.Marshal(flirts.Flirt{From: from, To: to, Message: message})
	return string(b)
}

func count(t *testing.T, s *servicetest.Service, profile string) int {
	t.Helper()
	status, body := s.Call(t, flirts.RouteCount, profile)
	var c flirts.Count
	if err := json.Unmarshal([]byte(body), &c); status != 200 || err != nil {
		t.Fatalf("count %s: %d %s", profile, status, body)
	}
	return c.Count
}

func received(t *testing.T, s *servicetest.Service, profile string) []flirts.Flirt {
	t.Helper()
	b, _ := json.Marshal(flirts.ListRequest{Profile: profile})
	status, body := s.Call(t, flirts.RouteList, string(b))
	var r flirts.Received
	if err := json.Unmarshal([]byte(body), &r); status != 200 || err != nil {
		t.Fatalf("list %s: %d %s", profile, status, body)
	}
	return r.Flirts
}

func TestRoutesDeclared(t *testing.T) {
	s := start(t, t.TempDir())
	want := []nanobus.Route{
		{Name: events.RouteRead, Timeout: 35 * time.Second, Stream: true}, // its events, read by subscribers
		{Name: flirts.RouteCount, Idempotent: true},
		{Name: flirts.RouteList, Idempotent: true},
		{Name: flirts.RouteSend}, // a retry would answer 409 to a flirt that went through
	}
	if got := s.Node.Routes(); !slices.Equal(got, want) {
		t.Fatalf("routes %+v, want %+v", got, want)
	}
}

func TestSendCountList(t *testing.T) {
	s := start(t, t.TempDir())
	steps := []struct {
		name, route, body string
		status            int
		bodyHas           string
	}{
		{"count before", flirts.RouteCount, "ann", 200, `{"count":0}`},
		{"send", flirts.RouteSend, flirt("ben", "ann", "  hi there  "), 201, `{"count":1}`},
		{"send again", flirts.RouteSend, flirt("ben", "ann", "hi again"), 409, "ben already flirted with ann"},
		{"the other way", flirts.RouteSend, flirt("ann", "ben", "hi"), 201, `{"count":1}`},
		{"another sender", flirts.RouteSend, flirt("cy", "ann", ""), 201, `{"count":2}`},
		{"500 runes", flirts.RouteSend, flirt("dee", "ann", strings.Repeat("ö", 500)), 201, `{"count":3}`},
		{"501 runes", flirts.RouteSend, flirt("eve", "ann", strings.Repeat("ö", 501)), 400, "message at most 500"},
		{"not json", flirts.RouteSend, "[]", 400, "flirt:"},
		{"bad from", flirts.RouteSend, flirt("Eve", "ann", ""), 400, "bad from or to"},
		{"bad to", flirts.RouteSend, flirt("eve", "", ""), 400, "bad from or to"},
		{"self", flirts.RouteSend, flirt("ann", "ann", ""), 400, "not with oneself"},
		{"count bad id", flirts.RouteCount, "a b", 400, "bad profile id"},
		{"list bad body", flirts.RouteList, "{", 400, "list:"},
		{"count", flirts.RouteCount, "ann", 200, `{"count":3}`},
		{"count of the other", flirts.RouteCount, "ben", 200, `{"count":1}`},
	}
	for _, st := range steps {
		status, body := s.Call(t, st.route, st.body)
		if status != st.status || !strings.Contains(body, st.bodyHas) {
			t.Errorf("%s: got %d %.100s, want %d with %q", st.name, status, body, st.status, st.bodyHas)
		}
	}
	got := received(t, s, "ann")
	var from []string
	for _, f := range got {
		from = append(from, f.From)
		if f.To != "ann" || f.At.IsZero() {
			t.Errorf("listed flirt %+v", f)
		}
	}
	if want := []string{"ben", "cy", "dee"}; !slices.Equal(from, want) {
		t.Errorf("flirts received by ann from %v, want %v", from, want)
	}
	if len(got) > 0 && got[0].Message != "hi there" {
		t.Errorf("message %q: want it trimmed, and the first one kept", got[0].Message)
	}
}

// One flirt per pair holds under concurrent sends: one 201, the rest 409.
// Different senders at once are all counted.
func TestConcurrentSends(t *testing.T) {
	s := start(t, t.TempDir())
	const n = 16
	statuses := make(chan int, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			st, _ := s.Call(t, flirts.RouteSend, flirt("x", "y", fmt.Sprint("try ", i)))
			statuses <- st
		})
		wg.Go(func() {
			if st, body := s.Call(t, flirts.RouteSend, flirt(fmt.Sprint("s", i), "z", "")); st != 201 {
				t.Errorf("sender %d: %d %s", i, st, body)
			}
		})
	}
	wg.Wait()
	close(statuses)
	seen := map[int]int{}
	for st := range statuses {
		seen[st]++
	}
	if seen[201] != 1 || seen[409] != n-1 {
		t.Errorf("one pair sent %d times at once: statuses %v, want one 201 and %d 409", n, seen, n-1)
	}
	if c := count(t, s, "y"); c != 1 {
		t.Errorf("count of y %d, want 1", c)
	}
	if c := count(t, s, "z"); c != n {
		t.Errorf("count of z %d, want %d", c, n)
	}
	if l := received(t, s, "z"); len(l) != n {
		t.Errorf("z received %d flirts, want %d", len(l), n)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	if status, body := s.Call(t, flirts.RouteSend, flirt("a", "b", "hello")); status != 201 {
		t.Fatalf("send: %d %s", status, body)
	}
	s.Stop()

	s = start(t, dir)
	if c := count(t, s, "b"); c != 1 {
		t.Errorf("count after reopen %d, want 1", c)
	}
	if l := received(t, s, "b"); len(l) != 1 || l[0].From != "a" || l[0].Message != "hello" {
		t.Errorf("received after reopen %+v", l)
	}
	if status, _ := s.Call(t, flirts.RouteSend, flirt("a", "b", "again")); status != 409 {
		t.Errorf("the same pair after reopen: %d, want 409", status)
	}
}
