package nanobus_test

import (
	"context"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

func newNode(t testing.TB, cfg nanobus.Config) *nanobus.Node {
	t.Helper()
	n, err := nanobus.NewNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// connect tells from about to's service and waits for the connection.
func connect(t testing.TB, from, to *nanobus.Node) {
	t.Helper()
	from.AddPeer(nanobus.Peer{Service: to.Service(), Addr: to.Addr()})
	eventually(t, "connection to "+to.Addr(), func() bool {
		for _, p := range from.Instances(to.Service()) {
			if p.Addr == to.Addr() && p.Ready {
				return true
			}
		}
		return false
	})
}

func echo(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	return nanobus.Reply{Body: req.Body}, nil
}

// eventually polls cond until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
