package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/bench/loadgen"
)

// The load every case runs across its fault: modest, so that seventeen
// containers and the generator share two cores without timing out on their own.
const (
	getRate    = 200 // GETs/s through nginx, open loop
	putWorkers = 4
	putRate    = 25 // PUTs/s per worker
)

// TestFleet runs the cases in order on the one fleet TestMain brought up;
// each starts from a settled fleet and leaves one behind.
func TestFleet(t *testing.T) {
	f := need(t)
	for _, c := range []struct {
		name string
		run  func(*testing.T, *fleet)
	}{
		{"PrometheusScrapes", prometheusScrapes},
		{"PutsSurviveProfilesKill", putsSurviveProfilesKill},
		{"GetsSurviveWebKill", getsSurviveWebKill},
		{"RollingRestart", rollingRestart},
		{"EtcdLeaderStopped", etcdLeaderStopped},
		{"EtcdAllStopped", etcdAllStopped},
		{"ServiceCutOff", serviceCutOff},
		{"FrontKilled", frontKilled},
		{"EventsSurviveKills", eventsSurviveKills},
		{"PostgresRestarted", postgresRestarted},
		{"SubscriberCutOff", subscriberCutOff},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if err := f.settle(ctx); err != nil {
				t.Fatalf("fleet not settled before the case: %v", err)
			}
			c.run(t, f)
			if err := f.settle(ctx); err != nil {
				t.Errorf("fleet not settled after the case: %v", err)
			}
		})
	}
}

// putsSurviveProfilesKill: distinct-id PUTs through nginx while profiles1 is
// killed and started again; every acknowledged write must then read back 200
// through each front.
func putsSurviveProfilesKill(t *testing.T, f *fleet) {
	ctx := context.Background()
	w := startPuts(t, f, fmt.Sprintf("kill%d", time.Now().Unix()%100000))
	hold(2 * time.Second)
	f.docker(t, "kill", "-s", "KILL", f.ids["profiles1"])
	t.Log("profiles1 killed (SIGKILL)")
	hold(3 * time.Second)
	f.docker(t, "start", f.ids["profiles1"])
	if err := f.settle(ctx); err != nil {
		t.Error(err)
	}
	hold(2 * time.Second)
	puts, acked := w.stop()
	t.Logf("fleet: PUTs across a profiles kill: %v acknowledged=%d", puts, len(acked))

	for _, front := range []string{"front1", "front2"} {
		addr, err := f.published(ctx, front, 8080)
		if err != nil {
			t.Fatal(err)
		}
		var reads tally
		var bad []string
		var mu sync.Mutex
		parallel(acked, 16, func(id string) {
			st, body, err := get("http://" + addr + "/profiles/" + id)
			reads.add(st, err)
			if st != 200 {
				mu.Lock()
				if len(bad) < 5 {
					bad = append(bad, fmt.Sprintf("%s: %d %s %v", id, st, body, err))
				}
				mu.Unlock()
			}
		})
		t.Logf("fleet: read-back through %s: %v", front, &reads)
		if n := reads.failed(); n > 0 {
			t.Errorf("%d of %d acknowledged writes did not read back 200 through %s, e.g. %v", n, len(acked), front, bad)
		}
	}
	if len(acked) == 0 {
		t.Error("no PUT was acknowledged")
	}
}

// getsSurviveWebKill: GET load while web1 is killed with SIGKILL: no GET
// fails (calls lost with web1 are retried on web2).
func getsSurviveWebKill(t *testing.T, f *fleet) {
	g := startGets(t, f)
	hold(2 * time.Second)
	f.docker(t, "kill", "-s", "KILL", f.ids["web1"])
	t.Log("web1 killed (SIGKILL)")
	hold(3 * ttl / 2) // past the lease: web1 is gone from every view
	res := g.stop()
	f.docker(t, "start", f.ids["web1"])
	g.report(t, "GETs across a web kill", res)
}

// rollingRestart: every terminator container restarted in turn (SIGTERM,
// drain, start), each back and registered before the next, under GETs and
// PUTs: no request fails.
func rollingRestart(t *testing.T, f *fleet) {
	ctx := context.Background()
	g := startGets(t, f)
	w := startPuts(t, f, fmt.Sprintf("roll%d", time.Now().Unix()%100000))
	order := []string{"echo1", "echo2", "profiles1", "profiles2", "visits1", "visits2", "flirts1", "flirts2",
		"notifications1", "notifications2", "web1", "web2", "front1", "front2"}
	for _, c := range order {
		regs, err := f.registrations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		old := keyOf(regs, c)
		start := time.Now()
		f.docker(t, "restart", "-t", "15", f.ids[c])
		stopped := time.Since(start)
		err = eventually(ctx, 60*time.Second, c+" registered again", func() (bool, string) {
			regs, err := f.registrations(ctx)
			if err != nil {
				return false, err.Error()
			}
			k := keyOf(regs, c)
			return k != "" && k != old, "key " + k
		})
		if err == nil {
			err = f.settle(ctx)
		}
		if err != nil {
			t.Error(err)
		}
		t.Logf("fleet: %s restarted in %.1fs, back in %.1fs", c, stopped.Seconds(), time.Since(start).Seconds())
	}
	hold(time.Second)
	res := g.stop()
	puts, _ := w.stop()
	g.report(t, "GETs across a rolling restart", res)
	t.Logf("fleet: PUTs across a rolling restart: %v", puts)
	if n := puts.failed(); n > 0 {
		t.Errorf("%d PUTs failed during the rolling restart", n)
	}
}

