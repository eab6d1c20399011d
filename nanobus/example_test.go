package nanobus_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
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
	svc.Handle("hello", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		if len(req.Body) == 0 {
			return nanobus.Reply{}, nanobus.Errorf(400, "say who to greet")
		}
		return nanobus.Reply{Body: fmt.Appendf(nil, "hello, %s", req.Body)}, nil
	})

	// The caller: told about the service by hand here, by discovery/ in
	// production.
	caller, err := nanobus.NewNode(nanobus.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer caller.Close()
	caller.AddPeer(nanobus.Peer{Service: "greeter", Addr: svc.Addr()})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := caller.WaitReady(ctx, "greeter"); err != nil {
		log.Fatal(err)
	}
	resp, err := caller.Call(ctx, "greeter", "hello", []byte("world"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, string(resp.Body))
	resp.Release()

	resp, err = caller.Call(ctx, "greeter", "hello", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, string(resp.Body))
	resp.Release()
	// Output:
	// 200 hello, world
	// 400 say who to greet
}

// A public route with a wildcard, whose handler calls another service: the
// two-hop chain of an aggregator in front of a domain service.
func ExampleNode_Handle() {
	profiles, _ := nanobus.NewNode(nanobus.Config{Service: "profiles"})
	defer profiles.Close()
	profiles.Handle("profiles.name", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		names := map[string]string{"7": "Ann"}
		name, ok := names[string(req.Body)]
		if !ok {
			return nanobus.Reply{}, nanobus.Errorf(404, "no profile %s", req.Body)
		}
		return nanobus.Reply{Body: []byte(name)}, nil
	})

	web, _ := nanobus.NewNode(nanobus.Config{Service: "web"})
	defer web.Close()
	web.AddPeer(nanobus.Peer{Service: "profiles", Addr: profiles.Addr()})
	web.Handle("GET /profiles/{id}", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		// ctx carries the request's deadline to the next hop.
		resp, err := web.Call(ctx, "profiles", "profiles.name", []byte(req.PathValue("id")))
		if err != nil {
			return nanobus.Reply{}, err
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
	front.AddPeer(nanobus.Peer{Service: "web", Addr: web.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = front.WaitReady(ctx, "web")
	_ = web.WaitReady(ctx, "profiles")

	for _, path := range []string{"/profiles/7", "/profiles/8"} {
		resp, err := front.Do(ctx, "web", &wire.Request{
			Route: []byte("GET /profiles/{id}"), Method: []byte("GET"), Path: []byte(path),
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(resp.Status, string(resp.Header.Get("content-type")), string(resp.Body))
		resp.Release()
	}
	// Output:
	// 200 application/json {"name":"Ann"}
	// 404  no profile 8
}
