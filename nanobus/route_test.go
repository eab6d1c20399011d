package nanobus_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

func TestParseRoute(t *testing.T) {
	good := []struct {
		name string
		want nanobus.Route
	}{
		{"GET /profiles/{id}", nanobus.Route{Method: "GET", Pattern: "/profiles/{id}", Idempotent: true}},
		{"HEAD /profiles/{id}", nanobus.Route{Method: "HEAD", Pattern: "/profiles/{id}", Idempotent: true}},
		{"PUT /profiles/{id}", nanobus.Route{Method: "PUT", Pattern: "/profiles/{id}"}},
		{"POST /profiles/{id}/visits", nanobus.Route{Method: "POST", Pattern: "/profiles/{id}/visits"}},
		{"DELETE /a/{b}/c/{d}", nanobus.Route{Method: "DELETE", Pattern: "/a/{b}/c/{d}"}},
		{"GET /", nanobus.Route{Method: "GET", Pattern: "/", Idempotent: true}},
		{"GET /dir/", nanobus.Route{Method: "GET", Pattern: "/dir/", Idempotent: true}},
		{"GET /files/{path...}", nanobus.Route{Method: "GET", Pattern: "/files/{path...}", Idempotent: true}},
		{"GET /{all...}", nanobus.Route{Method: "GET", Pattern: "/{all...}", Idempotent: true}},
		{"GET /a-b_c.d~e/x:y", nanobus.Route{Method: "GET", Pattern: "/a-b_c.d~e/x:y", Idempotent: true}},
		{"PROPFIND /dav", nanobus.Route{Method: "PROPFIND", Pattern: "/dav"}},
		{"GET /" + strings.Repeat("a", 251), nanobus.Route{Method: "GET", Pattern: "/" + strings.Repeat("a", 251), Idempotent: true}}, // 256 bytes
		{"profiles.get", nanobus.Route{}},
		{"a", nanobus.Route{}},
		{"A-Za-z0-9._:-", nanobus.Route{}},
		{strings.Repeat("n", 256), nanobus.Route{}},
	}
	for _, tt := range good {
		got, err := nanobus.ParseRoute(tt.name)
		tt.want.Name = tt.name
		if err != nil || got != tt.want {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
		if got.Public() != (tt.want.Method != "") || got.String() != tt.name {
			t.Errorf("ParseRoute(%q): Public %v, String %q", tt.name, got.Public(), got.String())
		}
	}

	bad := []struct{ name, why string }{
		{"", "empty"},
		{strings.Repeat("n", 257), "internal name too long"},
		{"GET /" + strings.Repeat("a", 252), "public name too long"},
		{"GET/profiles", "no space between method and path"},
		{"profiles/get", "a slash in an internal name"},
		{"get /x", "lower-case method"},
		{"Get /x", "mixed-case method"},
		{"G3T /x", "digit in method"},
		{strings.Repeat("A", 17) + " /x", "method too long"},
		{" /x", "no method"},
		{"GET  /x", "two spaces"},
		{"GET x", "path without a leading slash"},
		{"GET ", "no path"},
		{"GET /a//b", "empty segment"},
		{"GET //", "empty first segment"},
		{"GET /{x}/{x}", "wildcard twice"},
		{"GET /{x}/{x...}", "wildcard twice, once as the rest"},
		{"GET /{rest...}/more", "rest wildcard not last"},
		{"GET /a{b}", "wildcard in part of a segment"},
		{"GET /{a}b", "wildcard in part of a segment"},
		{"GET /{a", "unclosed wildcard"},
		{"GET /a}", "stray brace"},
		{"GET /{}", "empty wildcard"},
		{"GET /{...}", "empty rest wildcard"},
		{"GET /{a.b}", "dot in wildcard"},
		{"GET /{{a}}", "brace in wildcard"},
		{"GET /a b", "space in path"},
		{"GET /a /b", "space in path"},
		{"GET /a\tb", "tab in path"},
		{"GET /a\x00", "NUL in path"},
		{"GET /a\r\nb", "CR LF in path"},
		{"GET /\x7f", "DEL in path"},
		{"GET /{a\tb}", "tab in a wildcard"},
		{"GET /a?b", "a query never matches a path"},
		{"GET /a#b", "a fragment never matches a path"},
		{"profiles get", "space in an internal name"},
		{"profiles!", "bad character"},
		{"prof\x00iles", "NUL"},
		{"profilé", "non-ASCII"},
		{"a\tb", "tab"},
		{"a\nb", "newline"},
	}
	for _, tt := range bad {
		if r, err := nanobus.ParseRoute(tt.name); err == nil {
			t.Errorf("ParseRoute(%q) (%s) = %+v, want an error", tt.name, tt.why, r)
		} else if !strings.Contains(err.Error(), "route") {
			t.Errorf("ParseRoute(%q): error %q does not say it is about a route", tt.name, err)
		}
	}
}

func TestHandleOptions(t *testing.T) {
	n := newNode(t, nanobus.Config{Service: "s"})
	tests := []struct {
		name string
		opts []nanobus.RouteOption
		want nanobus.Route
	}{
		{"GET /a", nil, nanobus.Route{Method: "GET", Pattern: "/a", Idempotent: true}},
		{"GET /b", []nanobus.RouteOption{nanobus.NotIdempotent()}, nanobus.Route{Method: "GET", Pattern: "/b"}},
		{"POST /c", []nanobus.RouteOption{nanobus.Idempotent()}, nanobus.Route{Method: "POST", Pattern: "/c", Idempotent: true}},
		{"POST /d", []nanobus.RouteOption{nanobus.GhostSafe(), nanobus.Timeout(2 * time.Second)},
			nanobus.Route{Method: "POST", Pattern: "/d", GhostSafe: true, Timeout: 2 * time.Second}},
		{"s.e", nil, nanobus.Route{}},
		{"s.f", []nanobus.RouteOption{nanobus.Idempotent(), nanobus.Timeout(5 * time.Minute)}, nanobus.Route{Idempotent: true, Timeout: 5 * time.Minute}},
		{"s.g", []nanobus.RouteOption{nanobus.Idempotent(), nanobus.NotIdempotent()}, nanobus.Route{}}, // the last word wins
	}
	var want []nanobus.Route
	for _, tt := range tests {
		if err := n.Handle(tt.name, echo, tt.opts...); err != nil {
			t.Fatalf("Handle(%q): %v", tt.name, err)
		}
		tt.want.Name = tt.name
		want = append(want, tt.want)
	}
	slices.SortFunc(want, func(a, b nanobus.Route) int { return strings.Compare(a.Name, b.Name) })
	if got := n.Routes(); !slices.Equal(got, want) {
		t.Errorf("Routes() =\n%+v\nwant\n%+v", got, want)
	}
	if got := n.Peer().Routes; !slices.Equal(got, want) {
		t.Errorf("Peer().Routes = %+v, want the same", got)
	}
}

func TestHandleErrors(t *testing.T) {
	n := newNode(t, nanobus.Config{Service: "s"})
	must(t, n.Handle("s.taken", echo))
	must(t, n.Handle("GET /taken/{id}", echo))
	tests := []struct {
		why   string
		route string
		h     nanobus.Handler
		opts  []nanobus.RouteOption
		has   string
	}{
		{"malformed", "GET/x", echo, nil, "METHOD /path"},
		{"bad internal name", "s taken", echo, nil, "METHOD /path"},
		{"duplicate", "s.taken", echo, nil, "registered already"},
		{"duplicate public", "GET /taken/{id}", echo, nil, "registered already"},
		{"nil handler", "s.nil", nil, nil, "nil handler"},
		{"negative timeout", "s.neg", echo, []nanobus.RouteOption{nanobus.Timeout(-time.Second)}, "timeout"},
		{"timeout over the bound", "s.long", echo, []nanobus.RouteOption{nanobus.Timeout(5*time.Minute + 1)}, "timeout"},
	}
	for _, tt := range tests {
		err := n.Handle(tt.route, tt.h, tt.opts...)
		if err == nil || !strings.Contains(err.Error(), tt.has) || !strings.Contains(err.Error(), tt.route) {
			t.Errorf("%s: Handle(%q) = %v, want an error naming the route and saying %q", tt.why, tt.route, err, tt.has)
		}
	}
	// Nothing refused was added, and what was there still serves.
	if got := n.Routes(); len(got) != 2 || got[0].Name != "GET /taken/{id}" || got[1].Name != "s.taken" {
		t.Errorf("routes after refusals: %+v", got)
	}
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, n)
	resp, err := caller.Call(context.Background(), "s", "s.taken", []byte("x"))
	if err != nil || string(resp.Body) != "x" {
		t.Fatalf("the first handler: %v", err)
	}
	resp.Release()
}
