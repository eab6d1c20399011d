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
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/servicetest"
	"github.com/terminator-gw/terminator/services/visits"
)

func start(t *testing.T, dir string) *servicetest.Service {
	return servicetest.Start(t, visits.Service, visits.Register, dir)
}

func visit(profile, visitor string) string {
	b, _ := json.Marshal(visits.Visit{Profile: profile, Visitor: visitor})
	return string(b)
}

func count(t *testing.T, s *servicetest.Service, profile string) int {
	t.Helper()
	status, body := s.Call(t, visits.RouteCount, profile)
	var c visits.Count
	if err := json.Unmarshal([]byte(body), &c); status != 200 || err != nil {
		t.Fatalf("count %s: %d %s", profile, status, body)
	}
	return c.Count
}

// visitors lists profile's visitors, newest first.
func visitors(t *testing.T, s *servicetest.Service, profile string, limit int) []string {
	t.Helper()
	b, _ := json.Marshal(visits.ListRequest{Profile: profile, Limit: limit})
	status, body := s.Call(t, visits.RouteList, string(b))
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
		{Name: events.RouteRead, Timeout: 35 * time.Second, Stream: true}, // its events, read by subscribers
		{Name: visits.RouteCount, Idempotent: true},
		{Name: visits.RouteList, Idempotent: true},
		{Name: visits.RouteRecord}, // a retry would count the visit twice
	}
	if got := s.Node.Routes(); !slices.Equal(got, want) {
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
		status, body := s.Call(t, st.route, st.body)
		if status != st.status || !strings.Contains(body, st.bodyHas) {
			t.Errorf("%s: got %d %s, want %d with %q", st.name, status, body, st.status, st.bodyHas)
		}
	}
	if got, want := visitors(t, s, "1", 0), []string{"2", "3", "2"}; !slices.Equal(got, want) {
		t.Errorf("visitors of 1, newest first: %v, want %v", got, want)
	}
	if got, want := visitors(t, s, "1", 1), []string{"2"}; !slices.Equal(got, want) {
		t.Errorf("latest visitor of 1: %v, want %v", got, want)
	}
	if got := visitors(t, s, "3", 0); len(got) != 0 {
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
			if status, body := s.Call(t, visits.RouteRecord, visit("p", fmt.Sprint("v", i))); status != 200 {
				t.Errorf("visit %d: %d %s", i, status, body)
			}
		})
	}
	wg.Wait()
	if c := count(t, s, "p"); c != n {
		t.Errorf("count %d, want %d", c, n)
	}
	got := visitors(t, s, "p", 0)
	slices.Sort(got)
	if got = slices.Compact(got); len(got) != n {
		t.Errorf("%d distinct visitors listed, want %d", len(got), n)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	for _, v := range []string{"a", "b"} {
		if status, body := s.Call(t, visits.RouteRecord, visit("p", v)); status != 200 {
			t.Fatalf("visit: %d %s", status, body)
		}
	}
	s.Stop()

	s = start(t, dir)
	if c := count(t, s, "p"); c != 2 {
		t.Errorf("count after reopen %d, want 2", c)
	}
	if got, want := visitors(t, s, "p", 0), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("visitors after reopen %v, want %v", got, want)
	}
	if status, body := s.Call(t, visits.RouteRecord, visit("p", "c")); status != 200 || body != `{"count":3}` {
		t.Errorf("visit after reopen: %d %s, want the count to go on: 3", status, body)
	}
}
