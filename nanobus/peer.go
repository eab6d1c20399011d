package nanobus

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/nanobus/report"
	"github.com/terminator-gw/terminator/wire"
)

// Peer is one live instance of a service, as a registry sees it.
type Peer struct {
	Service string `json:"service"`           // the service the instance runs, e.g. "profiles"
	Addr    string `json:"addr"`              // its bus address, e.g. "tcp://10.0.0.5:7100"
	Weight  int    `json:"weight"`            // relative share of calls among the service's instances; 0 counts as 1
	Version string `json:"version,omitempty"` // the version it runs
	// Protocol is the wire protocol it announced (wire.ProtocolVersion of
	// its build): a node sends it only frame kinds of that protocol or
	// before. 0, from a registry of before protocols were announced,
	// means 1.
	Protocol int     `json:"protocol,omitempty"`
	Routes   []Route `json:"-"` // what it declared about its routes: timeouts, idempotency
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
	conn     *conn
	weight   int64
	version  string
	protocol int // the wire protocol it announced, at least 1
	routes   map[string]Route
	stats    *callStats          // calls to this service's instances of this version
	budget   *budget             // the service's retry budget
	hedges   map[string]*hedging // the service's hedged routes
}

// speaks reports whether the instance knows frames of kind k. A sender of
// a kind protocol 1 did not have (cancel, event, chunk...) asks it first:
// a node of before would not decode the frame, and a node of protocol 1
// drops a kind it does not know in silence.
func (in *instance) speaks(k wire.Kind) bool {
	p := k.Protocol()
	return p != 0 && p <= in.protocol
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

// ghostable reports whether a copy of req may go to a ghost version.
func (in *instance) ghostable(req *wire.Request) bool {
	if r, ok := in.routes[string(req.Route)]; ok && r.GhostSafe {
		return true
	}
	return in.idempotent(req)
}

// timeout is the deadline the instance asks for route, or def.
func (in *instance) timeout(route []byte, def time.Duration) time.Duration {
	if r, ok := in.routes[string(route)]; ok && r.Timeout > 0 {
		return r.Timeout
	}
	return def
}

// service is what a node knows of a service it calls: its instances and
// its rollout policy, compiled for pick. Copied on write.
type service struct {
	all    []instance
	policy *policy.Policy
	// With a policy: the instances live calls may go to, by version.
	weighted []versionList // the versions Weights names, weight > 0
	total    int           // their weights' sum
	rest     []instance    // without Weights: every instance but the ghost's
	variants map[string][]instance
	ghost    []instance
}

type versionList struct {
	weight int
	list   []instance
}

func (n *Node) compile(all []instance, p *policy.Policy) *service {
	s := &service{all: all, policy: p}
	if p == nil {
		return s
	}
	byVersion := map[string][]instance{}
	for _, in := range all {
		byVersion[in.version] = append(byVersion[in.version], in)
	}
	for _, v := range slices.Sorted(maps.Keys(p.Weights)) {
		if w := p.Weights[v]; w > 0 {
			s.weighted = append(s.weighted, versionList{w, byVersion[v]})
			s.total += w
		}
	}
	if g := p.Ghost; g != nil {
		s.ghost = byVersion[g.Version]
	}
	if len(p.Weights) == 0 {
		for _, in := range all {
			if p.Ghost == nil || in.version != p.Ghost.Version {
				s.rest = append(s.rest, in)
			}
		}
	}
	if e := p.AB; e != nil {
		s.variants = map[string][]instance{}
		for _, v := range e.Variants {
			s.variants[v.Name] = byVersion[v.Version]
		}
	}
	return s
}

// candidates fills lists with the instance lists a live call may go to, in
// the order to try them: the client's A/B variant, then a version drawn by
// weight, then the other weighted versions (a version with no instance up
// gives its share to the others). It returns how many it filled.
func (s *service) candidates(labels []byte, lists *[4][]instance) int {
	p := s.policy
	if p == nil {
		lists[0] = s.all
		return 1
	}
	k := 0
	if p.AB != nil {
		if v, ok := policy.VariantOf(labels, p.AB.Name); ok {
			if list := s.variants[v]; len(list) > 0 {
				lists[k] = list
				k++
			}
		}
	}
	if len(s.weighted) == 0 {
		lists[k] = s.rest
		return k + 1
	}
	r := rand.IntN(s.total)
	first := 0
	for i, v := range s.weighted {
		if r < v.weight {
			first = i
			break
		}
		r -= v.weight
	}
	for i := 0; i < len(s.weighted) && k < len(lists); i++ {
		lists[k] = s.weighted[(first+i)%len(s.weighted)].list
		k++
	}
	return k
}

// AddPeer starts dialing p (if no conn to its address exists) and lists it
// as an instance of p.Service. Calls go to it once its connection is up.
func (n *Node) AddPeer(p Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return
	}
	list := n.instanceList(p.Service)
	for i, in := range list {
		if in.conn.addr == p.Addr {
			next := slices.Clone(list)
			next[i] = n.newInstance(in.conn, p)
			n.storeService(p.Service, next)
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
	n.storeService(p.Service, append(slices.Clone(list), n.newInstance(c, p)))
}

// newInstance is p on conn c. Called with n.mu held.
func (n *Node) newInstance(c *conn, p Peer) instance {
	in := instance{conn: c, weight: int64(max(p.Weight, 1)), version: p.Version, protocol: max(p.Protocol, 1),
		stats: n.callStatsFor(p.Service, p.Version), budget: n.budgetFor(p.Service)}
	c.protocol.Store(int32(in.protocol))
	if len(p.Routes) > 0 {
		in.routes = make(map[string]Route, len(p.Routes))
		for _, r := range p.Routes {
			in.routes[r.Name] = r
			if r.Hedge && r.Idempotent {
				if in.hedges == nil {
					in.hedges = map[string]*hedging{}
				}
				in.hedges[r.Name] = n.hedgingFor(p.Service, r.Name)
			}
		}
	}
	return in
}

// RemovePeer stops sending p.Service's calls to p. Calls already waiting
// on it get their replies: a peer leaves the registry before it stops
// answering. The connection closes when the peer goes away.
func (n *Node) RemovePeer(p Peer) {
	n.mu.Lock()
	defer n.mu.Unlock()
	list := n.instanceList(p.Service)
	for i, in := range list {
		if in.conn.addr != p.Addr {
			continue
		}
		n.storeService(p.Service, slices.Delete(slices.Clone(list), i, i+1))
		// The conn stays: calls in flight on it finish, and replies to the
		// peer's own calls still go out. It closes when its pipe goes
		// (connLost), as when the departed process exits.
		in.conn.refs--
		return
	}
}

// SetPolicy sets the rollout policy for calls to service; nil goes back to
// spreading calls over every instance alike. Calls in flight are not
// touched; the next call follows the new policy.
func (n *Node) SetPolicy(service string, p *policy.Policy) error {
	if p != nil {
		if err := p.Check(); err != nil {
			return err
		}
		p = p.Clone()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if p == nil {
		delete(n.policies, service)
	} else {
		n.policies[service] = p
	}
	n.storeService(service, n.instanceList(service))
	return nil
}

// Policy returns the rollout policy for calls to service, or nil.
func (n *Node) Policy(service string) *policy.Policy {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if p := n.policies[service]; p != nil {
		return p.Clone()
	}
	return nil
}

func (n *Node) instanceList(service string) []instance {
	if s := (*n.services.Load())[service]; s != nil {
		return s.all
	}
	return nil
}

// storeService publishes service's new instance list, compiled with its
// policy (copy on write: calls read the map without a lock). Called with
// n.mu held.
func (n *Node) storeService(service string, list []instance) {
	old := *n.services.Load()
	next := maps.Clone(old)
	if len(list) == 0 && n.policies[service] == nil {
		delete(next, service)
	} else {
		next[service] = n.compile(list, n.policies[service])
	}
	n.services.Store(&next)
}

// Instances reports the known instances of service and whether each is
// connected.
func (n *Node) Instances(service string) []report.PeerState {
	list := n.instanceList(service)
	out := make([]report.PeerState, len(list))
	for i, in := range list {
		out[i] = report.PeerState{Service: service, Addr: in.conn.addr, Weight: int(in.weight), Version: in.version,
			Protocol: in.protocol, Ready: in.conn.ready.Load(), InFlight: int(in.conn.inflight.Load())}
	}
	return out
}

// pick chooses an instance of service for a live call, as the service's
// policy says (see candidates), and within a version by the power of two
// choices. It takes an in-flight slot on the chosen conn. avoid, if not
// nil, is not chosen (the instance a retry moves away from). It returns the
// service too: the caller's ghost needs its policy.
func (n *Node) pick(service string, avoid *conn, labels []byte) (*instance, *service, error) {
	s := (*n.services.Load())[service]
	if s == nil {
		n.stats.noPeer.Add(1)
		return nil, nil, ErrNoPeer
	}
	var lists [4][]instance
	busy := false
	for _, list := range lists[:s.candidates(labels, &lists)] {
		in, full := n.pickFrom(list, avoid)
		if in != nil {
			return in, s, nil
		}
		busy = busy || full
	}
	if busy {
		n.stats.busy.Add(1)
		return nil, nil, ErrBusy
	}
	n.stats.noPeer.Add(1)
	return nil, nil, ErrNoPeer
}

// pickFrom chooses from list by the power of two choices: two connected
// instances at random, the one with fewer calls in flight per unit of
// weight wins, and takes its in-flight slot. It returns nil with full set
// when the usable instances are all at their bound.
func (n *Node) pickFrom(list []instance, avoid *conn) (in *instance, full bool) {
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
		return nil, false
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
			return in, false
		}
		in.conn.inflight.Add(-1)
	}
	return nil, true
}

// WaitReady waits until at least one instance of service is connected, or
// ctx ends. Calls made before that fail with ErrNoPeer: a node does not
// queue work for a peer that may never come up.
func (n *Node) WaitReady(ctx context.Context, service string) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		for _, in := range n.instanceList(service) {
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
