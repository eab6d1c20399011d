package nanobus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/xbus"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/wire"
)

// rawSocket dials addr (unless "") with a bare BUS socket, to send frames a
// well-behaved node never would; opts are socket options, name and value,
// set before dialing.
func rawSocket(t *testing.T, addr string, opts ...any) mangos.Socket {
	t.Helper()
	s, err := xbus.NewSocket()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := 0; i+1 < len(opts); i += 2 {
		if err := s.SetOption(opts[i].(string), opts[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if addr == "" {
		return s
	}
	// Wait for the attach, so that a test's first send counts.
	attached := onAttach(s)
	if err := s.Dial(addr); err != nil {
		t.Fatal(err)
	}
	select {
	case <-attached:
	case <-time.After(10 * time.Second):
		t.Fatalf("no pipe to %s after 10s", addr)
	}
	return s
}

// onAttach returns a channel that gets a value once s has a pipe attached.
// (A message sent before that goes nowhere: mangos drops it.)
func onAttach(s mangos.Socket) <-chan struct{} {
	attached := make(chan struct{}, 1)
	s.SetPipeEventHook(func(ev mangos.PipeEvent, _ mangos.Pipe) {
		if ev == mangos.PipeEventAttached {
			select {
			case attached <- struct{}{}:
			default:
			}
		}
	})
	return attached
}

func sendRaw(t *testing.T, s mangos.Socket, frame []byte) {
	t.Helper()
	if err := s.Send(frame); err != nil {
		t.Fatal(err)
	}
}

func TestDeadlineAtTheCaller(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "slow"})
	release := make(chan struct{})
	must(t, svc.Handle("slow", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		<-release
		return nanobus.Reply{Body: []byte("late")}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := caller.Call(ctx, "slow", "slow", nil)
	if !errors.Is(err, nanobus.ErrDeadline) {
		t.Fatalf("err = %v, want ErrDeadline", err)
	}
	close(release)
	// The handler finished after the deadline: the service drops the reply.
	eventually(t, "service drops the expired reply", func() bool { return svc.Stats().ExpiredInHandler == 1 })
	if s := caller.Stats(); s.Timeouts != 1 || s.InFlight != 0 {
		t.Fatalf("caller timeouts %d in flight %d, want 1, 0", s.Timeouts, s.InFlight)
	}
}

func TestHandlerContextEndsAtDeadline(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	got := make(chan time.Duration, 1)
	must(t, svc.Handle("wait", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			got <- -1
		} else {
			got <- time.Until(dl)
		}
		<-ctx.Done()
		return nanobus.Reply{}, ctx.Err()
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := caller.Call(ctx, "s", "wait", nil); !errors.Is(err, nanobus.ErrDeadline) {
		t.Fatalf("err = %v", err)
	}
	if left := <-got; left <= 0 || left > 300*time.Millisecond {
		t.Fatalf("handler saw %v left, want the caller's deadline", left)
	}
}

// A request that arrives after its deadline never reaches the handler.
func TestExpiredOnArrivalIsDropped(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	var ran atomic.Int32
	must(t, svc.Handle("x", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		ran.Add(1)
		return nanobus.Reply{}, nil
	}))
	raw := rawSocket(t, svc.Addr())
	frame, err := wire.AppendRequest(nil, &wire.Request{
		ID: wire.ID{Node: 1, Seq: 1}, Deadline: time.Now().Add(-time.Second).UnixNano(),
		From: []byte("tcp://127.0.0.1:1"), Service: []byte("s"), Route: []byte("x"),
	})
	if err != nil {
		t.Fatal(err)
	}
	sendRaw(t, raw, frame)
	eventually(t, "expired request counted", func() bool { return svc.Stats().ExpiredOnArrival == 1 })
	if ran.Load() != 0 {
		t.Fatal("handler ran for an expired request")
	}
}

// Garbage on the bus is counted and logged, never a panic, and the node
// keeps serving.
func TestMalformedFramesAreCounted(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	raw := rawSocket(t, svc.Addr())
	good, _ := wire.AppendRequest(nil, &wire.Request{From: []byte("tcp://127.0.0.1:1"), Route: []byte("echo")})
	// (An empty frame is a dialer's hello: the transport drops it unseen.)
	bad := [][]byte{{1}, {9, 1, 0, 0}, good[:len(good)-1], append(good[:len(good):len(good)], 0), {1, 2, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
	for _, f := range bad {
		sendRaw(t, raw, f)
	}
	// The last is a reply-kind frame: on a connection a peer dialed, where
	// only requests belong, it is misdirected before it is malformed.
	eventually(t, "malformed frames counted", func() bool {
		s := svc.Stats()
		return s.Malformed == uint64(len(bad)-1) && s.Misdirected == 1
	})

	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	resp, err := caller.Call(context.Background(), "echo", "echo", []byte("still here"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if string(resp.Body) != "still here" {
		t.Fatalf("body %q", resp.Body)
	}
}

// Replies that match no waiting call are dropped and counted by kind. They
// come from an instance the caller dialed: on its own connection, an
// instance may say anything.
func TestStrayRepliesAreCounted(t *testing.T) {
	caller := newNode(t, nanobus.Config{})
	raw := rawInstance(t, caller, "raw")
	reply := func(id wire.ID) []byte {
		b, err := wire.AppendReply(nil, &wire.Reply{ID: id, Status: 200})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sendRaw(t, raw, reply(wire.ID{Node: caller.ID() ^ 0xff, Seq: 1})) // an earlier life's
	sendRaw(t, raw, reply(wire.ID{Node: caller.ID(), Seq: 1 << 40}))  // never asked
	eventually(t, "stray replies counted", func() bool {
		s := caller.Stats()
		return s.StaleReplies == 1 && s.UnknownReplies == 1
	})

	// A reply after its call was answered is late.
	svc := newNode(t, nanobus.Config{Service: "slow"})
	must(t, svc.Handle("slow", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, nil
	}))
	connect(t, caller, svc)
	resp, err := caller.Call(context.Background(), "slow", "slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	sendRaw(t, raw, reply(wire.ID{Node: caller.ID(), Seq: 1<<32 | 7})) // the first call's counter
	eventually(t, "late reply counted", func() bool { return caller.Stats().LateReplies == 1 })
}

// rawInstance is a bare BUS socket listening as an instance of service,
// which caller dials: a peer that can send caller anything on the
// connection caller opened to it.
func rawInstance(t *testing.T, caller *nanobus.Node, service string) mangos.Socket {
	t.Helper()
	s, err := xbus.NewSocket()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	attached := onAttach(s)
	l, err := s.NewListener("tcp://127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	caller.AddPeer(nanobus.Peer{Service: service, Addr: l.Address()})
	eventually(t, "the caller connected to "+service, func() bool {
		in := caller.Instances(service)
		return len(in) == 1 && in[0].Ready
	})
	select { // this side's pipe too: a send before it is attached goes nowhere
	case <-attached:
	case <-time.After(10 * time.Second):
		t.Fatal("the caller's connection never attached")
	}
	return s
}

// Correlation IDs cannot collide across restarts: each start draws a new
// incarnation.
func TestIncarnationsDiffer(t *testing.T) {
	seen := map[uint64]bool{}
	for range 20 {
		n, err := nanobus.NewNode(nanobus.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if seen[n.ID()] || n.ID() == 0 {
			t.Fatalf("incarnation %x repeated", n.ID())
		}
		seen[n.ID()] = true
		n.Close()
	}
}

// Closing a service node fails the calls waiting on it at once, not at
// their deadline.
func TestPeerLostFailsCallsAtOnce(t *testing.T) {
	svc, err := nanobus.NewNode(nanobus.Config{Service: "s"})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 10)
	must(t, svc.Handle("block", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nanobus.Reply{}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)

	const calls = 10
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, calls)
	for range calls {
		go func() {
			_, err := caller.Call(ctx, "s", "block", nil)
			errs <- err
		}()
	}
	for range calls {
		<-started
	}
	begin := time.Now()
	svc.Close()
	for range calls {
		if err := <-errs; !errors.Is(err, nanobus.ErrPeerLost) {
			t.Fatalf("err = %v, want ErrPeerLost", err)
		}
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Fatalf("calls failed after %v: should be at once, not at the 30s deadline", took)
	}
	if s := caller.Stats(); s.PeerLost != calls || s.InFlight != 0 {
		t.Fatalf("peer lost %d in flight %d", s.PeerLost, s.InFlight)
	}
	if _, err := caller.Call(ctx, "s", "block", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("call after the peer went: %v, want ErrNoPeer", err)
	}
}

// A request whose instance dies mid-call is retried once on another
// instance when its route is idempotent, as the instances declared it: a
// public GET unless declared otherwise, an internal route only when
// declared. Anything else fails at once with ErrPeerLost.
func TestIdempotentRetryOnPeerLost(t *testing.T) {
	for _, tt := range []struct {
		route, method string
		opts          []nanobus.RouteOption
		retried       bool
	}{
		{"GET /x", "GET", nil, true},
		{"GET /x", "GET", []nanobus.RouteOption{nanobus.NotIdempotent()}, false},
		{"POST /x", "POST", nil, false},
		{"PUT /x", "PUT", []nanobus.RouteOption{nanobus.Idempotent()}, true},
		{"s.get", "", []nanobus.RouteOption{nanobus.Idempotent()}, true},
		{"s.put", "", nil, false},
	} {
		t.Run(tt.route+fmt.Sprint(len(tt.opts)), func(t *testing.T) {
			caller := newNode(t, nanobus.Config{})
			dying := newNode(t, nanobus.Config{Service: "s"})
			started := make(chan struct{}, 100)
			must(t, dying.Handle(tt.route, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
				started <- struct{}{}
				<-ctx.Done()
				return nanobus.Reply{}, nil
			}, tt.opts...))
			connect(t, caller, dying)
			healthy := newNode(t, nanobus.Config{Service: "s"})
			must(t, healthy.Handle(tt.route, func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
				return nanobus.Reply{Body: []byte("ok")}, nil
			}, tt.opts...))
			connect(t, caller, healthy)

			// Keep calling until one lands on the dying instance, then kill it.
			errs := make(chan error, 100)
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					resp, err := caller.Do(context.Background(), "s", &wire.Request{Route: []byte(tt.route), Method: []byte(tt.method)})
					if err == nil {
						if string(resp.Body) != "ok" {
							err = fmt.Errorf("body %q", resp.Body)
						}
						resp.Release()
					}
					errs <- err
				})
			}
			<-started
			dying.Close()
			wg.Wait()
			close(errs)
			lost := 0
			for err := range errs {
				switch {
				case errors.Is(err, nanobus.ErrPeerLost):
					lost++
				case err != nil:
					t.Fatal(err)
				}
			}
			retries := caller.Stats().Retries
			if tt.retried && (lost > 0 || retries == 0) || !tt.retried && (lost == 0 || retries > 0) {
				t.Fatalf("retried %v: %d calls lost, %d retries\n%+v", tt.retried, lost, retries, caller.Stats())
			}
		})
	}
}

// Over the in-flight bound calls fail at once with ErrBusy: never a hang,
// never a silent loss. Every call ends replied, busy or expired.
func TestBackPressure(t *testing.T) {
	const bound, burst = 8, 100
	svc := newNode(t, nanobus.Config{Service: "slow", MaxInFlight: bound})
	must(t, svc.Handle("slow", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		time.Sleep(50 * time.Millisecond)
		return nanobus.Reply{}, nil
	}))
	caller := newNode(t, nanobus.Config{MaxInFlight: bound})
	connect(t, caller, svc)

	var replied, busy, expired, other atomic.Int64
	var wg sync.WaitGroup
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			resp, err := caller.Call(ctx, "slow", "slow", nil)
			switch {
			case err == nil:
				replied.Add(1)
				resp.Release()
			case errors.Is(err, nanobus.ErrBusy):
				busy.Add(1)
			case errors.Is(err, nanobus.ErrDeadline):
				expired.Add(1)
			default:
				other.Add(1)
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r, b, e := replied.Load(), busy.Load(), expired.Load()
	t.Logf("replied %d busy %d expired %d", r, b, e)
	if r+b+e != burst || other.Load() != 0 {
		t.Fatalf("replied %d + busy %d + expired %d != sent %d", r, b, e, burst)
	}
	if b == 0 || r < bound {
		t.Fatalf("want some busy and at least %d replied: replied %d busy %d", bound, r, b)
	}
	cs, ss := caller.Stats(), svc.Stats()
	if cs.Busy != uint64(b) || cs.Replies != uint64(r) || cs.Calls != uint64(r+e) {
		t.Fatalf("caller stats disagree: %+v", cs)
	}
	if ss.Requests != cs.Calls || ss.Overload != 0 || ss.Undeliverable != 0 {
		t.Fatalf("service saw %d requests (overload %d, undeliverable %d) of %d sent",
			ss.Requests, ss.Overload, ss.Undeliverable, cs.Calls)
	}
}

// A service that restarts on the same address is called again once the
// caller's connection comes back by itself.
func TestPeerRestart(t *testing.T) {
	svc, err := nanobus.NewNode(nanobus.Config{Service: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	must(t, svc.Handle("echo", echo))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	addr := svc.Addr()
	svc.Close()
	eventually(t, "caller sees the peer down", func() bool { return !caller.Instances("echo")[0].Ready })

	svc2 := newNode(t, nanobus.Config{Service: "echo", Listen: addr})
	must(t, svc2.Handle("echo", echo))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := caller.WaitReady(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	resp, err := caller.Call(ctx, "echo", "echo", []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if string(resp.Body) != "again" {
		t.Fatalf("body %q", resp.Body)
	}
}

// Shutdown lets running handlers answer and refuses new requests.
func TestShutdownDrains(t *testing.T) {
	svc, err := nanobus.NewNode(nanobus.Config{Service: "s"})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	must(t, svc.Handle("work", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		close(started)
		<-release
		return nanobus.Reply{Body: []byte("done")}, nil
	}))
	must(t, svc.Handle("new", echo))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)

	inflight := make(chan error, 1)
	go func() {
		resp, err := caller.Call(context.Background(), "s", "work", nil)
		if err == nil && string(resp.Body) != "done" {
			err = errors.New("wrong body " + string(resp.Body))
		}
		inflight <- err
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- svc.Shutdown(context.Background()) }()
	eventually(t, "draining refuses new requests", func() bool {
		_, err := caller.Call(context.Background(), "s", "new", nil)
		return errors.Is(err, nanobus.ErrUnavailable)
	})
	close(release)
	if err := <-inflight; err != nil {
		t.Fatalf("in-flight call during drain: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// A peer taken off the registry (it deregisters before it drains) still
// answers the calls already sent to it.
func TestRemovePeerLetsCallsFinish(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	started := make(chan struct{})
	must(t, svc.Handle("slow", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		close(started)
		time.Sleep(200 * time.Millisecond)
		return nanobus.Reply{Body: []byte("done")}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	got := make(chan error, 1)
	go func() {
		resp, err := caller.Call(context.Background(), "s", "slow", nil)
		if err == nil {
			resp.Release()
		}
		got <- err
	}()
	<-started
	caller.RemovePeer(nanobus.Peer{Service: "s", Addr: svc.Addr()})
	if err := <-got; err != nil {
		t.Fatalf("call in flight when its peer left the registry: %v", err)
	}
	if _, err := caller.Call(context.Background(), "s", "slow", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("new call after RemovePeer: %v, want ErrNoPeer", err)
	}
}

// Shutdown while callers keep calling: running handlers finish, new
// requests are refused (and retried elsewhere when there is an elsewhere),
// nothing hangs or panics.
func TestShutdownUnderLoad(t *testing.T) {
	caller := newNode(t, nanobus.Config{})
	var nodes []*nanobus.Node
	for range 2 {
		n, err := nanobus.NewNode(nanobus.Config{Service: "s"})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		must(t, n.Handle("work", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			time.Sleep(time.Millisecond)
			return nanobus.Reply{Body: req.Body}, nil
		}))
		connect(t, caller, n)
		nodes = append(nodes, n)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := caller.Call(context.Background(), "s", "work", []byte("x"))
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				resp.Release()
			}
		}()
	}
	eventually(t, "calls flowing before the shutdown", func() bool { return ok.Load() >= 100 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nodes[0].Shutdown(ctx); err != nil {
		t.Fatalf("shutdown under load: %v", err)
	}
	after := ok.Load()
	eventually(t, "calls answered by the other instance after the shutdown", func() bool { return ok.Load() >= after+100 })
	close(stop)
	wg.Wait()
	t.Logf("ok %d, failed %d", ok.Load(), failed.Load())
	if ok.Load() == 0 {
		t.Fatal("no call succeeded")
	}
}

// Over its handler limit a node puts the calls handlers make for the
// requests they serve (work admitted upstream, marked nested) before new
// work: with its one slot held, new work is refused busy and a nested call
// still runs.
func TestNestedCallsBeforeNewWork(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	b := newNode(t, nanobus.Config{Service: "b", Limiter: limit.New(1, 1, 1)})
	must(t, b.Handle("hold", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		<-hold
		return nanobus.Reply{}, nil
	}))
	must(t, b.Handle("echo", echo))
	a := newNode(t, nanobus.Config{Service: "a"})
	connect(t, a, b)
	must(t, a.Handle("page", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		resp, err := a.Call(ctx, "b", "echo", []byte("nested"))
		if err != nil {
			return nanobus.Reply{}, err
		}
		defer resp.Release()
		return nanobus.Reply{Body: append([]byte(nil), resp.Body...)}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, a)
	connect(t, caller, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go caller.Call(ctx, "b", "hold", nil)
	eventually(t, "b's one slot held", func() bool { return b.Stats().Serving == 1 })
	if _, err := caller.Call(ctx, "b", "echo", nil); !errors.Is(err, nanobus.ErrBusy) {
		t.Fatalf("new work over the limit: %v, want ErrBusy", err)
	}
	resp, err := caller.Call(ctx, "a", "page", nil)
	if err != nil {
		t.Fatalf("nested call over the limit: %v", err)
	}
	defer resp.Release()
	if string(resp.Body) != "nested" {
		t.Fatalf("page answered %q", resp.Body)
	}
}
