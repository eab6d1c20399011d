package nanobus_test

import (
	"context"
	"errors"
	"fmt"
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
