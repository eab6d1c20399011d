package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery/embedded"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/wire"
)

const ttl = 2 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startEtcd(t *testing.T) *embedded.Etcd {
	t.Helper()
	e, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// client connects the way the binaries do. Cleanups run last-in first-out,
// so clients close before the etcd they talk to (an etcd closing with
// clients still connected waits for them).
func client(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := ClientConfig{Endpoints: endpoints, DialTimeout: 2 * time.Second}.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func register(t *testing.T, cli *clientv3.Client, service, node, addr string) *Registrar {
	t.Helper()
	return registerWeight(t, cli, service, node, addr, 1)
}

func registerWeight(t *testing.T, cli *clientv3.Client, service, node, addr string, weight int) *Registrar {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Register(ctx, cli, Registration{Service: service, Node: node, Addr: addr, Weight: weight,
		Routes: []Route{{Route: "GET /" + service + "/{id}", TimeoutMS: 800}}}, RegisterOptions{TTL: ttl, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// kill makes a registered node "die": its etcd client goes, nothing is
// revoked, and the registrar stops retrying on the closed client.
func kill(cli *clientv3.Client, r *Registrar) {
	cli.Close()
	r.cancel()
}

// recorder is a nanobus.Peers that remembers the current set and counts
// removals.
type recorder struct {
	mu      sync.Mutex
	peers   map[peerID]nanobus.Peer
	removed int
}

// AddPeer adds p, or updates it, as nanobus does.
func (r *recorder) AddPeer(p nanobus.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers == nil {
		r.peers = map[peerID]nanobus.Peer{}
	}
	r.peers[peerID{p.Service, p.Addr}] = p
}

func (r *recorder) RemovePeer(p nanobus.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.peers[peerID{p.Service, p.Addr}]; ok {
		delete(r.peers, peerID{p.Service, p.Addr})
		r.removed++
	}
}

func (r *recorder) has(addr string) bool { return r.weight(addr) > 0 }

// addrs is the addresses of the peers now, sorted.
func (r *recorder) addrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.peers {
		out = append(out, p.Addr)
	}
	slices.Sort(out)
	return out
}

func (r *recorder) weight(addr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.peers {
		if p.Addr == addr {
			return max(p.Weight, 1)
		}
	}
	return 0
}

func (r *recorder) removals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removed
}

func watch(t *testing.T, cli *clientv3.Client, peers nanobus.Peers) *Watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := Watch(ctx, cli, WatchOptions{Peers: peers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not within %v: %s", within, what)
	return 0
}

func TestRegisterWatchDeregister(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	peers := &recorder{}
	w := watch(t, cli, peers)

	r := register(t, cli, "profiles", "n1", "tcp://127.0.0.1:7001")
	if err := r.Registered(); err != nil {
		t.Fatalf("Registered() = %v", err)
	}
	if r.Key() != "/terminator/services/profiles/n1" {
		t.Fatalf("key %q", r.Key())
	}
	eventually(t, 5*time.Second, "watcher sees the registration", func() bool { return peers.has("tcp://127.0.0.1:7001") })
	select {
	case <-w.Changes():
	case <-time.After(time.Second):
		t.Fatal("no change notification")
	}
	snap := w.Snapshot()
	if len(snap) != 1 || snap[0].Service != "profiles" || len(snap[0].Routes) != 1 || snap[0].Routes[0].TimeoutMS != 800 || snap[0].Started.IsZero() {
		t.Fatalf("snapshot %+v", snap)
	}
	// A watcher started later sees it through its first list.
	late := &recorder{}
	watch(t, cli, late)
	if !late.has("tcp://127.0.0.1:7001") {
		t.Fatal("a new watcher's first list missed the registration")
	}

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Second, "deregistration seen at once", func() bool { return !peers.has("tcp://127.0.0.1:7001") })
	t.Logf("removal seen %v after Close (TTL %v)", took, ttl)
	resp, err := cli.Get(context.Background(), r.Key())
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("key still in etcd after Close: %v", err)
	}
	if r.Registered() == nil {
		t.Fatal("Registered() = nil after Close")
	}
	if s := w.Stats(); s.Instances != 0 || s.Stale || s.Lists != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A node whose process dies (its client gone, no revoke) disappears when
// its lease expires.
func TestLeaseExpiresWhenKeepaliveStops(t *testing.T) {
	e := startEtcd(t)
	peers := &recorder{}
	watch(t, client(t, e.Endpoints()...), peers)

	doomed := client(t, e.Endpoints()...)
	r := register(t, doomed, "visits", "n1", "tcp://127.0.0.1:7002")
	eventually(t, 5*time.Second, "registered", func() bool { return peers.has("tcp://127.0.0.1:7002") })
	kill(doomed, r)
	took := eventually(t, 3*ttl, "removal after lease expiry", func() bool { return !peers.has("tcp://127.0.0.1:7002") })
	t.Logf("removal seen %v after the keepalives stopped (TTL %v)", took, ttl)
}

// A process that crashes and comes back on the same fixed bus port gets a
// new node ID, so for up to a TTL two keys name one address. The old key
// expiring must not remove the live instance; weights follow the newest.
func TestSameAddressAfterRestart(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	peers := &recorder{}
	w := watch(t, cli, peers)
	const addr = "tcp://127.0.0.1:7301"

	crashed := client(t, e.Endpoints()...)
	old := register(t, crashed, "profiles", "life1", addr)
	eventually(t, 5*time.Second, "first life seen", func() bool { return peers.has(addr) })
	kill(crashed, old)
	registerWeight(t, cli, "profiles", "life2", addr, 3)
	eventually(t, 5*time.Second, "weight of the newest registration", func() bool { return peers.weight(addr) == 3 })

	eventually(t, 3*ttl, "first life's key expires", func() bool { return len(w.Snapshot()) == 1 })
	if n := w.Snapshot()[0].Node; n != "life2" {
		t.Fatalf("left with node %s", n)
	}
	if !peers.has(addr) || peers.removals() != 0 {
		t.Fatalf("the live instance was removed with its earlier life's key (removals %d)", peers.removals())
	}
}

// etcd down longer than the TTL: the watcher keeps the last membership and
// says it is stale; when etcd is back, the node registers again by itself
// and the watcher catches up, including with a node that died meanwhile.
func TestReRegistrationAfterEtcdRestart(t *testing.T) {
	start := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }
	e := startEtcd(t)
	cfg := e.Config()
	var e2 *embedded.Etcd
	t.Cleanup(func() { // registered before the clients: runs after their cleanups
		if e2 != nil {
			e2.Close()
		}
	})
	cli := client(t, e.Endpoints()...)
	peers := &recorder{}
	w := watch(t, cli, peers)
	r := register(t, cli, "flirts", "n1", "tcp://127.0.0.1:7003")
	doomed := client(t, e.Endpoints()...)
	d := register(t, doomed, "flirts", "n2", "tcp://127.0.0.1:7004")
	eventually(t, 5*time.Second, "registered", func() bool { return peers.has("tcp://127.0.0.1:7003") && peers.has("tcp://127.0.0.1:7004") })

	phase("stopping etcd")
	e.Close()
	phase("etcd stopped")
	kill(doomed, d) // dies while etcd is down: no one hears of it until etcd is back
	eventually(t, 10*time.Second, "watcher reports stale", func() bool { return w.Stats().Stale })
	// What the watcher knew once etcd had stopped (Close returned): usually
	// both nodes. But a graceful stop can take seconds (7 s once in CI),
	// and a lease whose keepalive stream it cut first may expire while the
	// watch stream still delivers: a deletion etcd sent, not one the
	// watcher made up. From here on, nothing may change.
	known := peers.addrs()
	if len(known) != 2 {
		t.Logf("etcd expired a lease while it stopped: %v known when it was gone", known)
	}
	eventually(t, 3*ttl, "registrar reports the lost lease", func() bool { return r.Registered() != nil })
	phase("lease lost: " + r.Registered().Error())
	if got := peers.addrs(); !slices.Equal(got, known) {
		t.Fatalf("the watcher changed the membership while etcd was down: %v, then %v", known, got)
	}
	if s := w.Stats(); s.Outages != 1 || s.Instances != len(known) {
		t.Fatalf("stats while etcd is down: %+v (%d known)", s, len(known))
	}

	var err error
	if e2, err = embedded.Start(cfg); err != nil {
		t.Fatal(err)
	}
	phase("etcd restarted")
	eventually(t, 20*time.Second, "registered again", func() bool { return r.Registered() == nil && r.Registrations() >= 2 })
	phase("registered again")
	eventually(t, 10*time.Second, "watcher fresh again", func() bool { return !w.Stats().Stale })
	phase("watcher fresh")
	// Leases come back from the data dir with a fresh TTL: the dead node's
	// and n1's old one expire unrenewed. n1's key, now under its new
	// lease, must survive that; n2's goes.
	eventually(t, 3*ttl, "the node that died during the outage is removed", func() bool { return !peers.has("tcp://127.0.0.1:7004") })
	phase("dead node removed")
	resp, err := cli.Get(context.Background(), r.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key after re-registration: %v %v", resp, err)
	}
	// Every lease but the one n1's key is under now (n1's old one among
	// them) expires; the key stays.
	current := clientv3.LeaseID(resp.Kvs[0].Lease)
	eventually(t, 3*ttl, "every lease but n1's current one expired", func() bool {
		ls, err := cli.Leases(context.Background())
		if err != nil {
			return false
		}
		for _, l := range ls.Leases {
			if l.ID != current {
				return false
			}
		}
		return true
	})
	resp, err = cli.Get(context.Background(), r.Key())
	if err != nil || len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != current {
		t.Fatalf("key after the old lease expired: %v %v", resp, err)
	}
	if !peers.has("tcp://127.0.0.1:7003") {
		t.Fatal("watcher lost the node")
	}
}

// A real three-member cluster: stopping the leader mid-test does not stop
// registrations or watches. etcd's Close first refuses new RPCs and gives
// open streams (watches, keepalives) up to its request timeout, then cuts
// them and hands leadership over: registrations are made and watched both
// during that and after.
func TestClusterLeaderLoss(t *testing.T) {
	start := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(start).Seconds(), what) }
	members, err := embedded.StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, m := range members {
		t.Cleanup(m.Close)
		endpoints = append(endpoints, m.Endpoints()...)
	}
	cli := client(t, endpoints...)
	peers := &recorder{}
	w := watch(t, cli, peers)
	r := register(t, cli, "profiles", "n1", "tcp://127.0.0.1:7101")
	eventually(t, 5*time.Second, "registered", func() bool { return peers.has("tcp://127.0.0.1:7101") })

	leader := slices.IndexFunc(members, func(m *embedded.Etcd) bool { return m.IsLeader() })
	if leader < 0 {
		t.Fatal("no leader")
	}
	phase("cluster up; stopping leader " + members[leader].Config().Name)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		members[leader].Close()
	}()

	register(t, cli, "profiles", "n2", "tcp://127.0.0.1:7102")
	eventually(t, 15*time.Second, "watch carries on while the leader stops", func() bool { return peers.has("tcp://127.0.0.1:7102") })
	phase("registered and watched while the leader stops")
	<-stopped
	phase("leader stopped")
	if slices.IndexFunc(members, func(m *embedded.Etcd) bool { return m != members[leader] && m.IsLeader() }) < 0 {
		eventually(t, 10*time.Second, "a new leader", func() bool {
			return slices.IndexFunc(members, func(m *embedded.Etcd) bool { return m != members[leader] && m.IsLeader() }) >= 0
		})
	}

	register(t, cli, "profiles", "n3", "tcp://127.0.0.1:7103")
	eventually(t, 15*time.Second, "watch carries on after the leader stopped", func() bool { return peers.has("tcp://127.0.0.1:7103") })
	phase("registered and watched after")
	time.Sleep(ttl + time.Second) // n1's keepalives must go to a live member
	if err := r.Registered(); err != nil || !peers.has("tcp://127.0.0.1:7101") {
		t.Fatalf("first registration lost with the leader: %v", err)
	}
	if n := peers.removals(); n != 0 {
		t.Fatalf("the watcher removed %d instances during the leader change", n)
	}
	if n := len(w.Snapshot()); n != 3 {
		t.Fatalf("%d registrations known, want 3", n)
	}
	t.Logf("n1 registered %d time(s); watcher lists: %d", r.Registrations(), w.Stats().Lists)
}

