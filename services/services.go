// Package services is the list of services this project ships, written
// once: the binary's commands, its usage text, what "terminator all" runs
// and the tests all derive from it. Each service is a package of its own
// whose Register adds its handlers to a bus node.
package services

import (
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/services/echo"
	"github.com/terminator-gw/terminator/services/flirts"
	"github.com/terminator-gw/terminator/services/notifications"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/visits"
	"github.com/terminator-gw/terminator/services/web"
)

// Service is one service the binary can run.
type Service struct {
	Name     string // the command that runs it alone, and the name it registers under
	Summary  string // one line, for the usage text
	Stateful bool   // keeps data in a store.Store
	// Register adds the service's handlers to n; s is its store, nil for a
	// service that keeps none; ev its events (publications and
	// subscriptions, in s).
	Register func(n *nanobus.Node, s store.Store, ev *events.Bus) error
	// Calls lists the services its handlers call: a process announces the
	// service once it reaches an instance of each (or a bounded wait ends).
	Calls []string
}

// All lists the services in start order: the domain services before the
// aggregator that calls them.
func All() []Service {
	return []Service{
		{profiles.Service, "the profile service", true, profiles.Register, nil},
		{visits.Service, "the visit service", true, visits.Register, nil},
		{flirts.Service, "the flirt service", true, flirts.Register, nil},
		{notifications.Service, "projections of the events: notification feeds and counts", true, notifications.Register,
			[]string{profiles.Service, visits.Service, flirts.Service}},
		{web.Service, "the aggregator: owns the public /profiles routes", false, stateless(web.Register),
			[]string{profiles.Service, visits.Service, flirts.Service, notifications.Service}},
		{echo.Service, "answers what it gets: GET and POST /echo", false, stateless(echo.Register), nil},
	}
}

// Lookup finds a service by name.
func Lookup(name string) (Service, bool) {
	for _, s := range All() {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

func stateless(register func(*nanobus.Node) error) func(*nanobus.Node, store.Store, *events.Bus) error {
	return func(n *nanobus.Node, _ store.Store, _ *events.Bus) error { return register(n) }
}