// etcdLeaderStopped: the etcd leader stopped under load and started again:
// no request fails.
func etcdLeaderStopped(t *testing.T, f *fleet) {
	ctx := context.Background()
	leader, err := f.etcdLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	g := startGets(t, f)
	hold(2 * time.Second)
	f.docker(t, "stop", "-t", "10", f.ids[leader])
	t.Logf("etcd leader %s stopped", leader)
	hold(3 * ttl / 2)
	f.docker(t, "start", f.ids[leader])
	if err := f.etcdHealthy(ctx); err != nil {
		t.Error(err)
	}
	hold(time.Second)
	g.report(t, "GETs across an etcd leader stop", g.stop())
	if now, err := f.etcdLeader(ctx); err == nil {
		t.Logf("fleet: etcd leader was %s, is %s", leader, now)
	}
}

// etcdAllStopped: all of etcd stopped for longer than the lease TTL:
// serving goes on from the cached membership; once etcd is back every
// process is registered again, and stays so past a lease TTL (its lease is
// kept alive, not a leftover).
func etcdAllStopped(t *testing.T, f *fleet) {
	ctx := context.Background()
	g := startGets(t, f)
	hold(2 * time.Second)
	parallel(etcds, 3, func(e string) { f.docker(t, "stop", "-t", "10", f.ids[e]) })
	down := time.Now()
	t.Log("all of etcd stopped")
	hold(ttl + time.Second)
	// What a readiness probe (Kubernetes, a load balancer) sees meanwhile:
	// logged, not asserted.
	for _, fr := range []string{"front1", "front2"} {
		if addr, err := f.published(ctx, fr, 8081); err == nil {
			st, body, err := get("http://" + addr + "/readyz")
			t.Logf("fleet: %s /readyz with etcd down: %d %s %v", fr, st, body, err)
		}
	}
	hold(ttl)
	parallel(etcds, 3, func(e string) { f.docker(t, "start", f.ids[e]) })
	t.Logf("etcd started again after %.1fs", time.Since(down).Seconds())
	if err := f.etcdHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	err := eventually(ctx, 60*time.Second, "every process registered again", func() (bool, string) {
		regs, err := f.registrations(ctx)
		if err != nil {
			return false, err.Error()
		}
		return registeredOnce(regs)
	})
	if err != nil {
		t.Error(err)
	}
	t.Logf("fleet: every process registered %.1fs after etcd was healthy", time.Since(back).Seconds())
	// A registration whose lease nobody keeps alive expires within a TTL:
	// watch one TTL and more.
	for end := time.Now().Add(ttl + 2*time.Second); time.Now().Before(end); hold(500 * time.Millisecond) {
		regs, err := f.registrations(ctx)
		if err != nil {
			t.Error(err)
			break
		}
		if ok, why := registeredOnce(regs); !ok {
			t.Errorf("registrations lapsed after etcd came back: %s", why)
			break
		}
	}
	g.report(t, "GETs while all of etcd was down and back", g.stop())
}

// serviceCutOff: profiles2 disconnected from the fleet's network under GET
// load (every page calls profiles): calls to it fail fast and go to
// profiles1, so no GET fails.
func serviceCutOff(t *testing.T, f *fleet) {
	ctx := context.Background()
	network := f.project + "_fleet"
	g := startGets(t, f)
	hold(2 * time.Second)
	f.docker(t, "network", "disconnect", network, f.ids["profiles2"])
	t.Log("profiles2 cut off the network")
	hold(3 * ttl / 2)
	res := g.stop()
	// Back with the name the others dial it by.
	f.docker(t, "network", "connect", "--alias", "profiles2", network, f.ids["profiles2"])
	g.report(t, "GETs while a profiles instance is cut off", res)
	if err := f.settle(ctx); err != nil {
		t.Error(err)
	}
}

// frontKilled: front1 killed under GETs and PUTs through nginx: nginx moves
// to front2. GETs (idempotent, retried by nginx) must not fail; what PUT
// clients saw is counted and logged.
func frontKilled(t *testing.T, f *fleet) {
	g := startGets(t, f)
	w := startPuts(t, f, fmt.Sprintf("front%d", time.Now().Unix()%100000))
	hold(2 * time.Second)
	f.docker(t, "kill", "-s", "KILL", f.ids["front1"])
	t.Log("front1 killed (SIGKILL)")
	hold(5 * time.Second)
	res := g.stop()
	puts, _ := w.stop()
	f.docker(t, "start", f.ids["front1"])
	g.report(t, "GETs across a front kill", res)
	t.Logf("fleet: PUTs across a front kill (counted, not asserted): %v", puts)
}

