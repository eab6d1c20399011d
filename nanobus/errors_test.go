package nanobus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/wire"
)

// statusCases is the error-to-status table as a client sees it.
var statusCases = []struct {
	name       string
	err        error
	code       int
	retryAfter bool
}{
	{"no route", nanobus.ErrNoRoute, 404, false},
	{"no peer", nanobus.ErrNoPeer, 503, true},
	{"busy", nanobus.ErrBusy, 503, true},
	{"unavailable", nanobus.ErrUnavailable, 503, true},
	{"closed", nanobus.ErrClosed, 503, true},
	{"deadline", nanobus.ErrDeadline, 504, false},
	{"context deadline", context.DeadlineExceeded, 504, false},
	{"context cancelled", context.Canceled, 503, true},
	{"peer lost", nanobus.ErrPeerLost, 502, false},
	{"malformed", nanobus.ErrMalformed, 502, false},
	{"frame too large", wire.ErrTooLarge, 431, false},
	{"bad field", wire.ErrField, 431, false},
	{"wrapped deadline", fmt.Errorf("profiles: %w", nanobus.ErrDeadline), 504, false},
	{"wrapped twice", fmt.Errorf("page: %w", fmt.Errorf("profiles: %w", nanobus.ErrBusy)), 503, true},
	{"joined", errors.Join(errors.New("first"), nanobus.ErrPeerLost), 502, false},
	{"wire encode error", fmt.Errorf("encode request: %w", fmt.Errorf("wire: header: %w", wire.ErrTooLarge)), 431, false},
	{"status error", nanobus.Errorf(409, "taken"), 409, false},
	{"status error 503", nanobus.Errorf(503, "come back"), 503, false}, // the handler says, not the table
	{"wrapped status error", fmt.Errorf("ctx: %w", nanobus.Errorf(404, "no profile")), 404, false},
	{"status error beats a bus error", errors.Join(nanobus.ErrBusy, nanobus.Errorf(418, "teapot")), 418, false},
	{"unknown", errors.New("database on fire"), 500, false},
	{"other wire error", wire.ErrTruncated, 500, false},
}

func TestStatusOf(t *testing.T) {
	if st := nanobus.StatusOf(nil); st.Code != 200 || st.RetryAfter {
		t.Errorf("StatusOf(nil) = %+v, want 200", st)
	}
	for _, tt := range statusCases {
		st := nanobus.StatusOf(tt.err)
		if st.Code != tt.code || st.RetryAfter != tt.retryAfter || st.Message == "" {
			t.Errorf("%s: StatusOf(%v) = %+v, want %d, Retry-After %v, a message", tt.name, tt.err, st, tt.code, tt.retryAfter)
		}
		if strings.Contains(st.Message, "database") {
			t.Errorf("%s: message %q shows the error to the client", tt.name, st.Message)
		}
	}
	if st := nanobus.StatusOf(nanobus.Errorf(404, "no profile %s", "42")); st.Message != "no profile 42" {
		t.Errorf("a status error's message %q, want its own", st.Message)
	}
}

// Whatever a handler returns reaches the caller as a reply with the
// table's status, and with Retry-After only where the table says.
func TestHandlerErrorsReachTheCaller(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	byName := map[string]error{}
	for _, tt := range statusCases {
		byName[tt.name] = tt.err
	}
	must(t, svc.Handle("fail", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: []byte("ignored")}, byName[string(req.Body)]
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	handlerErrors := uint64(0)
	for _, tt := range statusCases {
		resp, err := caller.Call(context.Background(), "s", "fail", []byte(tt.name))
		if err != nil {
			t.Fatalf("%s: the call failed: %v (a handler's error is a reply, not a bus error)", tt.name, err)
		}
		ra := string(resp.Header.Get("Retry-After"))
		if resp.Status != tt.code || (ra != "") != tt.retryAfter || string(resp.Body) != nanobus.StatusOf(tt.err).Message {
			t.Errorf("%s: reply %d %q, Retry-After %q; want %d %q, Retry-After %v",
				tt.name, resp.Status, resp.Body, ra, tt.code, nanobus.StatusOf(tt.err).Message, tt.retryAfter)
		}
		resp.Release()
		var se *nanobus.StatusError
		if tt.code == 500 && !errors.As(tt.err, &se) {
			handlerErrors++
		}
	}
	// Only errors the table does not know count as handler failures.
	if got := svc.Stats().HandlerErrors; got != handlerErrors {
		t.Errorf("handler errors %d, want %d", got, handlerErrors)
	}
}

func TestRouteStats(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	must(t, svc.Handle("r", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		switch string(req.Body) {
		case "404":
			return nanobus.Reply{}, nanobus.Errorf(404, "not here")
		case "409":
			return nanobus.Reply{Status: 409}, nil
		case "503":
			return nanobus.Reply{Status: 503}, nil
		case "boom":
			return nanobus.Reply{}, errors.New("boom")
		case "deadline":
			return nanobus.Reply{}, fmt.Errorf("profiles: %w", nanobus.ErrDeadline)
		}
		return nanobus.Reply{}, nil
	}))
	must(t, svc.Handle("idle", echo))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	steps := []struct {
		body           string
		errors, client uint64
		lastError      string
	}{
		{"ok", 0, 0, ""},
		{"404", 0, 1, ""},
		{"409", 0, 2, ""},
		{"boom", 1, 2, "boom"},
		{"503", 2, 2, "status 503"},
		{"ok", 2, 2, "status 503"},
		{"deadline", 3, 2, "profiles: " + nanobus.ErrDeadline.Error()},
	}
	for i, st := range steps {
		resp, err := caller.Call(context.Background(), "s", "r", []byte(st.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
		// The handler's numbers are recorded before its reply is sent.
		rs := svc.RouteStats()
		if len(rs) != 2 || rs[0].Route != "idle" || rs[1].Route != "r" {
			t.Fatalf("route stats %+v, want idle and r, sorted", rs)
		}
		r := rs[1]
		if r.Requests != uint64(i+1) || r.Errors != st.errors || r.ClientErrors != st.client || r.LastError != st.lastError {
			t.Errorf("after %q: requests %d, 5xx %d, 4xx %d, last error %q; want %d, %d, %d, %q",
				st.body, r.Requests, r.Errors, r.ClientErrors, r.LastError, i+1, st.errors, st.client, st.lastError)
		}
		if r.P50 <= 0 || r.P99 < r.P50 || r.ProcessingTime <= 0 || r.AverageTime != r.ProcessingTime/time.Duration(r.Requests) {
			t.Errorf("after %q: times %+v: want quantiles above 0, p99 >= p50, average = total / requests", st.body, r)
		}
		if idle := rs[0]; idle.Requests != 0 || idle.P50 != 0 || idle.P99 != 0 || idle.AverageTime != 0 {
			t.Errorf("a route never called: %+v, want zeros", idle)
		}
	}
	// Requests that reach no handler are not a route's.
	resp, err := caller.Call(context.Background(), "s", "missing", nil)
	if !errors.Is(err, nanobus.ErrNoRoute) {
		t.Fatalf("call to a missing route: %v", err)
	}
	resp.Release()
	var total uint64
	for _, r := range svc.RouteStats() {
		total += r.Requests
	}
	if total != uint64(len(steps)) {
		t.Errorf("routes counted %d requests, want %d", total, len(steps))
	}
}
