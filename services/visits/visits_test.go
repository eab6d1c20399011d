package visits_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/visits"
)

// service runs the visit service over a Pebble store in dir, with a caller
// connected to it. stop closes both before the test ends (to open the
// store again).
type service struct {
	caller, node *nanobus.Node
	stop         func()
}

func start(t *testing.T, dir string) service {
	t.Helper()
	st, err := store.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	caller, node := nanobustest.Pair(t, visits.Service, func(n *nanobus.Node) error { return visits.Register(n, st) })
	stop := func() { node.Close(); st.Close() }
	t.Cleanup(stop)
	return service{caller, node, stop}
}

func (s service) call(t *testing.T, route, body string) (int, string) {
	t.Helper()
	resp, err := s.caller.Call(nanobustest.Context(t, 10*time.Second), visits.Service, route, []byte(body))
	if err != nil {
		t.Errorf("%s %s: %v", route, body, err)
		return 0, ""
	}
	defer resp.Release()
	return resp.Status, string(resp.Body)
}

func visit(profile, visitor string) string {
	b, _ := json.Marshal(visits.Visit{Profile: profile, Visitor: visitor})
	return string(b)
}

func (s service) count(t *testing.T, profile string) int {
	t.Helper()
	status, body := s.call(t, visits.RouteCount, profile)
	var c visits.Count
	if err := json.Unmarshal([]byte(body), &c); status != 200 || err != nil {
		t.Fatalf("count %s: %d %s", profile, status, body)
	}
	return c.Count
}

// visitors lists profile's visitors, newest first.
func (s service) visitors(t *testing.T, profile string, limit int) []string {
	t.Helper()
	b, _ := json.Marshal(visits.ListRequest{Profile: profile, Limit: limit})
	status, body := s.call(t, visits.RouteList, string(b))
	var l visits.Visitors
	if err := json.Unmarshal([]byte(body), &l); status != 200 || err != nil {
		t.Fatalf("list %s: %d %s", profile, status, body)
	}
	var out []string
	for _, v := range l.Visits {
		if v.Profile != profile || v.At.IsZero() {
			t.Errorf("listed visit %+v of %s", v, profile)
		}
		out = append(out, v.Visitor)
	}
	return out
}

func TestRoutesDeclared(t *testing.T) {
	s := start(t, t.TempDir())
	want := []nanobus.Route{
		{Name: visits.RouteCount, Idempotent: true},
		{Name: visits.RouteList, Idempotent: true},
		{Name: visits.RouteRecord}, // a retry would count the visit twice
	}
	if got := s.node.Routes(); !slices.Equal(got, want) {
		t.Fatalf("routes %+v, want %+v", got, want)
	}
}

func TestRecordCountList(t *testing.T) {
	s := start(t, t.TempDir())
	steps := []struct {
		name, route, body string
		status            int
		bodyHas           string
	}{
		{"count before", visits.RouteCount, "1", 200, `{"count":0}`},
		{"first visit", visits.RouteRecord, visit("1", "2"), 200, `{"count":1}`},
		{"second visit", visits.RouteRecord, visit("1", "3"), 200, `{"count":2}`},
		{"same visitor again", visits.RouteRecord, visit("1", "2"), 200, `{"count":3}`},
		{"another profile", visits.RouteRecord, visit("2", "1"), 200, `{"count":1}`},
		{"count", visits.RouteCount, "1", 200, `{"count":3}`},
		{"record not json", visits.RouteRecord, "{", 400, "visit:"},
		{"record bad profile", visits.RouteRecord, visit("A", "2"), 400, "bad profile or visitor"},
		{"record bad visitor", visits.RouteRecord, visit("1", "x/y"), 400, "bad profile or visitor"},
		{"record no visitor", visits.RouteRecord, `{"profile":"1"}`, 400, "bad profile or visitor"},
		{"record self", visits.RouteRecord, visit("1", "1"), 400, "does not visit itself"},
		{"count bad id", visits.RouteCount, "", 400, "bad profile id"},
		{"list bad body", visits.RouteList, "1", 400, "list:"},
		{"list bad id", visits.RouteList, `{"profile":"Ä"}`, 400, "list:"},
		{"count after refusals", visits.RouteCount, "1", 200, `{"count":3}`},
	}
	for _, st := range steps {
		status, body := s.call(t, st.route, st.body)
		if status != st.status || !strings.Contains(body, st.bodyHas) {
			t.Errorf("%s: got %d %s, want %d with %q", st.name, status, body, st.status, st.bodyHas)
		}
	}
	if got, want := s.visitors(t, "1", 0), []string{"2", "3", "2"}; !slices.Equal(got, want) {
		t.Errorf("visitors of 1, newest first: %v, want %v", got, want)
	}
	if got, want := s.visitors(t, "1", 1), []string{"2"}; !slices.Equal(got, want) {
		t.Errorf("latest visitor of 1: %v, want %v", got, want)
	}
	if got := s.visitors(t, "3", 0); len(got) != 0 {
		t.Errorf("visitors of 3: %v, want none", got)
	}
}

// Concurrent visits to one profile are all counted and all listed.
func TestConcurrentVisitsAllCount(t *testing.T) {
	s := start(t, t.TempDir())
	const n = 24
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if status, body := s.call(t, visits.RouteRecord, visit("p", fmt.Sprint("v", i))); status != 200 {
				t.Errorf("visit %d: %d %s", i, status, body)
			}
		})
	}
	wg.Wait()
	if c := s.count(t, "p"); c != n {
		t.Errorf("count %d, want %d", c, n)
	}
	got := s.visitors(t, "p", 0)
	slices.Sort(got)
	if got = slices.Compact(got); len(got) != n {
		t.Errorf("%d distinct visitors listed, want %d", len(got), n)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	for _, v := range []string{"a", "b"} {
		if status, body := s.call(t, visits.RouteRecord, visit("p", v)); status != 200 {
			t.Fatalf("visit: %d %s", status, body)
		}
	}
	s.stop()

	s = start(t, dir)
	if c := s.count(t, "p"); c != 2 {
		t.Errorf("count after reopen %d, want 2", c)
	}
	if got, want := s.visitors(t, "p", 0), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("visitors after reopen %v, want %v", got, want)
	}
	if status, body := s.call(t, visits.RouteRecord, visit("p", "c")); status != 200 || body != `{"count":3}` {
		t.Errorf("visit after reopen: %d %s, want the count to go on: 3", status, body)
	}
}
