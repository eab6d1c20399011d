package nanobus_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// hedgeFleet starts two instances of "kv" whose routes ("get", hedged
// after delay, and "plain", not hedged) answer at once, but for one
// instance on every tenth call, which answers 200 ms late. It returns a
// caller connected to both and the number of requests both have served.
func hedgeFleet(t *testing.T, delay time.Duration, status int) (*nanobus.Node, *atomic.Int64) {
	var served atomic.Int64
	var calls atomic.Int64
	caller := newNode(t, nanobus.Config{})
	for i := range 2 {
		svc := newNode(t, nanobus.Config{Service: "kv"})
		slow := i == 0
		h := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			served.Add(1)
			if slow && calls.Add(1)%10 == 0 {
				select {
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done(): // the hedge won: this copy was cancelled
					return nanobus.Reply{}, ctx.Err()
				}
			}
			return nanobus.Reply{Status: status}, nil
		}
		must(t, svc.Handle("get", h, nanobus.Idempotent(), nanobus.Hedge(delay)))
		must(t, svc.Handle("plain", h, nanobus.Idempotent()))
		connect(t, caller, svc)
	}
	return caller, &served
}

// p99 makes n calls to route, one at a time (with calls at once, the
// power of two choices would steer them away from the instance that is
// slow now, and hide what hedging is for), and returns their p99.
func p99(t *testing.T, caller *nanobus.Node, route string, n int) time.Duration {
	took := make([]time.Duration, n)
	for i := range took {
		start := time.Now()
		resp, err := caller.Call(context.Background(), "kv", route, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	return took[n*99/100]
}

// One of two instances answering 200 ms late on 10% of its calls shows in
// p99; hedged after 10 ms, the slow calls are answered by the other
// instance, for at most 10% more calls, and the losers are cancelled. (The
// delay is 5 ms, short, so that a loaded test machine's slower hops leave
// the tail well under 20 ms.)
func TestHedgingCutsTheTail(t *testing.T) {
	caller, served := hedgeFleet(t, 5*time.Millisecond, 200)
	const n = 300
	plain := p99(t, caller, "plain", n)
	before := served.Load()
	hedged := p99(t, caller, "get", n)
	extra := served.Load() - before - n
	t.Logf("p99 without hedging %v, hedged %v; %d extra calls for %d", plain, hedged, extra, n)
	if plain < 200*time.Millisecond {
		t.Fatalf("p99 without hedging %v: the slow instance does not show", plain)
	}
	if hedged >= 20*time.Millisecond {
		t.Fatalf("hedged p99 %v, want under 20ms", hedged)
	}
	if extra > n/10 {
		t.Fatalf("%d extra calls for %d: over 10%%", extra, n)
	}
	st := caller.HedgeStats()
	if len(st) != 1 || st[0].Hedged == 0 || st[0].Won == 0 || st[0].Route != "get" {
		t.Fatalf("hedge stats: %+v", st)
	}
	eventually(t, "every losing copy cancelled at its instance", func() bool {
		return caller.Stats().CancelsSent >= st[0].Won
	})
}

// Instances that fail spend the service's budget: hedging (and retries)
// stop until good calls earn it back.
func TestFailingInstancesSwitchHedgingOff(t *testing.T) {
	caller, served := hedgeFleet(t, 10*time.Millisecond, 500)
	const n = 200
	before := served.Load()
	p99(t, caller, "get", n)
	st := caller.HedgeStats()[0]
	t.Logf("%d calls, %d served, %+v", n, served.Load()-before, st)
	if st.Throttled == 0 {
		t.Fatal("no hedge was throttled while every call failed")
	}
	if st.Hedged > 2 {
		t.Fatalf("%d copies sent to failing instances", st.Hedged)
	}
}
