package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/terminator-gw/terminator/bench/nginxconf"
	"github.com/terminator-gw/terminator/bench/peers"
)

// system is one system under test: its server processes (each the root
// of a process tree whose CPU time is the case's) and where to send load.
type system struct {
	r     *runner
	dir   string  // scratch: logs, configs, data copies
	roots []*proc // in start order
	base  string  // http://host:port of its public side
}

// newSystem makes an empty system with a scratch directory of its own.
func (r *runner) newSystem(name string) (*system, error) {
	dir, err := os.MkdirTemp(r.tmp, sanitize(name)+"-")
	if err != nil {
		return nil, err
	}
	return &system{r: r, dir: dir}, nil
}

// launch starts one of the system's processes, pinned to the system
// under test's CPUs.
func (s *system) launch(l launch) (*proc, error) {
	l.cpus, l.nice, l.dir = s.r.sutCPUs(), s.r.cfg.nice, s.dir
	p, err := start(l)
	if err != nil {
		return nil, err
	}
	s.roots = append(s.roots, p)
	return p, nil
}

// stop stops the system's processes, the last started first (a front
// before the services it calls, the services before etcd), and removes
// its scratch directory unless the run keeps them.
func (s *system) stop() error {
	var errs []error
	for i := len(s.roots) - 1; i >= 0; i-- {
		errs = append(errs, s.roots[i].stop())
	}
	if !s.r.cfg.keep {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

func (s *system) pids() []int {
	out := make([]int, len(s.roots))
	for i, p := range s.roots {
		out[i] = p.pid()
	}
	return out
}

// startHello starts the fasthttp hello world.
func (s *system) startHello() (addr string, err error) {
	if addr, err = freeAddr(); err != nil {
		return "", err
	}
	p, err := s.launch(launch{name: "hello", bin: s.r.cfg.peersBin, args: []string{"hello", "-listen", addr}})
	if err != nil {
		return "", err
	}
	return addr, waitTCP(addr, p)
}

// startGoProxy starts net/http/httputil.ReverseProxy in front of upstream.
func (s *system) startGoProxy(upstream string) (addr string, err error) {
	if addr, err = freeAddr(); err != nil {
		return "", err
	}
	p, err := s.launch(launch{name: "goproxy", bin: s.r.cfg.peersBin, args: []string{"goproxy", "-listen", addr, "-upstream", upstream}})
	if err != nil {
		return "", err
	}
	return addr, waitTCP(addr, p)
}

// startNginx runs nginx with the shipped site config forwarding to
// upstream, or, when upstream is "", with a site that answers 200 itself
// (nginx's own ceiling: the only config the harness writes).
func (s *system) startNginx(upstream string) (addr string, err error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", fmt.Errorf("nginx is not installed (apt-get install nginx): %w", err)
	}
	if addr, err = freeAddr(); err != nil {
		return "", err
	}
	site := fmt.Sprintf("server {\n    listen %s;\n    location / { return 200 \"hello\\n\"; }\n}\n", addr)
	if upstream != "" {
		path, err := nginxconf.FindShipped()
		if err != nil {
			return "", err
		}
		shipped, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if site, err = nginxconf.Site(shipped, addr, upstream); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(s.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	sitePath, mainPath := filepath.Join(dir, "site.conf"), filepath.Join(dir, "nginx.conf")
	workers := 0 // auto: one per CPU when unpinned
	if s.r.cfg.pin {
		workers = len(s.r.sutList)
	}
	if err := errors.Join(os.WriteFile(sitePath, []byte(site), 0o644),
		os.WriteFile(mainPath, []byte(nginxconf.Main(dir, workers, sitePath)), 0o644)); err != nil {
		return "", fmt.Errorf("write nginx config: %w", err)
	}
	// SIGTERM is nginx's fast shutdown; its workers exit with the master.
	p, err := s.launch(launch{name: "nginx", bin: bin, args: []string{"-p", dir, "-c", mainPath}})
	if err != nil {
		return "", err
	}
	if err := waitTCP(addr, p); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return "", fmt.Errorf("%w; nginx error.log: %s", err, tail(string(b), 500))
	}
	return addr, nil
}

// copyData gives the system its own copy of the shared seeded stores (a
// Pebble store belongs to one process at a time), and returns its path.
// Every store is copied, not only those the page reads: the notifications
// store's positions in the visits' and flirts' logs must find those logs.
func (s *system) copyData() (string, error) {
	dst := filepath.Join(s.dir, "data")
	if err := copyDir(s.r.seedDir, dst); err != nil {
		return "", fmt.Errorf("copy seeded data: %w", err)
	}
	return dst, nil
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if d.Name() == "LOCK" {
			return nil // Pebble's process lock: made anew on open
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// terminatorURLs are what a started terminator must answer before it is
// measured: ready, the echo route and the page (routes arrive via etcd).
func (s *system) terminatorURLs(public, admin string) []string {
	return []string{"http://" + admin + "/readyz", "http://" + public + "/echo",
		"http://" + public + "/profiles/1", "http://" + public + "/profiles/" + strconv.Itoa(s.r.cfg.seed)}
}

// startTerminatorAll runs `terminator all` (embedded etcd, the front and
// every service in one process) on a copy of the shared data.
func (s *system) startTerminatorAll(extra ...string) (public, admin string, err error) {
	data, err := s.copyData()
	if err != nil {
		return "", "", err
	}
	return s.terminatorAll(data, 0, extra...)
}

// terminatorAll runs `terminator all` on data; with seed > 0 it loads
// sample data on a first start (the harness's seeding step).
func (s *system) terminatorAll(data string, seed int, extra ...string) (public, admin string, err error) {
	a, err := freeAddrs(4)
	if err != nil {
		return "", "", err
	}
	public, admin = a[0], a[1]
	args := []string{"all", "-data", data, "-listen", public, "-admin", admin,
		"-embedded-etcd-client", "http://" + a[2], "-embedded-etcd-peer", "http://" + a[3]}
	if seed > 0 {
		args = append(args, "-seed", strconv.Itoa(seed))
	}
	args = append(append(args, s.r.cfg.termFlags...), extra...)
	p, err := s.launch(launch{name: "terminator-all", bin: s.r.cfg.bin, args: args})
	if err != nil {
		return "", "", err
	}
	return public, admin, waitHTTP(s.terminatorURLs(public, admin), p)
}

// startTerminatorSplit runs the terminator one process per role, as a
// fleet would: an etcd, the domain services the page calls, web, and the front.
func (s *system) startTerminatorSplit() (public, admin string, err error) {
	data, err := s.copyData()
	if err != nil {
		return "", "", err
	}
	a, err := freeAddrs(4)
	if err != nil {
		return "", "", err
	}
	public, admin = a[0], a[1]
	etcdURL := "http://" + a[2]
	etcd, err := s.launch(launch{name: "etcd", bin: s.r.cfg.peersBin,
		args: []string{"etcd", "-dir", filepath.Join(s.dir, "etcd"), "-client", etcdURL, "-peer", "http://" + a[3]}})
	if err != nil {
		return "", "", err
	}
	if err := waitTCP(a[2], etcd); err != nil {
		return "", "", err
	}
	watch := []*proc{etcd}
	for _, role := range append(append([]string(nil), peers.DomainRoles...), "web", "front") {
		args := []string{role, "-etcd-endpoints", etcdURL}
		switch role {
		case "web":
		case "front":
			args = append(append(args, "-listen", public, "-admin", admin), s.r.cfg.termFlags...)
		default:
			args = append(args, "-data", data)
		}
		p, err := s.launch(launch{name: "terminator-" + role, bin: s.r.cfg.bin, args: args})
		if err != nil {
			return "", "", err
		}
		watch = append(watch, p)
	}
	urls := s.terminatorURLs(public, admin)
	urls = append(urls[:1], urls[2:]...) // no echo service in this layout
	return public, admin, waitHTTP(urls, watch...)
}

// startPageNATS runs the page over NATS: a nats-server, then the domain
// services and the web aggregator, one process per role unless oneProcess.
func (s *system) startPageNATS(oneProcess bool) (public string, err error) {
	data, err := s.copyData()
	if err != nil {
		return "", err
	}
	a, err := freeAddrs(2)
	if err != nil {
		return "", err
	}
	host, port, _ := strings.Cut(a[0], ":")
	ns, err := s.launch(launch{name: "nats-server", bin: s.r.cfg.natsBin, args: []string{"-a", host, "-p", port}})
	if err != nil {
		return "", err
	}
	if err := waitTCP(a[0], ns); err != nil {
		return "", err
	}
	public = a[1]
	args := func(roles string) []string {
		return []string{"nats", "-roles", roles, "-data", data, "-web", public, "-nats", "nats://" + a[0]}
	}
	return public, s.startPageRoles(oneProcess, public, args, ns)
}

// startPageHTTP runs the page over HTTP between the services, one process
// per role unless oneProcess.
func (s *system) startPageHTTP(oneProcess bool) (public string, err error) {
	data, err := s.copyData()
	if err != nil {
		return "", err
	}
	a, err := freeAddrs(3)
	if err != nil {
		return "", err
	}
	public = a[0]
	args := func(roles string) []string {
		return []string{"http", "-roles", roles, "-data", data, "-web", a[0],
			"-" + peers.RoleProfiles, a[1], "-" + peers.RoleCounts, a[2]}
	}
	return public, s.startPageRoles(oneProcess, public, args)
}

// startPageRoles starts the peers' roles (domain services first) and waits
// for the page.
func (s *system) startPageRoles(oneProcess bool, public string, args func(roles string) []string, watch ...*proc) error {
	sets := append(append([]string(nil), peers.DomainRoles...), peers.RoleWeb)
	if oneProcess {
		sets = []string{strings.Join(sets, ",")}
	}
	for _, roles := range sets {
		name := "peers-" + strings.ReplaceAll(roles, ",", "+")
		p, err := s.launch(launch{name: name, bin: s.r.cfg.peersBin, args: args(roles)})
		if err != nil {
			return err
		}
		watch = append(watch, p)
	}
	return waitHTTP([]string{"http://" + public + "/profiles/1", "http://" + public + "/profiles/" + strconv.Itoa(s.r.cfg.seed)}, watch...)
}

// seed runs the shared seeding step: `terminator all -seed N` loads the
// sample data into dir through its own API, the harness keeps every page
// it answers as the reference the other systems must match byte for byte,
// and the terminator stops. Only the domain stores are kept: each system
// gets a copy of them.
func (r *runner) seed(dir string) (map[string][]byte, error) {
	s, err := r.newSystem("seed")
	if err != nil {
		return nil, err
	}
	public, _, err := s.terminatorAll(dir, r.cfg.seed)
	var ref map[string][]byte
	if err == nil {
		ref, err = fetchPages("http://"+public, r.cfg.seed)
	}
	if serr := s.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	return ref, os.RemoveAll(filepath.Join(dir, "etcd"))
}

// pagePaths are the paths the page cases spread their requests over.
func pagePaths(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "/profiles/" + strconv.Itoa(i+1)
	}
	return out
}

// checkPaths are what the byte-for-byte check asks for beyond the pages:
// an unknown profile and a malformed ID (their status must match).
var checkPaths = []string{"/profiles/nobody", "/profiles/Bad.Id"}

// fetchPages gets every page and the check paths, as "status body".
func fetchPages(base string, n int) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, p := range append(pagePaths(n), checkPaths...) {
		resp, err := pollClient.Get(base + p)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", p, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", p, err)
		}
		if resp.StatusCode != http.StatusOK {
			b = nil // only the status of a refusal must match
		}
		out[p] = append([]byte(strconv.Itoa(resp.StatusCode)+" "), b...)
	}
	return out, nil
}

// errDifferentPage is what verifyPages returns when a system answers other
// bytes than the terminator.
var errDifferentPage = errors.New("answers differ from the terminator's")

// verifyPages checks that base answers every page with the reference's
// bytes (and the refusals with its statuses).
func verifyPages(base string, ref map[string][]byte, n int) error {
	got, err := fetchPages(base, n)
	if err != nil {
		return err
	}
	for _, p := range append(pagePaths(n), checkPaths...) {
		if string(got[p]) != string(ref[p]) {
			return fmt.Errorf("%w: GET %s: got %q, the terminator answered %q", errDifferentPage, p, tail(string(got[p]), 300), tail(string(ref[p]), 300))
		}
	}
	return nil
}
