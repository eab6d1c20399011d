package nanobus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	_ "github.com/terminator-gw/terminator/nanobus/transport" // the bus's tcp:// transport
	"github.com/terminator-gw/terminator/wire"
)

// A service registers a handler; another node calls it.
func Example() {
	// The service: a node that serves "greeter" on a free loopback port.
	svc, err := nanobus.NewNode(nanobus.Config{Service: "greeter"})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	err = svc.Handle("greeter.hello", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		if len(req.Body) == 0 {
			return nanobus.Reply{}, nanobus.Errorf(400, "say who to greet")
		}
		return nanobus.Reply{Body: fmt.Appendf(nil, "hello, %s", req.Body)}, nil
	}, nanobus.Idempotent(), nanobus.Timeout(500*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}

	// The caller: told about the service by hand here (its routes say
	// what they declared), by discovery from etcd in production.
	caller, err := nanobus.NewNode(nanobus.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer caller.Close()
	caller.AddPeer(svc.Peer())

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := caller.WaitReady(ctx, "greeter"); err != nil {
		log.Fatal(err)
	}
	for _, who := range []string{"world", ""} {
		resp, err := caller.Call(ctx, "greeter", "greeter.hello", []byte(who))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(resp.Status, string(resp.Body))
		resp.Release()
	}
	// Output:
	// 200 hello, world
	// 400 say who to greet
}

// Routes are checked when they are registered: a typo is an error, not a
// route nobody can reach.
func ExampleNode_Handle_checked() {
	n, err := nanobus.NewNode(nanobus.Config{Service: "profiles"})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	noop := func(context.Context, *nanobus.Request) (nanobus.Reply, error) { return nanobus.Reply{}, nil }
	fmt.Println(n.Handle("GET /profiles/{id}", noop))
	fmt.Println(n.Handle("profiles.get", noop, nanobus.Idempotent()))
	fmt.Println(n.Handle("GET/profiles", noop))
	fmt.Println(n.Handle("profiles.get", noop))
	for _, r := range n.Routes() {
		fmt.Printf("%s public=%v idempotent=%v\n", r.Name, r.Public(), r.Idempotent)
	}
	// Output:
	// <nil>
	// <nil>
	// route "GET/profiles": want "METHOD /path", e.g. "GET /profiles/{id}"
	// route "profiles.get": registered already
	// GET /profiles/{id} public=true idempotent=true
	// profiles.get public=false idempotent=true
}

// A public route whose handler calls another service: the two-hop chain of
// an aggregator in front of a domain service. A bus error the handler
// passes on reaches the client as the status it means (here, a 504 for a
// call whose deadline passed), not as a 500.
func ExampleNode_Handle() {
	profiles, _ := nanobus.NewNode(nanobus.Config{Service: "profiles"})
	defer profiles.Close()
	_ = profiles.Handle("profiles.name", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		switch string(req.Body) {
		case "7":
			return nanobus.Reply{Body: []byte("Ann")}, nil
		case "9": // slow: past any deadline
			<-ctx.Done()
			return nanobus.Reply{}, ctx.Err()
		}
		return nanobus.Reply{}, nanobus.Errorf(404, "no profile %s", req.Body)
	}, nanobus.Idempotent())

	web, _ := nanobus.NewNode(nanobus.Config{Service: "web"})
	defer web.Close()
	web.AddPeer(profiles.Peer())
	_ = web.Handle("GET /profiles/{id}", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		// ctx carries the request's deadline to the next hop; give the
		// call half of what is left.
		dl, _ := ctx.Deadline()
		call := nanobus.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		resp, err := web.Call(call, "profiles", "profiles.name", []byte(req.PathValue("id")))
		if err != nil {
			return nanobus.Reply{}, fmt.Errorf("profiles: %w", err) // a 504, 503, 502... as StatusOf says
		}
		defer resp.Release()
		if resp.Status != 200 {
			return nanobus.Reply{}, nanobus.Errorf(resp.Status, "%s", resp.Body)
		}
		rep := nanobus.Reply{Body: fmt.Appendf(nil, `{"name":%q}`, resp.Body)}
		rep.Header.Add("Content-Type", "application/json")
		return rep, nil
	})

	front, _ := nanobus.NewNode(nanobus.Config{})
	defer front.Close()
	front.AddPeer(web.Peer())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = front.WaitReady(ctx, "web")
	_ = web.WaitReady(ctx, "profiles")

	for _, path := range []string{"/profiles/7", "/profiles/8", "/profiles/9"} {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := front.Do(rctx, "web", &wire.Request{
			Route: []byte("GET /profiles/{id}"), Method: []byte("GET"), Path: []byte(path),
		})
		cancel()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(resp.Status, string(resp.Header.Get("content-type")), string(resp.Body))
		resp.Release()
	}
	// Output:
	// 200 application/json {"name":"Ann"}
	// 404  no profile 8
	// 504  deadline passed before the reply
}

