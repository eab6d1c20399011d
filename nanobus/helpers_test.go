package nanobus_test

import (
	"context"
	"testing"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
)

var (
	newNode    = nanobustest.NewNode
	eventually = nanobustest.Eventually
)

// connect tells from about to's service and waits for the connection.
func connect(t testing.TB, from, to *nanobus.Node) { t.Helper(); nanobustest.Connect(t, from, to) }

func echo(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	return nanobus.Reply{Body: req.Body}, nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
