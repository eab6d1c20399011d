package nanobus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/wire"
)

// blocking is a handler that reports its start and waits for its context
// to end, reporting why.
func blocking(started chan<- struct{}, ended chan<- error) nanobus.Handler {
	return func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nanobus.Reply{}, ctx.Err()
	}
}

// A caller that gives up cancels the call at the instance: the handler's
// context ends with context.Canceled, no reply is sent, and both sides
// count it.
func TestCancelReachesTheHandler(t *testing.T) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	caller, svc := nanobustest.Pair(t, "slow", func(n *nanobus.Node) error {
		return n.Handle("slow", blocking(started, ended), nanobus.Timeout(time.Minute))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := caller.Call(ctx, "slow", "slow", nil)
		done <- err
	}()
	receive(t, started)
	cancel()
	if err := receive(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("call: %v, want context.Canceled", err)
	}
	if err := receive(t, ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's context: %v, want context.Canceled", err)
	}
	eventually(t, "the cancel counted on both sides", func() bool {
		c, s := caller.Stats(), svc.Stats()
		return c.Cancelled == 1 && c.CancelsSent == 1 && s.Cancels == 1 && s.HandlersCancelled == 1 &&
			svc.RouteStats()[0].Cancelled == 1
	})
	if s := svc.Stats(); s.Undeliverable != 0 || s.HandlerErrors != 0 || svc.RouteStats()[0].Errors != 0 {
		t.Fatalf("a cancelled handler is no error and sends no reply: %+v", s)
	}
}

// Cancellation travels hop by hop: a handler's context cancelled by its
// asker cancels the calls it made with it (directly, or narrowed with
// WithDeadline), at their instances too.
func TestCancelTravelsHopByHop(t *testing.T) {
	started, ended := make(chan struct{}, 2), make(chan error, 2)
	leaf := newNode(t, nanobus.Config{Service: "leaf"})
	must(t, leaf.Handle("leaf", blocking(started, ended), nanobus.Timeout(time.Minute)))
	mid := newNode(t, nanobus.Config{Service: "mid"})
	connect(t, mid, leaf)
	must(t, mid.Handle("mid", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		// One call with the handler's context, one with a narrowed one,
		// both at once.
		a := mid.Go(ctx, "leaf", "leaf", nil)
		b := mid.Go(nanobus.WithDeadline(ctx, time.Now().Add(time.Minute)), "leaf", "leaf", nil)
		_, errA := a.Wait()
		_, errB := b.Wait()
		return nanobus.Reply{}, errors.Join(errA, errB)
	}, nanobus.Timeout(time.Minute)))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, mid)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := caller.Call(ctx, "mid", "mid", nil)
		done <- err
	}()
	receive(t, started)
	receive(t, started)
	at := time.Now()
	cancel()
	for range 2 {
		if err := receive(t, ended); !errors.Is(err, context.Canceled) {
			t.Fatalf("leaf handler's context: %v, want context.Canceled", err)
		}
	}
	t.Logf("cancel reached both leaf handlers in %v", time.Since(at))
	if err := receive(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("call: %v", err)
	}
	eventually(t, "the mid node cancelled both its calls", func() bool {
		return mid.Stats().CancelsSent == 2 && leaf.Stats().HandlersCancelled == 2
	})
}

// No peer cancels another's request: a cancel names a call by its ID, and
// counts only on the connection the call came in on.
func TestCancelFromAnotherConnectionIsIgnored(t *testing.T) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	caller, svc := nanobustest.Pair(t, "slow", func(n *nanobus.Node) error {
		return n.Handle("slow", blocking(started, ended), nanobus.Timeout(time.Minute))
	})
	// The attacker learns nothing of the ID, but is given it here: even
	// the right ID, from the wrong connection, cancels nothing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go func() {
		_, _ = caller.Call(ctx, "slow", "slow", nil)
	}()
	receive(t, started)
	id := nanobus.RunningIDs(svc)[0]
	frame, err := wire.AppendCancel(nil, &wire.Cancel{ID: id})
	must(t, err)
	raw := rawSocket(t, svc.Addr())
	sendRaw(t, raw, frame)
	eventually(t, "the forged cancel counted", func() bool { return svc.Stats().Cancels == 1 })
	if s := svc.Stats(); s.HandlersCancelled != 0 {
		t.Fatal("a cancel from another connection stopped the handler")
	}
	// The handler runs on to the caller's deadline, which the service
	// has too: it ends with DeadlineExceeded, not Canceled.
	if err := receive(t, ended); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handler's context: %v, want DeadlineExceeded", err)
	}
}

// A node of before cancel frames is sent none.
func TestNoCancelToAnOldPeer(t *testing.T) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	old := newNode(t, nanobus.WithProtocol(nanobus.Config{Service: "old"}, 1))
	must(t, old.Handle("slow", blocking(started, ended), nanobus.Timeout(200*time.Millisecond)))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, old)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := caller.Call(ctx, "old", "slow", nil)
		done <- err
	}()
	receive(t, started)
	cancel()
	if err := receive(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("call: %v", err)
	}
	receive(t, ended) // at its deadline
	if c, o := caller.Stats(), old.Stats(); c.CancelsSent != 0 || o.UnknownKinds != 0 || o.Cancels != 0 {
		t.Fatalf("sent %d cancels; the old node saw %d unknown kinds", c.CancelsSent, o.UnknownKinds)
	}
}

// Every context of the bus keeps the context contract: Done closes at the
// deadline (and Err says why), not only when cancelled.
func TestBusContextsKeepTheContract(t *testing.T) {
	ended := make(chan error, 2)
	caller, _ := nanobustest.Pair(t, "svc", func(n *nanobus.Node) error {
		return n.Handle("wait", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			narrow := nanobus.WithDeadline(ctx, time.Now().Add(20*time.Millisecond))
			select {
			case <-narrow.Done():
				ended <- narrow.Err()
			case <-time.After(10 * time.Second):
				ended <- errors.New("WithDeadline's Done did not close at its deadline")
			}
			select {
			case <-ctx.Done():
				ended <- ctx.Err()
			case <-time.After(10 * time.Second):
				ended <- errors.New("the handler's Done did not close at its deadline")
			}
			return nanobus.Reply{}, nil
		}, nanobus.Timeout(100*time.Millisecond))
	})
	go func() { _, _ = caller.Call(context.Background(), "svc", "wait", nil) }()
	for range 2 {
		if err := receive(t, ended); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
	}
}
