package peers

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/terminator-gw/terminator/services/notifications"
	"github.com/terminator-gw/terminator/services/store"
)

func TestComposePage(t *testing.T) {
	tests := []struct {
		name   string
		counts *notifications.Counts
		want   string
	}{
		{"counts", &notifications.Counts{Visits: 2}, `{"profile":{"id":"7"},"visits":2,"flirts":0}`},
		{"missing", nil, `{"profile":{"id":"7"},"missing":["visits","flirts"]}`},
	}
	for _, tc := range tests {
		if got := string(ComposePage([]byte(`{"id":"7"}`), tc.counts)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// openSeeded opens the domain stores under a temp dir with two profiles:
// 7, visited twice, and 9, never counted.
func openSeeded(t *testing.T) map[string]*Domain {
	t.Helper()
	dir := t.TempDir()
	for role, kv := range map[string][2]string{
		RoleProfiles: {"p/7", `{"id":"7","name":"Luca"}`},
		RoleCounts:   {"c/7", `{"visits":2,"flirts":0}`},
	} {
		s, err := store.OpenPebble(filepath.Join(dir, role))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put(kv[0], []byte(kv[1])) }); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	out := map[string]*Domain{}
	for _, role := range DomainRoles {
		d, err := OpenDomain(role, dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		out[role] = d
	}
	if _, err := OpenDomain("web", dir); err == nil {
		t.Error("web is not a domain role: want an error")
	}
	return out
}

func TestDomainAnswers(t *testing.T) {
	d := openSeeded(t)
	ctx := context.Background()
	tests := []struct {
		role, id, want string
		status         int
	}{
		{RoleProfiles, "7", `{"id":"7","name":"Luca"}`, 0},
		{RoleProfiles, "8", "", 404},
		{RoleProfiles, "Bad", "", 400},
		{RoleCounts, "7", `{"visits":2,"flirts":0}`, 0},
		{RoleCounts, "9", `{"visits":0,"flirts":0}`, 0},
		{RoleCounts, "Bad", "", 400},
	}
	for _, tc := range tests {
		got, err := d[tc.role].Answer(ctx, tc.id)
		var se *StatusError
		switch {
		case tc.status != 0 && (!errors.As(err, &se) || se.Status != tc.status):
			t.Errorf("%s %s: err %v, want status %d", tc.role, tc.id, err, tc.status)
		case tc.status == 0 && (err != nil || string(got) != tc.want):
			t.Errorf("%s %s: %s, %v; want %s", tc.role, tc.id, got, err, tc.want)
		}
	}
}

// get serves h in memory and asks it for path.
func get(t *testing.T, h fasthttp.RequestHandler, path string) (int, string) {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := NewServer(h)
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	defer srv.Shutdown()
	c := &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	status, body, err := c.Get(nil, "http://peers"+path)
	if err != nil {
		t.Fatal(err)
	}
	return status, string(body)
}

// The aggregator's answers, with the domain services called in process:
// a failed count is left out, a refused profile is the page's status.
func TestAggregator(t *testing.T) {
	d := openSeeded(t)
	direct := func(ctx context.Context, role, id string) ([]byte, error) { return d[role].Answer(ctx, id) }
	countsDown := func(ctx context.Context, role, id string) ([]byte, error) {
		if role == RoleCounts {
			return nil, errors.New("connection refused")
		}
		return direct(ctx, role, id)
	}
	tests := []struct {
		name   string
		call   Caller
		path   string
		status int
		body   string
	}{
		{"page", direct, "/profiles/7", 200, `{"profile":{"id":"7","name":"Luca"},"visits":2,"flirts":0}`},
		{"degraded", countsDown, "/profiles/7", 200, `{"profile":{"id":"7","name":"Luca"},"missing":["visits","flirts"]}`},
		{"unknown profile", direct, "/profiles/8", 404, "no profile 8"},
		{"bad id", direct, "/profiles/Bad", 400, `bad profile id "Bad"`},
		{"no route", direct, "/elsewhere", 404, "no route for GET /elsewhere"},
	}
	for _, tc := range tests {
		status, body := get(t, NewAggregator(tc.call, 0).Handle, tc.path)
		if status != tc.status || body != tc.body {
			t.Errorf("%s: %d %s, want %d %s", tc.name, status, body, tc.status, tc.body)
		}
	}
	// The HTTP service answers the same as the domain.
	if status, body := get(t, HTTPService(d[RoleCounts]), "/notifications.counts/7"); status != 200 || body != `{"visits":2,"flirts":0}` {
		t.Errorf("HTTP counts: %d %s", status, body)
	}
}
