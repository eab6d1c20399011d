package terminator

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

func TestRouterLookup(t *testing.T) {
	r := NewRouter(slog.New(slog.NewTextHandler(io.Discard, nil)))
	var routes []Route
	for _, kv := range [][2]string{
		{"GET /profiles/{id}", "web"},
		{"GET /profiles/me", "me"},
		{"PUT /profiles/{id}", "web"},
		{"GET /profiles/{id}/visitors", "web-visitors"},
		{"GET /files/{path...}", "files"},
		{"GET /", "root"},
		{"GET /profiles/{id}", "duplicate"}, // loses to the first
	} {
		rt, err := nanobus.ParseRoute(kv[0])
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, Route{Route: rt, Service: kv[1]})
	}
	r.Set(routes, time.Second)
	tests := []struct{ method, path, want string }{
		{"GET", "/profiles/42", "web"},
		{"GET", "/profiles/me", "me"},
		{"PUT", "/profiles/42", "web"},
		{"GET", "/profiles/42/visitors", "web-visitors"},
		{"GET", "/files/a/b/c.txt", "files"},
		{"GET", "/", "root"},
		{"DELETE", "/profiles/42", ""},
		{"GET", "/profiles", ""},
		{"GET", "/profiles/42/other", ""},
		{"GET", "/nope", ""},
		{"GET", "", ""},
	}
	for _, tt := range tests {
		e := r.lookup([]byte(tt.method), []byte(tt.path))
		got := ""
		if e != nil {
			got = e.Service
		}
		if got != tt.want {
			t.Errorf("%s %s -> %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}
