package nanobus_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/wire"
)

// Each test here is an attack by a bus peer, made over real sockets, and
// what the node does about it.

// A peer that knows a call's ID exactly (here the service leaks it) still
// cannot answer it: not by dialing the caller, nor from another instance
// the caller is connected to. Only the asked instance's answer completes
// the call.
func TestReplyForgery(t *testing.T) {
	ids := make(chan wire.ID, 1)
	release := make(chan struct{})
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		ids <- req.ID
		<-release
		return nanobus.Reply{Body: []byte("genuine")}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	intruder := rawSocket(t, caller.Addr())     // dials the caller, as any peer can
	instance := rawInstance(t, caller, "other") // an instance the caller dialed, of another service

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := caller.Call(nanobustest.Context(t, 10*time.Second), "echo", "echo", nil)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Release()
		done <- result{body: string(resp.Body)}
	}()
	id := receive(t, ids)
	forged, err := wire.AppendReply(nil, &wire.Reply{ID: id, Status: 200, Body: []byte("INJECTED")})
	must(t, err)
	sendRaw(t, intruder, forged)
	sendRaw(t, instance, forged)
	eventually(t, "both forgeries dropped and counted", func() bool { return caller.Stats().Misdirected == 2 })
	select {
	case r := <-done:
		t.Fatalf("the call ended on a forged answer: %+v", r)
	default:
	}
	close(release)
	if r := receive(t, done); r.err != nil || r.body != "genuine" {
		t.Fatalf("call: %+v, want the genuine reply", r)
	}
}

// Correlation IDs carry random bits: the next one cannot be told from the
// last.
func TestCallIDsAreNotGuessable(t *testing.T) {
	ids := make(chan wire.ID, 64)
	caller, _ := pair(t, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		ids <- req.ID
		return nanobus.Reply{}, nil
	})
	low := map[uint32]bool{}
	var last uint64
	for range cap(ids) {
		resp, err := caller.Call(context.Background(), "s", "r", nil)
		must(t, err)
		resp.Release()
		id := receive(t, ids)
		if id.Seq>>32 != last>>32+1 {
			t.Fatalf("sequence %x after %x: the high half counts calls", id.Seq, last)
		}
		last = id.Seq
		low[uint32(id.Seq)] = true
	}
	if len(low) < cap(ids)-2 {
		t.Fatalf("%d distinct low halves in %d calls: not random", len(low), cap(ids))
	}
}

// A request whose asker does not read its replies, or names an address
// that does not answer, holds its handler slot only while the handler
// runs: the reply goes back on the asker's own connection, or nowhere.
func TestUnreachableAskerCannotPinHandlers(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "web"})
	must(t, svc.Handle("page", echo))
	const n = 200
	// A BUS socket drops what does not fit its pipe's queue: make room.
	raw := rawSocket(t, "", mangos.OptionWriteQLen, 2*n)
	must(t, raw.Dial(svc.Addr()))
	for i := range n {
		frame, err := wire.AppendRequest(nil, &wire.Request{
			ID: wire.ID{Node: 1, Seq: uint64(i + 1)}, Deadline: time.Now().Add(5 * time.Minute).UnixNano(),
			From: []byte("tcp://127.0.0.1:1"), Service: []byte("web"), Route: []byte("page"),
		})
		must(t, err)
		sendRaw(t, raw, frame)
	}
	eventually(t, "every request answered, no handler left waiting", func() bool {
		s := svc.Stats()
		return s.Handled == n && s.Serving == 0
	})
}

