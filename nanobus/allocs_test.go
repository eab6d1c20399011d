//go:build !race

package nanobus_test

// Allocation guards. They run without the race detector only (its
// instrumentation allocates): `make test` runs them in a step of their own,
// go test -run Allocs ./...

import (
	"context"
	"testing"

	"github.com/terminator-gw/terminator/nanobus"
)

// maxRoundTripAllocs bounds one call's allocations, caller and service
// together, over a real loopback connection. Measured on go1.26 (amd64):
// 4 per call while mangos' socket queues carried the messages and a
// goroutine served each request; 1 (the handler's context) since the
// transport delivers to the node directly and workers serve requests
// (go test -run '^$' -bench 'RoundTrip$' -benchmem ./nanobus). Lower it
// when the path gets leaner; raising it needs a reason.
const maxRoundTripAllocs = 1

func TestRoundTripAllocs(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	body := make([]byte, 128)
	ctx := context.Background()
	call := func() {
		resp, err := caller.Call(ctx, "echo", "echo", body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
	}
	for range 100 { // warm the pools
		call()
	}
	if n := testing.AllocsPerRun(1000, call); n > maxRoundTripAllocs {
		t.Errorf("a round trip allocates %v times, want at most %d", n, maxRoundTripAllocs)
	} else {
		t.Logf("%v allocations per round trip (bound %d)", n, maxRoundTripAllocs)
	}
}
