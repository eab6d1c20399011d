package nanobus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/terminator-gw/terminator/wire"
)

// Peer is one live instance of a service, as a registry sees it.
type Peer struct {
	Service string  `json:"service"`           // the service the instance runs, e.g. "profiles"
	Addr    string  `json:"addr"`              // its bus address, e.g. "tcp://10.0.0.5:7100"
	Weight  int     `json:"weight"`            // relative share of calls among the service's instances; 0 counts as 1
	Version string  `json:"version,omitempty"` // the version it runs
	Routes  []Route `json:"-"`                 // what it declared about its routes: timeouts, idempotency
}

// Peers is the small interface a registry drives to tell a node who is out
// there. *Node implements it; discovery/ feeds it from etcd, a test can feed
// it by hand. Adding a peer that is already known updates what it says
// (weight, version, routes).
type Peers interface {
	AddPeer(Peer)
	RemovePeer(Peer)
}

// instance is one entry of a service's instance list. Lists are copied on
// write, so an instance never changes once published.
type instance struct {
	conn    *conn
	weight  int64
	version string
	routes  map[string]Route
}

func newInstance(c *conn, p Peer) instance {
	in := instance{conn: c, weight: int64(max(p.Weight, 1)), version: p.Version}
	if len(p.Routes) > 0 {
		in.routes = make(map[string]Route, len(p.Routes))
		for _, r := range p.Routes {
			in.routes[r.Name] = r
		}
	}
	return in
}

// idempotent reports whether req may run twice, as the instance declared
// its route; a public GET or HEAD the instance did not declare counts as
// idempotent.
func (in *instance) idempotent(req *wire.Request) bool {
	if r, ok := in.routes[string(req.Route)]; ok {
		return r.Idempotent
	}
	return string(req.Method) == "GET" || string(req.Method) == "HEAD"
}

// timeout is the deadline the instance asks for route, or def.
func (in *instance) timeout(route []byte, def time.Duration) time.Duration {
	if r, ok := in.routes[string(route)]; ok && r.Timeout > 0 {
		return r.Timeout
	}
	return def
}

// AddPeer starts dialing p (if no conn to its address exists) and lists it
// as an instance of p.Service. Calls go to it once its connection is up.
func (n *Node) AddPeer(p Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return
	}
	old := *n.instances.Load()
	list := old[p.Service]
	for i, in := range list {
		if in.conn.addr == p.Addr {
			next := append([]instance(nil), list...)
			next[i] = newInstance(in.conn, p)
			n.storeInstances(old, p.Service, next)
			return
		}
	}
	c := n.conns[p.Addr]
	if c == nil {
		var err error
		if c, err = n.newConn(p.Addr); err != nil {
			n.log.Warn("cannot add peer", "service", p.Service, "addr", p.Addr, "err", err)
			return
		}
		n.conns[p.Addr] = c
	}
	c.refs++
	next := append(append([]instance(nil), list...), newInstance(c, p))
	n.storeInstances(old, p.Service, next)
}

// RemovePeer stops sending p.Service's calls to p. Calls already waiting
// on it get their replies: a peer leaves the registry before it stops
// answering. The connection closes when the peer goes away.
func (n *Node) RemovePeer(p Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := *n.instances.Load()
	list := old[p.Service]
	for i, in := range list {
		if in.conn.addr != p.Addr {
			continue
		}
		next := append(append([]instance(nil), list[:i]...), list[i+1:]...)
		n.storeInstances(old, p.Service, next)
		// The conn stays: calls in flight on it finish, and replies to the
		// peer's own calls still go out. It closes when its pipe goes
		// (connLost), as when the departed process exits.
		in.conn.refs--
		return
	}
}

// storeInstances publishes a new service -> instances map (copy on write:
// calls read it without a lock). Called with n.mu held.
func (n *Node) storeInstances(old map[string][]instance, service string, list []instance) {
	next := make(map[string][]instance, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if len(list) == 0 {
		delete(next, service)
	} else {
		next[service] = list
	}
	n.instances.Store(&next)
}

// Instances reports the known instances of service and whether each is
// connected.
func (n *Node) Instances(service string) []PeerState {
	list := (*n.instances.Load())[service]
	out := make([]PeerState, len(list))
	for i, in := range list {
		out[i] = PeerState{
			Peer:     Peer{Service: service, Addr: in.conn.addr, Weight: int(in.weight), Version: in.version},
			Ready:    in.conn.ready.Load(),
			InFlight: int(in.conn.inflight.Load()),
		}
	}
	return out
}

// PeerState is a peer as the node sees it now.
type PeerState struct {
	Peer
	Ready    bool `json:"ready"`     // connected: calls can go to it
	InFlight int  `json:"in_flight"` // calls waiting on its connection
}

// pick chooses an instance of service by the power of two choices: two
// connected instances at random, the one with fewer calls in flight per
// unit of weight wins. It takes an in-flight slot on the chosen conn.
// avoid, if not nil, is not chosen (the instance a retry moves away from).
func (n *Node) pick(service string, avoid *conn) (*instance, error) {
	list := (*n.instances.Load())[service]
	var a, b *instance
	switch len(list) {
	case 0:
	case 1:
		a = &list[0]
	default:
		i := rand.IntN(len(list))
		j := rand.IntN(len(list) - 1)
		if j >= i {
			j++
		}
		a, b = &list[i], &list[j]
	}
	usable := func(in *instance) bool { return in != nil && in.conn != avoid && in.conn.ready.Load() }
	if !usable(a) || !usable(b) {
		// Fall back to the first usable ones from a random start: peers
		// that are down are skipped, not chosen.
		a, b = nil, nil
		start := 0
		if len(list) > 0 {
			start = rand.IntN(len(list))
		}
		for k := range list {
			in := &list[(start+k)%len(list)]
			if !usable(in) {
				continue
			}
			if a == nil {
				a = in
			} else {
				b = in
				break
			}
		}
	}
	if a == nil {
		n.stats.noPeer.Add(1)
		return nil, ErrNoPeer
	}
	if b != nil && b.conn.inflight.Load()*a.weight < a.conn.inflight.Load()*b.weight {
		a, b = b, a
	}
	max := int64(n.cfg.MaxInFlight)
	for _, in := range [2]*instance{a, b} {
		if in == nil {
			continue
		}
		if in.conn.inflight.Add(1) <= max {
			return in, nil
		}
		in.conn.inflight.Add(-1)
	}
	n.stats.busy.Add(1)
	return nil, ErrBusy
}

// WaitReady waits until at least one instance of service is connected, or
// ctx ends. Calls made before that fail with ErrNoPeer: a node does not
// queue work for a peer that may never come up.
func (n *Node) WaitReady(ctx context.Context, service string) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		for _, in := range (*n.instances.Load())[service] {
			if in.conn.ready.Load() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", service, ErrNoPeer)
		case <-t.C:
		}
	}
}
