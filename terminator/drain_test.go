package terminator_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// A stop right after Start drains at once: the serving goroutine may not
// have begun (on one P it has not), and must not then serve forever.
func TestDrainRightAfterStart(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	node := nanobustest.NewNode(t, nanobus.Config{})
	for i := range 20 {
		srv, err := terminator.New(terminator.Config{Listen: "127.0.0.1:0"}, node, nanobustest.Quiet)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		done := make(chan error, 1)
		go func() { done <- srv.Drain(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("drain %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("drain %d right after Start never returned", i)
		}
		cancel()
		srv.Close()
	}
}