// A watch that starts at a compacted revision fails; the watcher lists
// again and ends up with the right membership.
func TestWatchSurvivesCompaction(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	ctx := context.Background()
	a := register(t, cli, "a", "n1", "tcp://127.0.0.1:7201")
	peers := &recorder{}
	w := newWatcher(cli, WatchOptions{Peers: peers, Logger: quiet})
	rev, err := w.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Changes the watcher has not seen, then a compaction past them.
	register(t, cli, "b", "n1", "tcp://127.0.0.1:7202")
	a.Close()
	for range 3 {
		cli.Put(ctx, "/unrelated", "x")
	}
	resp, err := cli.Get(ctx, "anything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	w.start(rev) // its first watch starts below the compaction
	t.Cleanup(w.Close)
	eventually(t, 5*time.Second, "watcher relisted past the compaction", func() bool {
		return w.Stats().Lists >= 2 && peers.has("tcp://127.0.0.1:7202") && !peers.has("tcp://127.0.0.1:7201")
	})
	register(t, cli, "c", "n1", "tcp://127.0.0.1:7203")
	eventually(t, 5*time.Second, "watch works after the relist", func() bool { return peers.has("tcp://127.0.0.1:7203") })
	if n := len(w.Snapshot()); n != 2 {
		t.Fatalf("%d registrations known, want 2", n)
	}
}

// End to end with nanobus: a service registers, a caller finds it through
// etcd and calls it; a clean stop removes it at once, a dead process within
// the TTL.
func TestBusEndToEnd(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	caller := nanobustest.NewNode(t, nanobus.Config{})
	watch(t, cli, caller)

	start := func(c *clientv3.Client) (*nanobus.Node, *Registrar) {
		svc := nanobustest.NewNode(t, nanobus.Config{Service: "echo"})
		if err := svc.Handle("echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			return nanobus.Reply{Body: req.Body}, nil
		}, nanobus.Idempotent()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := Register(ctx, c, RegistrationOf(svc), RegisterOptions{TTL: ttl, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		nanobustest.Eventually(t, "the caller learns the declared route", func() bool {
			in := caller.Instances("echo")
			return len(in) == 1 && in[0].Addr == svc.Addr()
		})
		return svc, r
	}
	svc, reg := start(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := caller.WaitReady(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		resp, err := caller.Call(ctx, "echo", "echo", []byte("found you"))
		if err != nil || string(resp.Body) != "found you" {
			t.Fatalf("call through discovery: %v", err)
		}
		resp.Release()
	}

	// Clean stop: deregister first, then close the node.
	reg.Close()
	took := eventually(t, time.Second, "caller forgets the instance at once", func() bool { return len(caller.Instances("echo")) == 0 })
	t.Logf("cleanly stopped instance forgotten %v after Close", took)
	svc.Close()
	if _, err := caller.Call(ctx, "echo", "echo", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("call after clean stop: %v, want ErrNoPeer", err)
	}

	// A process that dies: its etcd client goes, nothing is revoked.
	doomedCli := client(t, e.Endpoints()...)
	svc2, reg2 := start(doomedCli)
	if err := caller.WaitReady(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	resp, err := caller.Call(ctx, "echo", "echo", []byte("again"))
	if err != nil || string(resp.Body) != "again" {
		t.Fatalf("call to the second instance: %v", err)
	}
	resp.Release()
	kill(doomedCli, reg2)
	took = eventually(t, 3*ttl, "caller forgets the dead instance within the TTL", func() bool { return len(caller.Instances("echo")) == 0 })
	t.Logf("dead instance forgotten %v after its keepalives stopped (TTL %v)", took, ttl)
	svc2.Close()
	if _, err := caller.Call(ctx, "echo", "echo", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Fatalf("call after the lease expired: %v, want ErrNoPeer", err)
	}
}

func TestClientConfigFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var c ClientConfig
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-etcd-endpoints", "https://a:2379,https://b:2379,https://c:2379", "-etcd-user", "u", "-etcd-password", "p", "-etcd-dial-timeout", "1s"}); err != nil {
		t.Fatal(err)
	}
	if len(c.Endpoints) != 3 || c.Username != "u" || c.Password != "p" || c.DialTimeout != time.Second {
		t.Fatalf("flags: %+v", c)
	}

	for _, bad := range []ClientConfig{
		{},
		{Endpoints: []string{"https://127.0.0.1:1"}, Cert: "c.pem"},
		{Endpoints: []string{"http://127.0.0.1:1"}, CA: "ca.pem"},
		{Endpoints: []string{"https://127.0.0.1:1"}, CA: "/nonexistent/ca.pem"},
	} {
		if cli, err := bad.Client(); err == nil {
			cli.Close()
			t.Errorf("Client() with %+v: no error", bad)
		}
	}
}

// With etcd down, Register and Watch give up when their context ends and
// say why.
func TestStartWhileEtcdDown(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := Register(ctx, cli, Registration{Service: "s", Node: "n", Addr: "tcp://127.0.0.1:7501"}, RegisterOptions{TTL: ttl, Logger: quiet})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer from etcd") {
		t.Fatalf("Register with etcd down: %v", err)
	}
	_, err = Watch(ctx, cli, WatchOptions{Logger: quiet})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "list /terminator/") {
		t.Fatalf("Watch with etcd down: %v", err)
	}
	t.Log(err)
	if _, err := Register(ctx, cli, Registration{Service: "a/b", Node: "n", Addr: "x"}, RegisterOptions{}); err == nil {
		t.Fatal("a service name with a slash was accepted")
	}
}

// A registration carries what its service declared (version, routes with
// their timeouts and idempotency) to every watcher's peers, and its public
// routes stay announced after its last instance is gone.
func TestDeclaredRoutesReachCallers(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	peers := &recorder{}
	w := watch(t, cli, peers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Register(ctx, cli, Registration{Service: "profiles", Node: "n1", Addr: "tcp://127.0.0.1:7301", Version: "v2", Protocol: 2,
		Routes: []Route{
			{Route: "GET /profiles/{id}", TimeoutMS: 800, Idempotent: true},
			{Route: "profiles.get", Idempotent: true},
			{Route: "profiles.put"},
		}}, RegisterOptions{TTL: ttl, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the peer", func() bool { return peers.has("tcp://127.0.0.1:7301") })
	peers.mu.Lock()
	p := peers.peers[peerID{"profiles", "tcp://127.0.0.1:7301"}]
	peers.mu.Unlock()
	got := map[string]nanobus.Route{}
	for _, r := range p.Routes {
		got[r.Name] = r
	}
	if p.Version != "v2" || p.Protocol != 2 || len(got) != 3 || got["GET /profiles/{id}"].Timeout != 800*time.Millisecond ||
		!got["profiles.get"].Idempotent || got["profiles.put"].Idempotent || got["profiles.get"].Public() {
		t.Fatalf("peer %+v", p)
	}

	r.Close()
	eventually(t, 5*time.Second, "the peer gone", func() bool { return !peers.has("tcp://127.0.0.1:7301") })
	ann := w.Announced()["profiles"]
	if len(ann) != 1 || ann[0].Name != "GET /profiles/{id}" || ann[0].Timeout != 800*time.Millisecond {
		t.Fatalf("announced after the last instance left: %+v", ann)
	}

	// A route that does not parse is refused at registration.
	if _, err := Register(ctx, cli, Registration{Service: "x", Node: "n", Addr: "tcp://127.0.0.1:1",
		Routes: []Route{{Route: "GET/typo"}}}, RegisterOptions{TTL: ttl, Logger: quiet}); err == nil {
		t.Fatal("registered a malformed route")
	}
}

// A node's registration announces the protocol it speaks; one written
// before protocols were announced reads as protocol 1, so that callers
// send it nothing protocol 1 did not have.
func TestRegistrationProtocol(t *testing.T) {
	n := nanobustest.NewNode(t, nanobus.Config{Service: "profiles"})
	b, err := json.Marshal(RegistrationOf(n))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), fmt.Sprintf(`"protocol":%d`, wire.ProtocolVersion)) {
		t.Fatalf("registration %s: no protocol", b)
	}
	var reg Registration
	if err := json.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	if p, err := reg.Peer(); err != nil || p.Protocol != wire.ProtocolVersion {
		t.Fatalf("peer %+v, %v", p, err)
	}
	old := `{"service":"profiles","node":"7f3a9c01e2d4b5a6","addr":"tcp://10.0.0.5:7100","version":"v1","started":"2026-11-23T08:00:00Z"}`
	reg = Registration{}
	if err := json.Unmarshal([]byte(old), &reg); err != nil {
		t.Fatal(err)
	}
	if p, err := reg.Peer(); err != nil || p.Protocol != 1 {
		t.Fatalf("an old registration: peer %+v, %v", p, err)
	}
}

// What a service declares about hedging reaches its callers through the
// registration, as its other route declarations do.
func TestRegistrationCarriesHedging(t *testing.T) {
	n := nanobustest.NewNode(t, nanobus.Config{Service: "profiles"})
	get := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) { return nanobus.Reply{}, nil }
	if err := n.Handle("profiles.get", get, nanobus.Idempotent(), nanobus.Hedge(15*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := n.Handle("profiles.put", get, nanobus.Hedge(0)); err == nil {
		t.Fatal("a route that is not idempotent was let hedge")
	}
	b, err := json.Marshal(RegistrationOf(n))
	if err != nil {
		t.Fatal(err)
	}
	var reg Registration
	if err := json.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	p, err := reg.Peer()
	if err != nil || len(p.Routes) != 1 || !p.Routes[0].Hedge || p.Routes[0].HedgeAfter != 15*time.Millisecond {
		t.Fatalf("peer %+v, %v", p, err)
	}
}

// A public route's CORS policy reaches the fronts through the
// registration, as its other declarations do.
func TestRegistrationCarriesCORS(t *testing.T) {
	n := nanobustest.NewNode(t, nanobus.Config{Service: "web"})
	get := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) { return nanobus.Reply{}, nil }
	want := nanobus.CORS{Origins: []string{"https://app.example"}, Methods: []string{"GET"}, Headers: []string{"X-Token"},
		MaxAge: time.Minute, Credentials: true}
	if err := n.Handle("GET /profiles/{id}", get, nanobus.WithCORS(want)); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(RegistrationOf(n))
	if err != nil {
		t.Fatal(err)
	}
	var reg Registration
	if err := json.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	p, err := reg.Peer()
	if err != nil || len(p.Routes) != 1 || p.Routes[0].CORS == nil || !reflect.DeepEqual(*p.Routes[0].CORS, want) {
		t.Fatalf("peer routes %+v, %v; registration %s", p.Routes, err, b)
	}
}
