package services_test

import (
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services"
	"github.com/terminator-gw/terminator/services/servicetest"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/wire"
)

func TestEveryServiceRegisters(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range services.All() {
		t.Run(s.Name, func(t *testing.T) {
			switch {
			case s.Name == "" || strings.ContainsAny(s.Name, "/ "):
				t.Fatalf("name %q: want a non-empty name without '/' or spaces (it is an etcd key and a command)", s.Name)
			case seen[s.Name]:
				t.Fatalf("name %q listed twice", s.Name)
			case s.Summary == "" || s.Register == nil:
				t.Fatalf("%+v: want a summary and a Register", s)
			}
			seen[s.Name] = true
			if got, ok := services.Lookup(s.Name); !ok || got.Name != s.Name {
				t.Errorf("Lookup(%q) = %+v, %v", s.Name, got, ok)
			}
			var st store.Store
			if s.Stateful {
				p, err := store.OpenPebble(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				st = p
			}
			n := nanobustest.NewNode(t, nanobus.Config{Service: s.Name})
			ev := servicetest.Bus(t, n, st)
			if err := s.Register(n, st, ev); err != nil {
				t.Fatalf("Register: %v", err)
			}
			if len(n.Routes()) == 0 {
				t.Error("no routes registered")
			}
			// Registering twice on one node is refused, not silently doubled.
			if err := s.Register(n, st, ev); err == nil {
				t.Error("second Register on the same node: nil error")
			}
		})
	}
	if _, ok := services.Lookup("nope"); ok {
		t.Error(`Lookup("nope") found a service`)
	}
}

// Stateful says whether a service needs a store: a stateful one given none
// refuses to register (its subscriptions keep their positions in it) or
// fails its requests (a handler panics on the nil store); a stateless one
// never touches it.
func TestStatefulMeansNeedsAStore(t *testing.T) {
	var stateful []string
	for _, s := range services.All() {
		if s.Stateful {
			stateful = append(stateful, s.Name)
		}
		t.Run(s.Name, func(t *testing.T) {
			n := nanobustest.NewNode(t, nanobus.Config{Service: s.Name, Logger: nanobustest.Quiet})
			if err := s.Register(n, nil, servicetest.Bus(t, n, nil)); err != nil {
				if !s.Stateful {
					t.Fatalf("a stateless service refused to register without a store: %v", err)
				}
				return
			}
			caller, svc := nanobustest.Pair(t, s.Name, func(n *nanobus.Node) error { return s.Register(n, nil, servicetest.Bus(t, n, nil)) })
			ctx := nanobustest.Context(t, 10*time.Second)
			for _, r := range svc.Routes() {
				// Internal routes take a profile ID (or JSON naming one):
				// "1" reaches the store in every count and get.
				req := &wire.Request{Route: []byte(r.Name), Method: []byte(r.Method), Path: []byte(r.Pattern), Body: []byte("1")}
				if r.Public() {
					req.Path = []byte(strings.ReplaceAll(r.Pattern, "{id}", "1"))
					req.Body = nil
				}
				resp, err := caller.Do(ctx, s.Name, req)
				if err == nil {
					resp.Release()
				}
			}
			panicked := false
			for _, rs := range svc.RouteStats() {
				panicked = panicked || strings.HasPrefix(rs.LastError, "panic:")
			}
			if panicked != s.Stateful {
				t.Errorf("stateful %v, but without a store a handler panicked: %v", s.Stateful, panicked)
			}
		})
	}
	if got := strings.Join(stateful, " "); got != "profiles visits flirts notifications" {
		t.Errorf("stateful services %q, want the domain services", got)
	}
}
