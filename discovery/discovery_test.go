package discovery

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/terminator-gw/terminator/nanobus"
)

const ttl = 2 * time.Second

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startEtcd(t *testing.T) *Embedded {
	t.Helper()
	e, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func client(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func register(t *testing.T, cli *clientv3.Client, service, node, addr string) *Registrar {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Register(ctx, cli, Registration{Service: service, Node: node, Addr: addr, Weight: 1,
		Routes: []Route{{Route: "GET /" + service + "/{id}", TimeoutMS: 800}}}, RegisterOptions{TTL: ttl, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// recorder is a nanobus.Peers that remembers the current set.
type recorder struct {
	mu    sync.Mutex
	peers map[nanobus.Peer]bool
}

func (r *recorder) AddPeer(p nanobus.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers == nil {
		r.peers = map[nanobus.Peer]bool{}
	}
	r.peers[p] = true
}

func (r *recorder) RemovePeer(p nanobus.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.peers, p)
}

func (r *recorder) has(addr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.peers {
		if p.Addr == addr {
			return true
		}
	}
	return false
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
	eventually(t, 5*time.Second, "watcher sees the registration", func() bool { return peers.has("tcp://127.0.0.1:7001") })
	snap := w.Snapshot()
	if len(snap) != 1 || snap[0].Service != "profiles" || len(snap[0].Routes) != 1 || snap[0].Routes[0].TimeoutMS != 800 {
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
	resp, _ := cli.Get(context.Background(), r.Key())
	if len(resp.Kvs) != 0 {
		t.Fatal("key still in etcd after Close")
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
	doomed.Close() // the process "dies": keepalives stop, nothing is revoked
	took := eventually(t, 3*ttl, "removal after lease expiry", func() bool { return !peers.has("tcp://127.0.0.1:7002") })
	t.Logf("removal seen %v after the keepalives stopped (TTL %v)", took, ttl)
	r.cancel() // stop retrying on the closed client
}

// etcd down longer than the TTL: the watcher keeps the last membership and
// says it is stale; when etcd is back, the node registers again by itself
// and the watcher catches up.
func TestReRegistrationAfterEtcdRestart(t *testing.T) {
	e := startEtcd(t)
	cfg := e.Config()
	cli := client(t, e.Endpoints()...)
	peers := &recorder{}
	w := watch(t, cli, peers)
	r := register(t, cli, "flirts", "n1", "tcp://127.0.0.1:7003")
	eventually(t, 5*time.Second, "registered", func() bool { return peers.has("tcp://127.0.0.1:7003") })

	e.Close()
	eventually(t, 10*time.Second, "watcher reports stale", func() bool { return w.Stats().Stale })
	time.Sleep(ttl + time.Second) // past the TTL: the client gives the lease up
	eventually(t, 10*time.Second, "registrar reports the lost lease", func() bool { return r.Registered() != nil })
	if !peers.has("tcp://127.0.0.1:7003") {
		t.Fatal("the watcher dropped the membership while etcd was down")
	}

	e2, err := StartEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	eventually(t, 20*time.Second, "registered again", func() bool { return r.Registered() == nil && r.Registrations() >= 2 })
	eventually(t, 10*time.Second, "watcher fresh again", func() bool { return !w.Stats().Stale })
	// The old lease, restored with a fresh TTL by the restart, expires
	// unrenewed; the key, now under the new lease, must survive that.
	time.Sleep(2*ttl + time.Second)
	resp, err := cli.Get(context.Background(), r.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key after the old lease expired: %v %v", resp, err)
	}
	if !peers.has("tcp://127.0.0.1:7003") {
		t.Fatal("watcher lost the node")
	}
}

// A real three-member cluster: stopping the leader mid-test does not stop
// registrations or watches.
func TestClusterLeaderLoss(t *testing.T) {
	cfgs, err := ClusterConfigs(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	members := make([]*Embedded, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, c := range cfgs {
		wg.Add(1)
		go func() { // members wait for each other: start them together
			defer wg.Done()
			members[i], errs[i] = StartEmbedded(c)
		}()
	}
	wg.Wait()
	var endpoints []string
	for i, m := range members {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(m.Close)
		endpoints = append(endpoints, m.Endpoints()...)
	}
	cli := client(t, endpoints...)
	peers := &recorder{}
	watch(t, cli, peers)
	r := register(t, cli, "profiles", "n1", "tcp://127.0.0.1:7101")
	eventually(t, 5*time.Second, "registered", func() bool { return peers.has("tcp://127.0.0.1:7101") })

	leader := slices.IndexFunc(members, func(m *Embedded) bool { return m.IsLeader() })
	if leader < 0 {
		t.Fatal("no leader")
	}
	members[leader].Close()
	t.Logf("stopped leader %s", cfgs[leader].Name)

	register(t, cli, "profiles", "n2", "tcp://127.0.0.1:7102")
	eventually(t, 15*time.Second, "watch carries on", func() bool { return peers.has("tcp://127.0.0.1:7102") })
	time.Sleep(2 * ttl) // keepalives must have gone to the new leader
	if err := r.Registered(); err != nil || !peers.has("tcp://127.0.0.1:7101") {
		t.Fatalf("first registration lost with the leader: %v", err)
	}
}

// A watch that starts at a compacted revision fails; the watcher lists
// again and ends up with the right membership.
func TestWatchSurvivesCompaction(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	register(t, cli, "a", "n1", "tcp://127.0.0.1:7201")
	ctx, cancel := context.WithCancel(context.Background())
	peers := &recorder{}
	w := &Watcher{cli: cli, prefix: servicesPrefix(""), peers: peers, log: quiet, cancel: cancel,
		done: make(chan struct{}), known: map[string]record{}, changes: make(chan struct{}, 1)}
	rev, err := w.list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	register(t, cli, "b", "n1", "tcp://127.0.0.1:7202")
	for range 3 { // move well past the listed revision
		cli.Put(ctx, "/unrelated", "x")
	}
	resp, _ := cli.Get(ctx, "anything")
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	go w.run(ctx, rev) // its first watch starts below the compaction
	defer w.Close()
	eventually(t, 5*time.Second, "watcher relisted past the compaction", func() bool {
		return peers.has("tcp://127.0.0.1:7202") && w.Stats().Lists >= 2
	})
	register(t, cli, "c", "n1", "tcp://127.0.0.1:7203")
	eventually(t, 5*time.Second, "watch works after the relist", func() bool { return peers.has("tcp://127.0.0.1:7203") })
}

// End to end with nanobus: a service registers, a caller finds it through
// etcd and calls it; a clean stop removes it at once, a dead process within
// the TTL.
func TestBusEndToEnd(t *testing.T) {
	e := startEtcd(t)
	cli := client(t, e.Endpoints()...)
	caller, err := nanobus.NewNode(nanobus.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	watch(t, cli, caller)

	start := func(c *clientv3.Client) (*nanobus.Node, *Registrar) {
		svc, err := nanobus.NewNode(nanobus.Config{Service: "echo", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		svc.Handle("echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			return nanobus.Reply{Body: req.Body}, nil
		})
		return svc, register(t, c, "echo", svc.Addr()[len("tcp://"):], svc.Addr())
	}
	svc, reg := start(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := caller.WaitReady(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	resp, err := caller.Call(ctx, "echo", "echo", []byte("found you"))
	if err != nil || string(resp.Body) != "found you" {
		t.Fatalf("call through discovery: %v", err)
	}
	resp.Release()

	// Clean stop: deregister first, then close the node.
	reg.Close()
	eventually(t, time.Second, "caller forgets the instance at once", func() bool { return len(caller.Instances("echo")) == 0 })
	svc.Close()
	if _, err := caller.Call(ctx, "echo", "echo", nil); err != nanobus.ErrNoPeer {
		t.Fatalf("call after clean stop: %v, want ErrNoPeer", err)
	}

	// A process that dies: its etcd client goes, nothing is revoked.
	doomedCli := client(t, e.Endpoints()...)
	svc2, reg2 := start(doomedCli)
	eventually(t, 5*time.Second, "second instance found", func() bool { return len(caller.Instances("echo")) == 1 })
	doomedCli.Close()
	reg2.cancel()
	took := eventually(t, 3*ttl, "caller forgets the dead instance within the TTL", func() bool { return len(caller.Instances("echo")) == 0 })
	t.Logf("dead instance forgotten %v after its keepalives stopped (TTL %v)", took, ttl)
	svc2.Close()
}
