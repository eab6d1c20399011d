// Package servicetest runs one of the project's services for its tests: a
// real bus node with the service's handlers over a Pebble store in a
// directory, and a caller connected to it.
package servicetest

import (
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/services/store"
)

// Service is a running service and its caller.
type Service struct {
	Caller, Node *nanobus.Node
	Events       *events.Bus
	name         string
	stop         func()
}

// Start runs the service name, registered by register, over a Pebble store
// in dir. It stops when the test ends, or at Stop (to open dir again).
func Start(t testing.TB, name string, register func(*nanobus.Node, store.Store, *events.Bus) error, dir string) *Service {
	t.Helper()
	st, err := store.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ev *events.Bus
	caller, node := nanobustest.Pair(t, name, func(n *nanobus.Node) error {
		ev = Bus(t, n, st)
		return register(n, st, ev)
	})
	ev.Start()
	s := &Service{Caller: caller, Node: node, Events: ev, name: name, stop: func() { ev.Close(); node.Close(); st.Close() }}
	t.Cleanup(s.Stop)
	return s
}

// Bus returns n's events over st (nil: a Bus that only declares), closed
// when the test ends; the caller starts it.
func Bus(t testing.TB, n *nanobus.Node, st store.Store) *events.Bus {
	t.Helper()
	cfg := events.Config{PollInterval: 10 * time.Millisecond}
	if st != nil {
		cfg.Store = store.EventLog(st)
	}
	ev, err := events.New(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ev.Close() })
	return ev
}

// Stop closes the node and its store; again, it does nothing.
func (s *Service) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// Call calls route with body and returns the reply's status and body; a
// bus error fails the test (and returns 0).
func (s *Service) Call(t testing.TB, route, body string) (int, string) {
	t.Helper()
	resp, err := s.Caller.Call(nanobustest.Context(t, 10*time.Second), s.name, route, []byte(body))
	if err != nil {
		t.Errorf("%s %s: %v", route, body, err)
		return 0, ""
	}
	defer resp.Release()
	return resp.Status, string(resp.Body)
}