// StatusOf is the one table from errors to HTTP statuses: the terminator
// answers bus errors with it, and a node answers with it for whatever its
// handler returns.
func ExampleStatusOf() {
	for _, err := range []error{
		nanobus.Errorf(409, "already flirted"),
		fmt.Errorf("profiles: %w", nanobus.ErrDeadline),
		nanobus.ErrNoPeer,
		nanobus.ErrPeerLost,
		errors.New("disk on fire"),
	} {
		st := nanobus.StatusOf(err)
		fmt.Println(st.Code, st.Message, st.RetryAfter)
	}
	// Output:
	// 409 already flirted false
	// 504 deadline passed before the reply false
	// 503 no live instance of the service true
	// 502 connection to the service lost false
	// 500 internal error false
}

// A handler that needs several answers starts each call with Go and then
// waits for each: the calls run at once, with no goroutine each.
func ExampleNode_Go() {
	counts, _ := nanobus.NewNode(nanobus.Config{Service: "counts"})
	defer counts.Close()
	_ = counts.Handle("counts.get", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: fmt.Appendf(nil, "%d", len(req.Body))}, nil
	}, nanobus.Idempotent())

	caller, _ := nanobus.NewNode(nanobus.Config{})
	defer caller.Close()
	caller.AddPeer(counts.Peer())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = caller.WaitReady(ctx, "counts")

	words := []string{"visits", "flirts", "no-such-service"}
	pending := make([]*nanobus.Pending, len(words))
	for i, w := range words {
		service := "counts"
		if w == "no-such-service" {
			service = w
		}
		pending[i] = caller.Go(ctx, service, "counts.get", []byte(w))
	}
	for i, p := range pending {
		resp, err := p.Wait()
		if err != nil {
			fmt.Println(words[i], "->", err)
			continue
		}
		fmt.Println(words[i], "->", string(resp.Body))
		resp.Release()
	}
	// Output:
	// visits -> 6
	// flirts -> 6
	// no-such-service -> nanobus: no live instance of the service
}

// A stream route answers one call with many chunks: the caller reads them
// as they come, and its credit keeps a fast handler from running ahead of
// a slow reader.
func ExampleNode_HandleStream() {
	svc, err := nanobus.NewNode(nanobus.Config{Service: "clock"})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	err = svc.HandleStream("clock.ticks", func(ctx context.Context, req *nanobus.Request, w *nanobus.StreamWriter) error {
		w.Header.Add("Content-Type", "text/event-stream")
		for i := range 3 {
			var h wire.Headers
			h.Add("id", fmt.Sprint(i))
			if err := w.Send(h, fmt.Appendf(nil, "tick %d", i)); err != nil {
				return err // the caller went away, or the deadline passed
			}
		}
		return nil // the stream ends complete
	})
	if err != nil {
		log.Fatal(err)
	}
	caller, err := nanobus.NewNode(nanobus.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer caller.Close()
	caller.AddPeer(svc.Peer())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := caller.WaitReady(ctx, "clock"); err != nil {
		log.Fatal(err)
	}

	s, err := caller.Stream(ctx, "clock", "clock.ticks", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // a stream closed before its end is cancelled at the handler
	fmt.Println(s.Status, string(s.Header.Get("Content-Type")))
	for {
		h, body, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %s\n", h.Get("id"), body)
	}
	// Output:
	// 200 text/event-stream
	// 0: tick 0
	// 1: tick 1
	// 2: tick 2
}

// A route whose latency has a tail declares hedging: a caller whose call
// has no answer after the delay sends a copy to another instance and takes
// the first answer, cancelling the other. Only idempotent routes may.
func ExampleHedge() {
	n, err := nanobus.NewNode(nanobus.Config{Service: "profiles"})
	if err != nil {
		log.Fatal(err)
	}
	defer n.Close()
	get := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: []byte(`{"id":1}`)}, nil
	}
	fmt.Println(n.Handle("profiles.get", get, nanobus.Idempotent(), nanobus.Hedge(20*time.Millisecond)))
	// 0: after the route's p95, as each caller measures it.
	fmt.Println(n.Handle("profiles.list", get, nanobus.Idempotent(), nanobus.Hedge(0)))
	fmt.Println(n.Handle("profiles.put", get, nanobus.Hedge(0)))
	// Output:
	// <nil>
	// <nil>
	// route "profiles.put": hedging needs an idempotent route and a delay of 0 to 5m0s
}
