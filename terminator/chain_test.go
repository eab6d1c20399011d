package terminator_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// A client that goes away mid-request cancels the whole chain: the front
// notices the closed connection, cancels its call to web, web's handler
// sees context.Canceled and cancels its call to profiles, whose handler
// sees it too, each within 100 ms of the close; the front's admission
// slot is free again.
func TestClientGoneCancelsTheChain(t *testing.T) {
	type ended struct {
		who string
		err error
		at  time.Time
	}
	ends := make(chan ended, 2)
	started := make(chan string, 2)
	slow := func(who string, next func(ctx context.Context) error) nanobus.Handler {
		return func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			started <- who
			err := next(ctx)
			ends <- ended{who, err, time.Now()}
			return nanobus.Reply{}, err
		}
	}
	waitDone := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Second): // slowed on purpose: far past the test's bounds
			return errors.New("never cancelled")
		}
	}
	profiles := nanobustest.NewNode(t, nanobus.Config{Service: "profiles"})
	must(t, profiles.Handle("profiles.get", slow("profiles", waitDone), nanobus.Timeout(time.Minute)))
	web := nanobustest.NewNode(t, nanobus.Config{Service: "web"})
	nanobustest.Connect(t, web, profiles)
	must(t, web.Handle("GET /page", slow("web", func(ctx context.Context) error {
		resp, err := web.Call(ctx, "profiles", "profiles.get", nil)
		resp.Release()
		if err == nil {
			err = waitDone(ctx)
		}
		return err
	}), nanobus.Timeout(time.Minute)))
	r, _ := nanobus.ParseRoute("GET /page")
	r.Timeout = time.Minute
	srv, _ := front(t, terminator.Config{}, []terminator.Route{{Route: r, Service: "web"}}, web)

	c, err := net.Dial("tcp", srv.Addr())
	must(t, err)
	_, err = fmt.Fprintf(c, "GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
	must(t, err)
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the chain did not start")
		}
	}
	closed := time.Now()
	c.Close()
	for range 2 {
		select {
		case e := <-ends:
			took := e.at.Sub(closed)
			t.Logf("%s's handler: %v, %v after the client closed", e.who, e.err, took)
			if !errors.Is(e.err, context.Canceled) {
				t.Fatalf("%s's handler ended with %v, want context.Canceled", e.who, e.err)
			}
			if took > 100*time.Millisecond {
				t.Errorf("%s's handler saw the cancel %v after the close, want within 100ms", e.who, took)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a handler was not cancelled")
		}
	}
	nanobustest.Eventually(t, "the front's admission slot freed", func() bool { return srv.Status().Waiting == 0 })
	// The front is fine: the next client is served.
	if got := fetchStatus("GET", "http://"+srv.Addr()+"/nothing"); got[:3] != "404" {
		t.Fatalf("after the cancel: %s", got)
	}
}
