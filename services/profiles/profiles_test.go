package profiles_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/servicetest"
)

func start(t *testing.T, dir string) *servicetest.Service {
	return servicetest.Start(t, profiles.Service, profiles.Register, dir)
}

func profileJSON(t *testing.T, p profiles.Profile) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoutesDeclared(t *testing.T) {
	s := start(t, t.TempDir())
	want := []nanobus.Route{
		{Name: events.RouteRead, Timeout: 35 * time.Second, Stream: true}, // its events, read by subscribers
		{Name: profiles.RouteGet, Idempotent: true},
		{Name: profiles.RoutePut, Idempotent: true}, // a put stores the whole profile
	}
	if got := s.Node.Routes(); !slices.Equal(got, want) {
		t.Fatalf("routes %+v, want %+v", got, want)
	}
}

func TestGetAndPut(t *testing.T) {
	s := start(t, t.TempDir())
	ann := profiles.Profile{ID: "ann", Name: "Ann", Age: 30, City: "Lyon", Bio: "hiking", PhotoURL: "https://photos.example/ann.jpg"}
	with := func(f func(*profiles.Profile)) string {
		p := ann
		f(&p)
		return profileJSON(t, p)
	}
	steps := []struct {
		name, route, body string
		status            int
		bodyHas           string
	}{
		{"get before put", profiles.RouteGet, "ann", 404, "no profile ann"},
		{"get empty id", profiles.RouteGet, "", 400, "bad profile id"},
		{"get upper case id", profiles.RouteGet, "Ann", 400, "bad profile id"},
		{"get id with slash", profiles.RouteGet, "a/b", 400, "bad profile id"},
		{"get id too long", profiles.RouteGet, strings.Repeat("a", 65), 400, "bad profile id"},
		{"put new", profiles.RoutePut, profileJSON(t, ann), 201, `"id":"ann"`},
		{"put again", profiles.RoutePut, with(func(p *profiles.Profile) { p.City = "Berlin" }), 200, `"city":"Berlin"`},
		{"get", profiles.RouteGet, "ann", 200, `"city":"Berlin"`},
		{"put not json", profiles.RoutePut, "{", 400, "profile:"},
		{"put wrong type", profiles.RoutePut, `{"id":"x","age":"old"}`, 400, "profile:"},
		{"put bad id", profiles.RoutePut, with(func(p *profiles.Profile) { p.ID = "A" }), 400, "id:"},
		{"put empty id", profiles.RoutePut, with(func(p *profiles.Profile) { p.ID = "" }), 400, "id:"},
		{"put blank name", profiles.RoutePut, with(func(p *profiles.Profile) { p.Name = "  \t" }), 400, "name:"},
		{"put name too long", profiles.RoutePut, with(func(p *profiles.Profile) { p.Name = strings.Repeat("x", 101) }), 400, "name:"},
		{"put name 100 runes", profiles.RoutePut, with(func(p *profiles.Profile) { p.Name = strings.Repeat("é", 100) }), 200, `"name":"éé`},
		{"put age 17", profiles.RoutePut, with(func(p *profiles.Profile) { p.Age = 17 }), 400, "age:"},
		{"put age 121", profiles.RoutePut, with(func(p *profiles.Profile) { p.Age = 121 }), 400, "age:"},
		{"put age 18", profiles.RoutePut, with(func(p *profiles.Profile) { p.Age = 18 }), 200, `"age":18`},
		{"put city too long", profiles.RoutePut, with(func(p *profiles.Profile) { p.City = strings.Repeat("c", 101) }), 400, "city:"},
		{"put bio too long", profiles.RoutePut, with(func(p *profiles.Profile) { p.Bio = strings.Repeat("ü", 2001) }), 400, "bio:"},
		{"put bio 2000 runes", profiles.RoutePut, with(func(p *profiles.Profile) { p.Bio = strings.Repeat("ü", 2000) }), 200, `"bio":"üü`},
		{"put photo ftp", profiles.RoutePut, with(func(p *profiles.Profile) { p.PhotoURL = "ftp://x/y.jpg" }), 400, "photo_url:"},
		{"put photo without host", profiles.RoutePut, with(func(p *profiles.Profile) { p.PhotoURL = "https:///y.jpg" }), 400, "photo_url:"},
		{"put photo too long", profiles.RoutePut, with(func(p *profiles.Profile) { p.PhotoURL = "https://x/" + strings.Repeat("y", 491) }), 400, "photo_url:"},
		{"put no photo", profiles.RoutePut, with(func(p *profiles.Profile) { p.PhotoURL = "" }), 200, `"photo_url":""`},
		{"get after refused puts", profiles.RouteGet, "ann", 200, `"photo_url":""`},
	}
	for _, st := range steps {
		status, body := s.Call(t, st.route, st.body)
		if status != st.status || !strings.Contains(body, st.bodyHas) {
			t.Errorf("%s: got %d %.200s, want %d with %q", st.name, status, body, st.status, st.bodyHas)
		}
	}
}

// The stored JSON is what get answers: the profile as put, with the time
// of the put.
func TestGetAnswersTheStoredProfile(t *testing.T) {
	s := start(t, t.TempDir())
	before := time.Now().UTC().Add(-time.Second)
	put := profiles.Profile{ID: "b-1", Name: "Ben", Age: 44, Bio: "jazz", Updated: time.Unix(1, 0)}
	if status, body := s.Call(t, profiles.RoutePut, profileJSON(t, put)); status != 201 {
		t.Fatalf("put: %d %s", status, body)
	}
	resp, err := s.Caller.Call(context.Background(), profiles.Service, profiles.RouteGet, []byte("b-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if ct := string(resp.Header.Get("Content-Type")); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got profiles.Profile
	if err := json.Unmarshal(resp.Body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Updated.Before(before) { // the service sets it, whatever the caller sent
		t.Errorf("updated %v, want the time of the put", got.Updated)
	}
	got.Updated = put.Updated
	if got != put {
		t.Errorf("got %+v, want %+v", got, put)
	}
}

// Concurrent puts of one new profile: exactly one creates it.
func TestConcurrentPutsCreateOnce(t *testing.T) {
	s := start(t, t.TempDir())
	const n = 16
	body := profileJSON(t, profiles.Profile{ID: "c", Name: "Chloe", Age: 25})
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := s.Caller.Call(context.Background(), profiles.Service, profiles.RoutePut, []byte(body))
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- resp.Status
			resp.Release()
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for st := range statuses {
		count[st]++
	}
	if count[201] != 1 || count[200] != n-1 {
		t.Fatalf("statuses %v, want one 201 and %d 200", count, n-1)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := start(t, dir)
	body := profileJSON(t, profiles.Profile{ID: "d", Name: "Dario", Age: 51, City: "Turin"})
	if status, reply := s.Call(t, profiles.RoutePut, body); status != 201 {
		t.Fatalf("put: %d %s", status, reply)
	}
	_, stored := s.Call(t, profiles.RouteGet, "d")
	s.Stop()

	s = start(t, dir)
	if status, got := s.Call(t, profiles.RouteGet, "d"); status != 200 || got != stored {
		t.Fatalf("after reopen: %d %s, want 200 %s", status, got, stored)
	}
	if status, _ := s.Call(t, profiles.RoutePut, body); status != 200 {
		t.Fatalf("put after reopen: %d, want 200 (it exists)", status)
	}
}
