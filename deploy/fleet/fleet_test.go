package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// terminators are the fleet's terminator containers (compose services); each
// registers once in etcd with the bus address tcp://<name>:7100.
var terminators = []string{"front1", "front2", "web1", "web2", "profiles1", "profiles2",
	"visits1", "visits2", "flirts1", "flirts2", "notifications1", "notifications2", "echo1", "echo2"}

var etcds = []string{"etcd1", "etcd2", "etcd3"}

// ttl is the lease TTL compose gives every process (TERMINATOR_TTL).
const ttl = 5 * time.Second

// sampleProfiles is how many profiles the suite makes for its GET load.
const sampleProfiles = 50

// theFleet is the fleet TestMain brought up; nil when the suite is skipped.
var theFleet *fleet

func TestMain(m *testing.M) {
	if os.Getenv("TERMINATOR_FLEET") == "" {
		fmt.Println("fleet: skipped: needs Docker and a few minutes; run `make test-fleet` (TERMINATOR_FLEET=1)")
		os.Exit(m.Run())
	}
	f, err := newFleet()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
	code := 1
	func() {
		defer f.down()
		if err := f.up(); err != nil {
			fmt.Fprintln(os.Stderr, "fleet: bringing the fleet up:", err)
			return
		}
		theFleet = f
		code = m.Run()
	}()
	os.Exit(code)
}

// need returns the fleet, or skips the test when the suite is off.
func need(t *testing.T) *fleet {
	t.Helper()
	if theFleet == nil {
		t.Skip("fleet suite off (TERMINATOR_FLEET=1 turns it on)")
	}
	return theFleet
}

// fleet is one compose fleet under its own project name.
type fleet struct {
	project string
	net     string // first three octets of the fleet's /24
	port    int    // nginx's published port on 127.0.0.1
	script  string // deploy/compose/fleet.sh
	ids     map[string]string
	sample  []string // profile IDs the suite made and reads under load
	ledger  ledger   // the visits and flirts the suite sent, and the feeds it read
}

func newFleet() (*fleet, error) {
	for _, tool := range []string{"docker", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed: the fleet suite needs it", tool)
		}
	}
	script, err := filepath.Abs("../compose/fleet.sh")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	return &fleet{
		project: envOr("FLEET_TEST_PROJECT", "terminator-fleet-test"),
		net:     envOr("FLEET_TEST_NET", "172.31.214"),
		port:    port,
		script:  script,
	}, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// fleetSh runs fleet.sh for this fleet, its output on stderr.
func (f *fleet) fleetSh(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, f.script, args...)
	cmd.Env = append(os.Environ(), "FLEET_PROJECT="+f.project, "FLEET_NET="+f.net,
		fmt.Sprintf("FLEET_PORT=%d", f.port), "FLEET_SEED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("fleet.sh %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (f *fleet) up() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	_ = f.fleetSh(ctx, "down") // what a crashed earlier run left behind
	start := time.Now()
	if err := f.fleetSh(ctx, "up"); err != nil {
		return err
	}
	fmt.Printf("fleet: up in %.0fs (images, start, every process registered)\n", time.Since(start).Seconds())
	out, err := docker(ctx, "ps", "-a", "--filter", "label=com.docker.compose.project="+f.project,
		"--format", `{{.ID}} {{.Label "com.docker.compose.service"}}`)
	if err != nil {
		return err
	}
	f.ids = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if id, svc, ok := strings.Cut(line, " "); ok {
			f.ids[svc] = id
		}
	}
	for _, svc := range slices.Concat(terminators, etcds, []string{"nginx", "postgres", "prometheus"}) {
		if f.ids[svc] == "" {
			return fmt.Errorf("no container for %s in project %s", svc, f.project)
		}
	}
	if err := f.settle(ctx); err != nil {
		return err
	}
	return f.makeSample(ctx)
}

func (f *fleet) down() {
	if os.Getenv("FLEET_KEEP") != "" {
		fmt.Printf("fleet: kept (FLEET_KEEP): FLEET_PROJECT=%s deploy/compose/fleet.sh down removes it\n", f.project)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := f.fleetSh(ctx, "down"); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
	}
}

// makeSample PUTs the profiles the GET load reads.
func (f *fleet) makeSample(ctx context.Context) error {
	for i := range sampleProfiles {
		id := fmt.Sprintf("fleet-%d", i)
		err := eventually(ctx, 30*time.Second, "PUT /profiles/"+id, func() (bool, string) {
			st, err := put(f.url("/profiles/"+id), id)
			return err == nil && st/100 == 2, fmt.Sprint(st, err)
		})
		if err != nil {
			return err
		}
		f.sample = append(f.sample, id)
	}
	return nil
}

func (f *fleet) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", f.port, path) }

// getURLs are what the GET load asks for: the page of every sample profile
// (web, then profiles, visits and flirts) and echo.
func (f *fleet) getURLs() []string {
	urls := []string{f.url("/echo")}
	for _, id := range f.sample {
		urls = append(urls, f.url("/profiles/"+id))
	}
	return urls
}

