package rollout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/embedded"
	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/nanobus/report"
	"github.com/terminator-gw/terminator/role"
	"github.com/terminator-gw/terminator/terminator"
)

// cluster is a real etcd with real processes (role.Start, as the binary
// runs them) and real bus nodes against it, all in this test process.
type cluster struct {
	t     *testing.T
	etcd  string
	cli   *clientv3.Client
	store *rollout.Store
	logs  *nanobustest.Logs
	log   *slog.Logger
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs etcd and several processes")
	}
	e, err := embedded.Start(embedded.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	cli, err := discovery.ClientConfig{Endpoints: e.Endpoints()}.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c := &cluster{t: t, etcd: e.Endpoints()[0], cli: cli, store: rollout.NewStore(cli, ""), logs: &nanobustest.Logs{}}
	c.log = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs:\n%s", c.logs)
		}
	})
	return c
}

// start runs role ("front", or a service's name) at version, as the binary
// would with -etcd-endpoints.
func (c *cluster) start(name, version string, edit ...func(*role.Config)) *role.Process {
	c.t.Helper()
	cfg := role.Config{
		Etcd: discovery.ClientConfig{Endpoints: []string{c.etcd}}, Version: version, DataDir: c.t.TempDir(),
		Admin: role.AdminConfig{Listen: "127.0.0.1:0"}, Front: terminator.Config{Listen: "127.0.0.1:0"},
		Grace: 200 * time.Millisecond,
	}
	for _, e := range edit {
		e(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := role.Start(ctx, name, cfg, c.log.With("process", name+" "+version))
	if err != nil {
		c.t.Fatalf("start %s %s: %v", name, version, err)
	}
	c.t.Cleanup(p.Stop) // Stop twice is fine
	return p
}

// service runs a bus node of service at version with handlers registered
// by register, announced in etcd and following it (so it can call
// others), as a service binary would.
func (c *cluster) service(name, version string, register func(*nanobus.Node) error) *nanobus.Node {
	c.t.Helper()
	n := nanobustest.NewNode(c.t, nanobus.Config{Service: name, Version: version})
	if err := register(n); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := discovery.Watch(ctx, c.cli, discovery.WatchOptions{Peers: n, Logger: nanobustest.Quiet})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(w.Close)
	reg, err := discovery.Register(ctx, c.cli, discovery.RegistrationOf(n), discovery.RegisterOptions{Logger: nanobustest.Quiet})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { reg.Close() })
	return n
}

// run runs the CLI (cmd "rollout" or "flag") against the cluster's etcd,
// and fails the test unless it succeeds. It returns what it printed.
func (c *cluster) run(cmd string, args ...string) string {
	c.t.Helper()
	out, code := c.runCode(cmd, args...)
	if code != 0 {
		c.t.Fatalf("terminator %s %s: exit %d\n%s", cmd, strings.Join(args, " "), code, out)
	}
	return out
}

func (c *cluster) runCode(cmd string, args ...string) (string, int) {
	var out bytes.Buffer
	args = append(args, "-etcd-endpoints", c.etcd)
	code := rollout.CLI{Parse: role.Parse, EnvName: role.EnvName, Stdout: &out, Stderr: &out}.Run(cmd, args)
	return out.String(), code
}

// eventually polls cond every 5ms until it holds, and fails the test if it
// does not within limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); ; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("not within %v: %s", limit, what)
		}
	}
}

