package nanobus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/wire"
)

// withRequestID is a request for route carrying the request ID id, as the
// front sends one.
func withRequestID(route, id string) *wire.Request {
	req := &wire.Request{Route: []byte(route)}
	req.Header.Add("X-Request-Id", id)
	return req
}

// A call made while handling a request carries the request's ID on, hop
// after hop; a call with its own ID keeps it; a call outside a handler
// carries none.
func TestCallsInheritTheRequestID(t *testing.T) {
	var shared wire.Headers
	shared.Add("Accept", "application/json")
	leaf := newNode(t, nanobus.Config{Service: "leaf"})
	must(t, leaf.Handle("leaf.id", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: []byte(nanobus.RequestID(ctx) + "|" + string(req.Header.Get("X-Request-Id")))}, nil
	}))
	mid := newNode(t, nanobus.Config{Service: "mid"})
	connect(t, mid, leaf)
	must(t, mid.Handle("mid.call", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		resp, err := mid.Call(ctx, "leaf", "leaf.id", nil) // as Go and Wait
		if err != nil {
			return nanobus.Reply{}, err
		}
		defer resp.Release()
		own := withRequestID("leaf.id", "its-own")
		resp2, err := mid.Do(ctx, "leaf", own)
		if err != nil {
			return nanobus.Reply{}, err
		}
		defer resp2.Release()
		// Headers of its own, shared with other calls: copied, not
		// appended to.
		withHeaders := &wire.Request{Route: []byte("leaf.id"), Header: shared}
		resp3, err := mid.Do(ctx, "leaf", withHeaders)
		if err != nil {
			return nanobus.Reply{}, err
		}
		defer resp3.Release()
		if shared.Len() != 1 {
			return nanobus.Reply{}, errors.New("the shared headers were appended to")
		}
		return nanobus.Reply{Body: []byte(string(resp.Body) + " " + string(resp2.Body) + " " + string(resp3.Body))}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, mid)
	connect(t, caller, leaf)
	ctx := context.Background()
	for range 3 { // pooled calls reuse their headers' buffer: nothing leaks into the next
		resp, err := caller.Do(ctx, "mid", withRequestID("mid.call", "page-7"))
		must(t, err)
		if got := string(resp.Body); got != "page-7|page-7 its-own|its-own page-7|page-7" {
			t.Errorf("the leaf saw %q", got)
		}
		resp.Release()
		resp, err = caller.Call(ctx, "leaf", "leaf.id", nil)
		must(t, err)
		if got := string(resp.Body); got != "|" {
			t.Errorf("a call outside a handler carries %q", got)
		}
		resp.Release()
	}
}

// A handler's 500 is an ERROR line with the request's ID and the cause; an
// error storm writes at most ErrorLogRate lines a second and counts the
// rest in Stats.LogsDropped.
func TestFailuresLoggedWithinARate(t *testing.T) {
	var logs nanobustest.Logs
	svc := newNode(t, nanobus.Config{Service: "svc", ErrorLogRate: 3,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	must(t, svc.Handle("svc.fail", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, errors.New("disk on fire")
	}))
	must(t, svc.Handle("svc.teapot", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, nanobus.Errorf(418, "short and stout")
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	ctx := context.Background()
	resp, err := caller.Do(ctx, "svc", withRequestID("svc.teapot", "tea-1"))
	must(t, err)
	resp.Release()
	const storm = 40
	began := time.Now()
	for range storm {
		resp, err := caller.Do(ctx, "svc", withRequestID("svc.fail", "storm-1"))
		must(t, err)
		if resp.Status != 500 {
			t.Fatalf("status %d", resp.Status)
		}
		resp.Release()
	}
	seconds := int(time.Since(began)/time.Second) + 1
	var lines int
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "tea-1") {
			t.Errorf("a 4xx logged: %s", l)
		}
		if !strings.Contains(l, "request failed") {
			continue
		}
		lines++
		for _, want := range []string{"level=ERROR", "request_id=storm-1", "route=svc.fail", "status=500", `err="disk on fire"`, "node=svc"} {
			if !strings.Contains(l, want) {
				t.Errorf("line without %s: %s", want, l)
			}
		}
	}
	dropped := svc.Stats().LogsDropped
	if lines < 1 || lines > 3*seconds+3 || uint64(lines)+dropped != storm {
		t.Errorf("%d lines written and %d dropped of %d in %d s at 3 a second", lines, dropped, storm, seconds)
	}
}