// published is the 127.0.0.1 address a container's port is published on
// (it changes when the container restarts).
func (f *fleet) published(ctx context.Context, svc string, port int) (string, error) {
	out, err := docker(ctx, "port", f.ids[svc], fmt.Sprintf("%d/tcp", port))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "127.0.0.1:") {
			return strings.TrimSpace(line), nil
		}
	}
	return "", fmt.Errorf("%s: port %d is not published on 127.0.0.1: %q", svc, port, out)
}

// registration is one key under /terminator/services/ in etcd.
type registration struct {
	Key   string
	Addr  string
	Node  string // the process's incarnation, as events leases name it
	Lease int64
}

// registrations reads the registry from the first etcd member that answers.
func (f *fleet) registrations(ctx context.Context) ([]registration, error) {
	var errs []error
	for _, e := range etcds {
		out, err := docker(ctx, "exec", f.ids[e], "etcdctl", "--endpoints=http://127.0.0.1:2379",
			"--command-timeout=3s", "get", "--prefix", "/terminator/services/", "-w", "json")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var resp struct {
			KVs []struct {
				Key, Value []byte
				Lease      int64
			}
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			return nil, fmt.Errorf("etcdctl get: %w", err)
		}
		var regs []registration
		for _, kv := range resp.KVs {
			var v struct{ Addr, Node string }
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				return nil, fmt.Errorf("registration %s: %w", kv.Key, err)
			}
			regs = append(regs, registration{Key: string(kv.Key), Addr: v.Addr, Node: v.Node, Lease: kv.Lease})
		}
		return regs, nil
	}
	return nil, fmt.Errorf("no etcd member answered: %w", errors.Join(errs...))
}

// registeredOnce reports whether every terminator container is registered
// exactly once, and if not, what is off.
func registeredOnce(regs []registration) (bool, string) {
	n := map[string]int{}
	for _, r := range regs {
		n[r.Addr]++
	}
	var off []string
	for _, c := range terminators {
		if k := n["tcp://"+c+":7100"]; k != 1 {
			off = append(off, fmt.Sprintf("%s×%d", c, k))
		}
	}
	return len(off) == 0, fmt.Sprintf("%d keys; not once: %v", len(regs), off)
}

// keyOf is the registry key of a container's current registration.
func keyOf(regs []registration, container string) string {
	for _, r := range regs {
		if r.Addr == "tcp://"+container+":7100" {
			return r.Key
		}
	}
	return ""
}

// settle waits until the fleet is whole: every process registered once, both
// fronts ready, and nginx answering echo and the page.
func (f *fleet) settle(ctx context.Context) error {
	err := eventually(ctx, 90*time.Second, "every process registered once", func() (bool, string) {
		regs, err := f.registrations(ctx)
		if err != nil {
			return false, err.Error()
		}
		return registeredOnce(regs)
	})
	if err != nil {
		return err
	}
	for _, fr := range []string{"front1", "front2"} {
		err := eventually(ctx, 60*time.Second, fr+" ready", func() (bool, string) {
			addr, err := f.published(ctx, fr, 8081)
			if err != nil {
				return false, err.Error()
			}
			st, body, err := get("http://" + addr + "/readyz")
			return st == 200, fmt.Sprint(st, " ", body, err)
		})
		if err != nil {
			return err
		}
	}
	page := "/profiles/fleet-0"
	if len(f.sample) == 0 {
		page = "/profiles/1"
	}
	// Twenty answers in a row through nginx: both fronts, both webs seen.
	ok := 0
	return eventually(ctx, 60*time.Second, "nginx answering /echo and "+page, func() (bool, string) {
		st, body, err := get(f.url("/echo"))
		if st != 200 {
			ok = 0
			return false, fmt.Sprint("/echo: ", st, " ", body, err)
		}
		// The page may be 404 before the sample exists: any answer from
		// the services will do, none from the front's own error paths.
		if st, body, err = get(f.url(page)); st != 200 && st != 404 {
			ok = 0
			return false, fmt.Sprint(page, ": ", st, " ", body, err)
		}
		ok++
		return ok >= 20, ""
	})
}

// eventually polls cond every 200ms until it holds or the timeout passes.
func eventually(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		var ok bool
		if ok, last = cond(); ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %v for %s: %s", timeout, what, last)
		case <-tick.C:
		}
	}
}

// docker runs one docker CLI command and returns its stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// client is for the suite's own requests: short, bounded, loopback only.
var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
	MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
}}

func get(url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

func put(url, name string) (int, error) {
	body := fmt.Sprintf(`{"name":%q,"age":30,"city":"Lyon","bio":"fleet suite"}`, name)
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

// tally counts outcomes: statuses, and transport errors by kind.
type tally struct {
	mu     sync.Mutex
	sent   int
	status map[int]int
	errs   map[string]int
}

func (t *tally) add(status int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status == nil {
		t.status, t.errs = map[int]int{}, map[string]int{}
	}
	t.sent++
	if err != nil {
		if k := errKind(err); len(t.errs) < 16 || t.errs[k] > 0 {
			t.errs[k]++
		}
		return
	}
	t.status[status]++
}

// failed counts answers that were not 2xx, and transport errors.
func (t *tally) failed() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.sent
	for st, c := range t.status {
		if st/100 == 2 {
			n -= c
		}
	}
	return n
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("sent=%d status=%v errors=%v", t.sent, t.status, t.errs)
}

// errKind trims an error to its kind: addresses and ports vary.
func errKind(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