// One connection gets at most MaxInFlight handlers, whatever addresses it
// claims to ask from; what it sends over that is refused at once (busy),
// and other askers are served meanwhile.
func TestOnePeerHoldsOnlyItsShare(t *testing.T) {
	const share = 4
	release := make(chan struct{})
	defer close(release)
	var blocked atomic.Int64
	svc := newNode(t, nanobus.Config{Service: "web", MaxInFlight: share})
	must(t, svc.Handle("block", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		blocked.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nanobus.Reply{}, nil
	}))
	must(t, svc.Handle("page", echo))
	raw := rawSocket(t, svc.Addr())
	for i := range 3 * share {
		frame, err := wire.AppendRequest(nil, &wire.Request{
			ID: wire.ID{Node: 1, Seq: uint64(i + 1)}, Deadline: time.Now().Add(time.Minute).UnixNano(),
			From: fmt.Appendf(nil, "tcp://127.0.0.1:%d", 1+i), Service: []byte("web"), Route: []byte("block"),
		})
		must(t, err)
		sendRaw(t, raw, frame)
	}
	eventually(t, "the peer's excess refused", func() bool {
		return blocked.Load() == share && svc.Stats().Overload == 2*share
	})
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	resp, err := caller.Call(nanobustest.Context(t, 10*time.Second), "web", "page", []byte("still served"))
	must(t, err)
	defer resp.Release()
	if string(resp.Body) != "still served" {
		t.Fatalf("body %q", resp.Body)
	}
}

// A request runs no longer than its route's timeout, whatever deadline
// the asker claims.
func TestClaimedDeadlineIsCappedByTheRoute(t *testing.T) {
	got := make(chan time.Duration, 1)
	svc := newNode(t, nanobus.Config{Service: "web"})
	must(t, svc.Handle("page", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		dl, _ := ctx.Deadline()
		got <- time.Until(dl)
		return nanobus.Reply{}, nil
	}, nanobus.Timeout(300*time.Millisecond)))
	raw := rawSocket(t, svc.Addr())
	frame, err := wire.AppendRequest(nil, &wire.Request{
		ID: wire.ID{Node: 1, Seq: 1}, Deadline: time.Now().Add(5 * time.Minute).UnixNano(),
		Service: []byte("web"), Route: []byte("page"),
	})
	must(t, err)
	sendRaw(t, raw, frame)
	if left := receive(t, got); left > 300*time.Millisecond {
		t.Fatalf("the handler has %v: the asker's 5 minutes, not the route's 300ms", left)
	}
}

// A node on a TLS bus does not dial a plain address a registry hands it:
// nothing goes out in clear.
func TestTLSNodeNeverDialsPlain(t *testing.T) {
	var got atomic.Int64
	plain := newNode(t, nanobus.Config{Service: "echo"})
	must(t, plain.Handle("echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		got.Add(1)
		return nanobus.Reply{}, nil
	}))
	ca := nanobustest.NewCA(t)
	secure := newNode(t, nanobus.Config{Listen: "tls+tcp://127.0.0.1:0", TLS: ca.Config(t, "front")})
	secure.AddPeer(plain.Peer())
	if in := secure.Instances("echo"); len(in) != 0 {
		t.Fatalf("a plain peer listed as an instance: %+v", in)
	}
	if s := secure.Stats(); s.PlainRefused != 1 {
		t.Fatalf("plain peers refused: %d, want 1", s.PlainRefused)
	}
	for range 10 {
		_, err := secure.Call(context.Background(), "echo", "echo", []byte("Cookie: secret"))
		if !errors.Is(err, nanobus.ErrNoPeer) {
			t.Fatalf("call to a plain peer: %v, want ErrNoPeer", err)
		}
	}
	if got.Load() != 0 {
		t.Fatalf("the plain peer received %d requests", got.Load())
	}
}

// pair starts a service "s" with route "r" answered by h, and a caller
// connected to it.
func pair(t *testing.T, h nanobus.Handler) (caller, svc *nanobus.Node) {
	t.Helper()
	svc = newNode(t, nanobus.Config{Service: "s"})
	must(t, svc.Handle("r", h))
	caller = newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	return caller, svc
}

// receive waits (10s at most) for a value from ch.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received in 10s")
		panic("unreachable")
	}
}