// hold keeps a case's load running across its fault for d: the length of
// the fault is the case's design, not a wait for a condition.
func hold(d time.Duration) { time.Sleep(d) }

// docker runs a fault command; a failure to run it fails the case.
func (f *fleet) docker(t *testing.T, args ...string) {
	t.Helper()
	if _, err := docker(context.Background(), args...); err != nil {
		t.Error(err)
	}
}

// etcdLeader names the etcd container that leads.
func (f *fleet) etcdLeader(ctx context.Context) (string, error) {
	for _, e := range etcds {
		out, err := docker(ctx, "exec", f.ids[e], "etcdctl", "--endpoints=http://127.0.0.1:2379",
			"--command-timeout=3s", "endpoint", "status", "-w", "json")
		if err != nil {
			continue
		}
		var st []struct {
			Status struct {
				Header struct {
					MemberID uint64 `json:"member_id"`
				}
				Leader uint64
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 {
			return "", fmt.Errorf("etcdctl endpoint status: %q: %v", out, err)
		}
		if st[0].Status.Leader != 0 && st[0].Status.Leader == st[0].Status.Header.MemberID {
			return e, nil
		}
	}
	return "", fmt.Errorf("no etcd member says it leads")
}

// etcdHealthy waits until every etcd member answers a health check.
func (f *fleet) etcdHealthy(ctx context.Context) error {
	return eventually(ctx, 60*time.Second, "etcd healthy", func() (bool, string) {
		for _, e := range etcds {
			if out, err := docker(ctx, "exec", f.ids[e], "etcdctl", "--endpoints=http://127.0.0.1:2379",
				"--command-timeout=2s", "endpoint", "health"); err != nil {
				return false, e + ": " + out + err.Error()
			}
		}
		return true, ""
	})
}

// getLoad is the open-loop GET load (bench/loadgen) through nginx, run
// until stopped (at the latest when the case ends).
type getLoad struct {
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time
	once   sync.Once
	res    *loadgen.Result
	err    error
}

func startGets(t *testing.T, f *fleet) *getLoad {
	ctx, cancel := context.WithCancel(context.Background())
	g := &getLoad{cancel: cancel, done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(g.done)
		g.res, g.err = loadgen.Run(ctx, loadgen.Options{
			URLs: f.getURLs(), Connections: 16, Rate: getRate,
			Duration: 10 * time.Minute, // every case stops it long before
			Timeout:  10 * time.Second,
		})
	}()
	t.Cleanup(func() { g.stop() })
	return g
}

func (g *getLoad) stop() *loadgen.Result {
	g.once.Do(func() {
		g.cancel()
		<-g.done
	})
	return g.res
}

// report logs the run and fails the case when any GET was not a 2xx.
func (g *getLoad) report(t *testing.T, what string, r *loadgen.Result) {
	t.Helper()
	if g.err != nil || r == nil {
		t.Errorf("%s: load: %v", what, g.err)
		return
	}
	codes := make([]int, 0, len(r.Status))
	for c := range r.Status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var sb strings.Builder
	for _, c := range codes {
		fmt.Fprintf(&sb, " %d:%d", c, r.Status[c])
	}
	t.Logf("fleet: %s: %.0fs, n=%d p50=%v p99=%v max=%v status:%s transport errors=%d %v",
		what, time.Since(g.start).Seconds(), r.Requests, r.Percentile(50), r.Percentile(99), r.Max(),
		sb.String(), r.Errors, r.ErrorKinds)
	if n := r.Errors + r.Non2xx(); n > 0 {
		t.Errorf("%s: %d of %d GETs failed", what, n, r.Requests)
	}
}

// puts is the distinct-id PUT load through nginx: each worker writes a new
// profile at putRate per second until stopped.
type puts struct {
	stopc chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	tally tally
	mu    sync.Mutex
	acked []string
}

func startPuts(t *testing.T, f *fleet, prefix string) *puts {
	w := &puts{stopc: make(chan struct{})}
	t.Cleanup(func() { w.stop() })
	for i := range putWorkers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			tick := time.NewTicker(time.Second / putRate)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-w.stopc:
					return
				case <-tick.C:
				}
				id := fmt.Sprintf("%s-%d-%d", prefix, i, seq)
				st, err := put(f.url("/profiles/"+id), id)
				w.tally.add(st, err)
				if err == nil && st/100 == 2 {
					w.mu.Lock()
					w.acked = append(w.acked, id)
					w.mu.Unlock()
				}
			}
		}()
	}
	return w
}

// stop ends the load and returns what it saw and the acknowledged IDs.
func (w *puts) stop() (*tally, []string) {
	w.once.Do(func() {
		close(w.stopc)
		w.wg.Wait()
	})
	return &w.tally, w.acked
}

// parallel runs fn for every item, n at a time.
func parallel(items []string, n int, fn func(string)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(it)
		}()
	}
	wg.Wait()
}
