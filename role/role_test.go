package role

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/embedded"
)

// etcdFor starts an embedded etcd on free loopback ports for the test,
// with a client of it for the test's own looks. Both close when the test
// ends, after whatever the test started later (cleanups run last first).
func etcdFor(t *testing.T) ([]string, *clientv3.Client) {
	t.Helper()
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
	return e.Endpoints(), cli
}

// testConfig is a process on loopback with free ports everywhere, a short
// grace on stop, and its data under a temp dir.
func testConfig(t *testing.T, endpoints []string) Config {
	return Config{
		Etcd:    discovery.ClientConfig{Endpoints: endpoints},
		Admin:   AdminConfig{Listen: "127.0.0.1:0"},
		DataDir: t.TempDir(),
		Grace:   time.Millisecond,
	}
}

func startRole(t *testing.T, role string, cfg Config) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := Start(ctx, role, cfg, quiet)
	if err != nil {
		t.Fatalf("start %s: %v", role, err)
	}
	t.Cleanup(p.Stop) // a second Stop does nothing
	return p
}

// eventually polls cond (every 10ms) until it holds, for at most 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after 10s waiting for %s", what)
}

// registrations lists the registrations of service in etcd.
func registrations(t *testing.T, cli *clientv3.Client, service string) []discovery.Registration {
	t.Helper()
	var out []discovery.Registration
	for _, kv := range registrationKeys(t, cli, service) {
		var r discovery.Registration
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		out = append(out, r)
	}
	return out
}

// registrationKeys reads the etcd keys of service's registrations.
func registrationKeys(t *testing.T, cli *clientv3.Client, service string) []*mvccpb.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, discovery.DefaultPrefix+"/services/"+service+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Kvs
}

func ready(p *Process) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return p.Ready(ctx) == nil
}

func TestServiceRole(t *testing.T) {
	endpoints, cli := etcdFor(t)
	p := startRole(t, "profiles", testConfig(t, endpoints))

	eventually(t, "readiness", func() bool { return ready(p) })
	if status, _, body := get(t, p.AdminAddr(), "/readyz", ""); status != 200 {
		t.Errorf("/readyz: %d %s", status, body)
	}
	regs := registrations(t, cli, "profiles")
	if len(regs) != 1 {
		t.Fatalf("%d registrations of profiles, want 1: %+v", len(regs), regs)
	}
	want := []discovery.Route{{Route: "events.read", TimeoutMS: 35000, Stream: true},
		{Route: "profiles.get", Idempotent: true}, {Route: "profiles.put", Idempotent: true}}
	if r := regs[0]; !slices.Equal(r.Routes, want) || !strings.HasPrefix(r.Addr, "tcp://127.0.0.1:") || r.Version == "" {
		t.Errorf("registration %+v, want routes %+v on a loopback bus address, with a version", r, want)
	}
	if e := regs[0].Events; e == nil || len(e.Publishes) != 1 || e.Publishes[0].Topic != "profile.updated" {
		t.Errorf("registration's events %+v, want profile.updated published", e)
	}
	// The status page shows the service's node.
	if _, _, js := get(t, p.AdminAddr(), "/status.json", ""); !strings.Contains(js, `"node:profiles"`) || !strings.Contains(js, `"profiles.get"`) {
		t.Errorf("status.json does not show the node and its routes: %.500s", js)
	}
	if status, _, page := get(t, p.AdminAddr(), "/status/", ""); status != 200 || !strings.Contains(page, "handlers cancelled") ||
		!strings.Contains(page, "<th>cancelled</th>") {
		t.Errorf("status page: %d, without the cancellation counters: %.800s", status, page)
	}

	p.Stop()
	if regs := registrations(t, cli, "profiles"); len(regs) != 0 {
		t.Errorf("after Stop: still registered: %+v", regs)
	}
	if ready(p) {
		t.Error("after Stop: still ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.Ready(ctx); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("after Stop: Ready = %v, want it to say the process is stopping", err)
	}
}

// A front and a service started apart (as two processes would be) find
// each other through etcd.
func TestFrontFindsService(t *testing.T) {
	endpoints, _ := etcdFor(t)
	echo := startRole(t, "echo", testConfig(t, endpoints))
	cfg := testConfig(t, endpoints)
	cfg.Front.Listen = "127.0.0.1:0"
	front := startRole(t, "front", cfg)
	eventually(t, "front readiness", func() bool { return ready(front) })

	client := &http.Client{Timeout: 5 * time.Second}
	var status int
	var body string
	eventually(t, "GET /echo through the front", func() bool {
		resp, err := client.Get("http://" + front.FrontAddr() + "/echo")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		status, body = resp.StatusCode, string(b)
		return status == 200 // 404 until the front's watcher has the route
	})
	if body != "hello\n" {
		t.Errorf("GET /echo: %d %q, want 200 hello", status, body)
	}

	// The last instance gone (deregistered at once), the route it announced
	// stays: 503 with Retry-After, not 404.
	echo.Stop()
	var retry string
	eventually(t, "503 once echo is gone", func() bool {
		resp, err := client.Get("http://" + front.FrontAddr() + "/echo")
		if err != nil {
			return false
		}
		resp.Body.Close()
		status, retry = resp.StatusCode, resp.Header.Get("Retry-After")
		return status != 200
	})
	if status != 503 || retry == "" {
		t.Fatalf("GET /echo with no instance left: %d, Retry-After %q; want 503 with Retry-After", status, retry)
	}
}

func TestStartRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tt := range []struct {
		role, errHas string
	}{
		{"nope", "no role"},
		{"echo", "-etcd-endpoints is required"},
		{"front", "-etcd-endpoints is required"},
	} {
		cfg := Config{Admin: AdminConfig{Listen: "127.0.0.1:0"}, DataDir: t.TempDir()}
		if p, err := Start(ctx, tt.role, cfg, quiet); err == nil || !strings.Contains(err.Error(), tt.errHas) {
			if p != nil {
				p.Stop()
			}
			t.Errorf("Start(%q) without etcd = %v, want an error with %q", tt.role, err, tt.errHas)
		}
	}
}

// The front role on a unix socket (-listen unix:PATH): it serves there,
// says so in FrontAddr, the seed's requests reach it (FrontURL), and a
// clean stop removes the socket file.
func TestFrontOnUnixSocket(t *testing.T) {
	endpoints, _ := etcdFor(t)
	startRole(t, "echo", testConfig(t, endpoints))
	dir, err := os.MkdirTemp("", "rsock") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "front.sock")
	cfg := testConfig(t, endpoints)
	cfg.Front.Listen = "unix:" + sock
	front := startRole(t, "front", cfg)
	if front.FrontAddr() != "unix:"+sock {
		t.Errorf("FrontAddr %q, want unix:%s", front.FrontAddr(), sock)
	}
	base := FrontURL(front.FrontAddr())
	var status int
	var body string
	eventually(t, "GET /echo over the socket", func() bool {
		status, body = send(context.Background(), "GET", base+"/echo", "")
		return status == 200
	})
	if body != "hello\n" {
		t.Errorf("GET /echo: %d %q, want 200 hello", status, body)
	}
	front.Stop()
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket file after a clean stop: %v", err)
	}
}
