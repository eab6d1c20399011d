package echo_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services/echo"
	"github.com/terminator-gw/terminator/wire"
)

func do(t *testing.T, caller *nanobus.Node, method, query, body string) (int, string, error) {
	t.Helper()
	req := &wire.Request{Route: []byte(method + " /echo"), Method: []byte(method), Path: []byte("/echo"),
		Query: []byte(query), Body: []byte(body)}
	resp, err := caller.Do(nanobustest.Context(t, 10*time.Second), echo.Service, req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Release()
	return resp.Status, string(resp.Body), nil
}

func TestRoutesDeclared(t *testing.T) {
	_, svc := nanobustest.Pair(t, echo.Service, echo.Register)
	want := []nanobus.Route{
		{Name: "GET /echo", Method: "GET", Pattern: "/echo", Idempotent: true},
		{Name: "POST /echo", Method: "POST", Pattern: "/echo"},
	}
	if got := svc.Routes(); !slices.Equal(got, want) {
		t.Fatalf("routes %+v, want %+v", got, want)
	}
	if err := echo.Register(svc); err == nil {
		t.Error("registering echo twice on one node: nil error")
	}
}

func TestEcho(t *testing.T) {
	caller, _ := nanobustest.Pair(t, echo.Service, echo.Register)
	tests := []struct {
		name, method, query, body string
		status                    int
		reply                     string
	}{
		{"hello", "GET", "", "", 200, "hello\n"},
		{"body back", "POST", "", "ping", 200, "ping"},
		{"status", "GET", "status=503", "", 503, "status 503\n"},
		{"status among others", "POST", "a=1&status=201&b=2", "x", 201, "status 201\n"},
		{"status below range", "GET", "status=199", "", 200, "hello\n"},
		{"status above range", "GET", "status=600", "", 200, "hello\n"},
		{"status not a number", "GET", "status=x", "", 200, "hello\n"},
		{"name that only starts alike", "GET", "statuses=503", "", 200, "hello\n"},
		{"no value", "GET", "status", "", 200, "hello\n"},
		{"short sleep", "POST", "sleep=1ms", "zz", 200, "zz"},
		{"bad sleep", "GET", "sleep=forever", "", 200, "hello\n"},
		{"negative sleep", "GET", "sleep=-1s&status=202", "", 202, "status 202\n"},
	}
	for _, tt := range tests {
		status, reply, err := do(t, caller, tt.method, tt.query, tt.body)
		if err != nil || status != tt.status || reply != tt.reply {
			t.Errorf("%s: %s ?%s: %d %q %v, want %d %q", tt.name, tt.method, tt.query, status, reply, err, tt.status, tt.reply)
		}
	}
}

// A sleep ends at the request's deadline: the caller gets ErrDeadline, and
// the handler stops rather than sleeping on.
func TestSleepEndsAtDeadline(t *testing.T) {
	caller, svc := nanobustest.Pair(t, echo.Service, echo.Register)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := &wire.Request{Route: []byte("GET /echo"), Method: []byte("GET"), Path: []byte("/echo"), Query: []byte("sleep=1h")}
	if _, err := caller.Do(ctx, echo.Service, req); !errors.Is(err, nanobus.ErrDeadline) {
		t.Fatalf("err %v, want ErrDeadline", err)
	}
	nanobustest.Eventually(t, "the sleeping handler to end", func() bool { return svc.Stats().Serving == 0 })
	if s := svc.Stats(); s.ExpiredInHandler != 1 {
		t.Errorf("expired in handler %d, want 1", s.ExpiredInHandler)
	}
}
