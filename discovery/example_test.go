package discovery_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/embedded"
	"github.com/terminator-gw/terminator/nanobus"
)

// peerEvents stands in for a *nanobus.Node, which is what a real caller
// passes as WatchOptions.Peers.
type peerEvents chan string

func (c peerEvents) AddPeer(p nanobus.Peer)    { c <- "add " + p.Service + " " + p.Addr }
func (c peerEvents) RemovePeer(p nanobus.Peer) { c <- "remove " + p.Service + " " + p.Addr }

// A node registers itself; a watcher (a terminator, or any caller) sees it
// come and go.
func Example() {
	dir, err := os.MkdirTemp("", "discovery-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	etcd, err := embedded.Start(embedded.Config{Dir: dir}) // free loopback ports
	if err != nil {
		panic(err)
	}
	defer etcd.Close()
	cli, err := discovery.ClientConfig{Endpoints: etcd.Endpoints()}.Client()
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	events := make(peerEvents, 10)
	w, err := discovery.Watch(ctx, cli, discovery.WatchOptions{Peers: events, Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer w.Close()

	reg, err := discovery.Register(ctx, cli, discovery.Registration{
		Service: "profiles", Node: "7f3a9c01e2d4b5a6", Addr: "tcp://127.0.0.1:7100",
		Version: "1.4.2", Weight: 1,
		Routes: []discovery.Route{{Route: "GET /profiles/{id}", TimeoutMS: 800}},
	}, discovery.RegisterOptions{TTL: 2 * time.Second, Logger: quiet})
	if err != nil {
		panic(err)
	}
	fmt.Println("key:", reg.Key(), "registered:", reg.Registered() == nil)

	fmt.Println(<-events)

	// Changes signals (after Peers was told); Snapshot has the records
	// (routes, timeouts, versions) the terminator builds its routing table
	// from.
	<-w.Changes()
	for _, r := range w.Snapshot() {
		fmt.Println("known:", r.Service, r.Version, r.Addr, r.Routes[0].Route, r.Routes[0].TimeoutMS, "ms")
	}

	reg.Close() // revokes the lease: watchers drop the node at once
	fmt.Println(<-events)
	<-w.Changes()
	fmt.Println("known:", len(w.Snapshot()))
	// Output:
	// key: /terminator/services/profiles/7f3a9c01e2d4b5a6 registered: true
	// add profiles tcp://127.0.0.1:7100
	// known: profiles 1.4.2 tcp://127.0.0.1:7100 GET /profiles/{id} 800 ms
	// remove profiles tcp://127.0.0.1:7100
	// known: 0
}