// status reads a process's /status.json.
func status(t *testing.T, p *role.Process) map[string]json.RawMessage {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// frontNode is what a front's status says of its bus node.
type frontNode struct {
	Peers    map[string][]report.PeerState `json:"peers"`
	Policies map[string]*policy.Policy     `json:"policies"`
}

func frontStatus(t *testing.T, p *role.Process) frontNode {
	t.Helper()
	var n frontNode
	if err := json.Unmarshal(status(t, p)["node:terminator"], &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitApplied waits until the front applies a policy for service that
// satisfies ok (nil: none).
func waitApplied(t *testing.T, front *role.Process, service string, ok func(*policy.Policy) bool) {
	t.Helper()
	eventually(t, 5*time.Second, "the front applies the new policy of "+service, func() bool {
		return ok(frontStatus(t, front).Policies[service])
	})
}

// waitInstances waits until the front has a connected instance of each
// of service's versions.
func waitInstances(t *testing.T, front *role.Process, service string, versions ...string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("the front connects to %s %v", service, versions), func() bool {
		ready := map[string]bool{}
		for _, p := range frontStatus(t, front).Peers[service] {
			ready[p.Version] = ready[p.Version] || p.Ready
		}
		for _, v := range versions {
			if !ready[v] {
				return false
			}
		}
		return true
	})
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

// reply is one HTTP exchange's outcome.
type reply struct {
	status  int
	body    string
	version string // the version that answered, from Server-Timing
	header  http.Header
	err     error
}

var versionRe = regexp.MustCompile(`desc="([^"]*)"`)

func do(method, url, body string, header ...string) reply {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: string(b), header: resp.Header, err: err}
	for _, v := range resp.Header.Values("Server-Timing") {
		if m := versionRe.FindStringSubmatch(v); m != nil {
			r.version = m[1]
		}
	}
	return r
}

func get(url string, header ...string) reply { return do("GET", url, "", header...) }

// load sends requests from a few workers until stopped, and counts the
// replies that are not 200 (or whatever ok accepts).
type load struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	ok, bad  atomic.Int64
	mu       sync.Mutex
	failures []string     // the first few
	firstBad atomic.Int64 // unix nanos of the first bad reply
	versions sync.Map     // version -> *atomic.Int64 of replies
}

func startLoad(workers int, requests func(worker, i int) reply, ok func(reply) bool) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				r := requests(w, i)
				if ok(r) {
					l.ok.Add(1)
				} else {
					l.bad.Add(1)
					l.firstBad.CompareAndSwap(0, time.Now().UnixNano())
					l.mu.Lock()
					if len(l.failures) < 5 {
						l.failures = append(l.failures, fmt.Sprintf("%d %q (version %q) %v", r.status, r.body, r.version, r.err))
					}
					l.mu.Unlock()
				}
				n, _ := l.versions.LoadOrStore(r.version, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				time.Sleep(time.Millisecond) // leave the 2 cores some room for etcd and the driver
			}
		}()
	}
	return l
}

// getLoad loads GET url with 4 workers, wanting 200s.
func getLoad(url string) *load {
	return startLoad(4, func(int, int) reply { return get(url) }, func(r reply) bool { return r.err == nil && r.status == 200 })
}

func (l *load) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// waitMore waits until the load has made n more requests.
func (l *load) waitMore(t *testing.T, n int64) {
	t.Helper()
	target := l.ok.Load() + l.bad.Load() + n
	eventually(t, 20*time.Second, fmt.Sprintf("%d more requests", n), func() bool { return l.ok.Load()+l.bad.Load() >= target })
}

// wantNoFailure fails the test if any request failed.
func (l *load) wantNoFailure(t *testing.T) {
	t.Helper()
	if bad := l.bad.Load(); bad > 0 {
		t.Fatalf("%d of %d requests failed; first: %v", bad, bad+l.ok.Load(), l.failures)
	}
	t.Logf("%d requests, none failed", l.ok.Load())
}

// binomialInterval returns the central interval [lo, hi] that holds a
// Binomial(n, p) count with probability at least conf: each tail outside
// it has probability at most (1-conf)/2. Exact, from the pmf (log-gamma).
func binomialInterval(n int, p, conf float64) (lo, hi int) {
	tail := (1 - conf) / 2
	pmf := func(k int) float64 {
		lg := func(x int) float64 { v, _ := math.Lgamma(float64(x + 1)); return v }
		return math.Exp(lg(n) - lg(k) - lg(n-k) + float64(k)*math.Log(p) + float64(n-k)*math.Log(1-p))
	}
	sum := 0.0
	for lo = 0; lo < n; lo++ {
		if sum+pmf(lo) > tail {
			break
		}
		sum += pmf(lo)
	}
	sum = 0
	for hi = n; hi > 0; hi-- {
		if sum+pmf(hi) > tail {
			break
		}
		sum += pmf(hi)
	}
	return lo, hi
}

// policy reads service's policy from etcd.
func (c *cluster) policy(service string) *rollout.Policy {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.store.Policy(ctx, service)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// reading reads the published numbers.
func (c *cluster) reading() rollout.Reading {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.store.ReadStats(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// echoCluster runs a front and echo at v1 and v2, and waits until the
// front reaches both.
func echoCluster(t *testing.T) (*cluster, *role.Process) {
	c := newCluster(t)
	front := c.start("front", "f1")
	c.start("echo", "v1")
	c.start("echo", "v2")
	waitInstances(t, front, "echo", "v1", "v2")
	return c, front
}

func frontURL(p *role.Process, path string) string { return "http://" + p.FrontAddr() + path }
