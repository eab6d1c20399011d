package role

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/embedded"
	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/limit"
	_ "github.com/terminator-gw/terminator/nanobus/transport" // the bus's tcp transport
	"github.com/terminator-gw/terminator/services"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/terminator"
)

// Roles are the roles a process can run: "all", "front", and each
// service's name.
func Roles() []string {
	out := []string{"all", "front"}
	for _, s := range services.All() {
		out = append(out, s.Name)
	}
	return out
}

// Process is what one process runs: its parts, started in order, stopped
// in the reverse order.
type Process struct {
	cfg   Config
	log   *slog.Logger
	admin *Admin
	front *terminator.Server
	trace *tracing // span export; nil without OTEL_EXPORTER_OTLP_ENDPOINT

	stops    []func()              // in start order; Stop runs them backwards
	etcdErr  atomic.Pointer[error] // while starting: why etcd cannot be reached
	started  atomic.Bool
	stopping atomic.Bool
	seeding  atomic.Bool
	ready    *readiness // logs readiness changes; nil before the admin listener starts
}

// Run starts role, waits for ctx to end, and stops it.
func Run(ctx context.Context, role string, cfg Config, log *slog.Logger) error {
	p, err := Start(ctx, role, cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	p.Stop()
	return nil
}

// Start starts role: "all" (an embedded etcd unless cfg.Etcd names one,
// every service, the front), "front", or one service by name. It returns
// once every part serves (for "all -seed", once the sample data is in).
func Start(ctx context.Context, role string, cfg Config, log *slog.Logger) (*Process, error) {
	began := time.Now()
	cfg.setDefaults(role)
	var run []services.Service
	for _, s := range services.All() {
		if role == "all" || role == s.Name {
			run = append(run, s)
		}
	}
	if role != "all" && role != "front" && len(run) == 0 {
		return nil, fmt.Errorf("no role %q: want one of %s", role, strings.Join(Roles(), ", "))
	}
	p := &Process{cfg: cfg, log: log}
	admin, err := NewAdmin(cfg.Admin, log)
	if err != nil {
		return nil, err
	}
	p.admin = admin
	admin.Check("started", func(context.Context) error {
		switch {
		case p.stopping.Load():
			return errors.New("stopping")
		case p.seeding.Load():
			return errors.New("loading sample data")
		case !p.started.Load():
			if err := p.etcdErr.Load(); err != nil {
				return fmt.Errorf("waiting for etcd (%s): %w", strings.Join(p.etcdEndpoints(role), ","), *err)
			}
			return errors.New("starting")
		}
		return nil
	})
	if err := admin.Start(); err != nil {
		return nil, err
	}
	p.stops = append(p.stops, func() { admin.Close() })
	if err := p.startTracing(ctx, role); err != nil {
		p.Stop()
		return nil, err
	}
	p.ready = p.watchReadiness()

	if err := p.start(ctx, role, run); err != nil {
		p.Stop()
		return nil, err
	}
	p.started.Store(true)
	attrs := []any{"role", role, "version", cfg.Version, "admin", admin.Addr()}
	if p.front != nil {
		attrs = append(attrs, "http", p.front.Addr())
	}
	p.log.Info("started", append(attrs, "took", since(began))...)
	p.ready.look() // at once, not at the next tick
	return p, nil
}

func (p *Process) start(ctx context.Context, role string, run []services.Service) error {
	cli, err := p.etcd(ctx, role)
	if err != nil {
		return err
	}
	p.admin.console.mu.Lock()
	p.admin.console.cli = cli
	p.admin.console.mu.Unlock()
	for _, s := range run {
		if err := p.startService(ctx, cli, s); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	if role == "all" || role == "front" {
		if err := p.startFront(ctx, cli); err != nil {
			return fmt.Errorf("front: %w", err)
		}
	}
	if role == "all" && p.cfg.Seed > 0 {
		// Sample data is a convenience: failing to load it is worth a
		// warning, not an exit.
		p.seeding.Store(true)
		if err := seedIfEmpty(ctx, FrontURL(p.front.Addr()), p.cfg.Seed, p.log); err != nil {
			p.log.Warn("seeding sample data failed", "err", err)
		}
		p.seeding.Store(false)
	}
	return nil
}

// Stop stops every part in the reverse order of their start: the front
// drains first, services deregister and drain, etcd goes last. Readiness
// turns false at once.
func (p *Process) Stop() {
	if p.stopping.Swap(true) {
		return
	}
	began := time.Now()
	if p.ready != nil {
		p.ready.close()
	}
	p.log.Info("stopping")
	for i := len(p.stops) - 1; i >= 0; i-- {
		p.stops[i]()
	}
	p.stops = nil
	p.log.Info("stopped", "took", since(began))
}

// AdminAddr is the admin listener's address.
func (p *Process) AdminAddr() string { return p.admin.Addr() }

// FrontAddr is the front's public address ("" without a front).
func (p *Process) FrontAddr() string {
	if p.front == nil {
		return ""
	}
	return p.front.Addr()
}

// Ready reports whether every part of the process is ready, and why not.
func (p *Process) Ready(ctx context.Context) error { return p.admin.Ready(ctx) }

// etcdWarnEvery is how often a start waiting for etcd says so again.
const etcdWarnEvery = 3 * time.Second

// etcdEndpoints names the etcd the process waits for, for readiness.
func (p *Process) etcdEndpoints(role string) []string {
	if len(p.cfg.Etcd.Endpoints) == 0 && role == "all" {
		return []string{p.cfg.Embed.ClientURL + " embedded"}
	}
	return p.cfg.Etcd.Endpoints
}

// etcd returns a client of the configured cluster, or of an embedded etcd
// that "all" starts when none is configured, once it answers. Until then
// readiness says why not, and the log does at once (and every few seconds after);
// credentials or rights etcd refuses fail the start.
func (p *Process) etcd(ctx context.Context, role string) (*clientv3.Client, error) {
	c := p.cfg.Etcd
	if len(c.Endpoints) == 0 {
		if role != "all" {
			return nil, errors.New("-etcd-endpoints is required (only \"all\" embeds etcd)")
		}
		dir := filepath.Join(p.cfg.DataDir, "etcd")
		p.log.Info("starting embedded etcd", "client", p.cfg.Embed.ClientURL, "data", dir)
		e, err := embedded.Start(embedded.Config{Dir: dir, ClientURL: p.cfg.Embed.ClientURL, PeerURL: p.cfg.Embed.PeerURL,
			LogLevel: "fatal"}) // etcd logs its own orderly shutdown as errors
		if err != nil {
			return nil, err
		}
		p.stops = append(p.stops, e.Close)
		c.Endpoints = e.Endpoints()
		p.log.Info("embedded etcd ready", "endpoints", c.Endpoints)
	}
	cli, err := c.Connect(ctx, discovery.ConnectOptions{Logger: p.log, LogEvery: etcdWarnEvery, Report: func(err error) {
		if err == nil {
			p.etcdErr.Store(nil)
		} else {
			p.etcdErr.Store(&err)
		}
	}})
	if err != nil {
		return nil, err
	}
	p.stops = append(p.stops, func() { cli.Close() })
	return cli, nil
}

// newNode starts the bus node of service, with its adaptive limit on
// handlers (nil with -adaptive-limit=false).
func (p *Process) newNode(service string) (*nanobus.Node, *limit.Limiter, error) {
	b := p.cfg.Bus
	cfg := nanobus.Config{Service: service, Listen: b.Listen, Advertise: b.Advertise, Version: p.cfg.Version,
		Limits: b.Limits, Logger: p.log, ErrorLogRate: p.cfg.ErrorLogRate, TracerProvider: p.trace.provider(service)}
	var lim *limit.Limiter
	if !p.cfg.Front.FixedLimit {
		// Far above what an unloaded service runs at once: it moves only
		// under load. The ceiling is the node's own bound on handlers.
		lim = limit.New(256, 64, 8192)
		cfg.Limiter = lim
	}
	if b.CA != "" || b.Cert != "" || b.Key != "" {
		if b.CA == "" || b.Cert == "" || b.Key == "" {
			return nil, nil, errors.New("bus TLS needs -bus-ca, -bus-cert and -bus-key together")
		}
		t, err := nanobus.TLSFromFiles(b.CA, b.Cert, b.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("bus %w", err)
		}
		t.MinVersion = 0x0304 // TLS 1.3: every member runs this binary
		cfg.TLS = t
	}
	n, err := nanobus.NewNode(cfg)
	return n, lim, err
}

// watch follows etcd into node's peers. A service's watcher logs only
// warnings: the front logs membership changes, and a service would repeat
// them (once per service in "all").
func (p *Process) watch(ctx context.Context, cli *clientv3.Client, node *nanobus.Node, quiet bool) (*discovery.Watcher, error) {
	log := p.log
	if quiet {
		log = slog.New(levelFilter{log.Handler(), slog.LevelWarn})
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := discovery.Watch(wctx, cli, discovery.WatchOptions{Peers: node, Logger: log})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// waitCallees waits until node is connected to an instance of each of
// callees (the watcher feeds it their instances as etcd lists them), for
// CalleeWait at most, before the node is announced: announced before that,
// its first requests would find a callee unreachable and answer 503. A
// callee still unreachable then is logged, and the node is announced all
// the same: it serves what it can, and calls the callee once it comes.
func (p *Process) waitCallees(ctx context.Context, node *nanobus.Node, callees []string) {
	if len(callees) == 0 {
		return
	}
	p.log.Debug("waiting for callees", "service", node.Service(), "callees", callees, "at_most", p.cfg.CalleeWait)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, p.cfg.CalleeWait)
	defer cancel()
	for _, callee := range callees {
		// Once wctx has ended, WaitReady still returns nil for a callee
		// already reached: every one that is not is named.
		if err := node.WaitReady(wctx, callee); err != nil {
			p.log.Warn("callee not reachable; registering without it", "service", node.Service(), "callee", callee,
				"waited", time.Since(start).Round(time.Millisecond), "err", err)
		}
	}
}

// register announces node in etcd and keeps it there.
func (p *Process) register(ctx context.Context, cli *clientv3.Client, node *nanobus.Node, ev *events.Bus) (*discovery.Registrar, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r := discovery.RegistrationOf(node)
	r.Admin = adminAdvertised(p.admin.Addr(), node.Addr())
	if ev != nil {
		if d := ev.Declaration(); len(d.Publishes)+len(d.Subscribes) > 0 {
			r.Events = &d
		}
	}
	reg, err := discovery.Register(rctx, cli, r, discovery.RegisterOptions{TTL: p.cfg.TTL, Logger: p.log})
	if err != nil {
		return nil, err
	}
	return reg, nil
}

// startService runs one service on its own bus node: its store, its
// handlers, its peers from etcd (the aggregator calls the others), and,
// once it reaches the services it calls (waitCallees), its registration. Stopping it deregisters, keeps answering for the grace
// period while callers' watchers catch up, drains, and closes the store.
func (p *Process) startService(ctx context.Context, cli *clientv3.Client, s services.Service) error {
	node, lim, err := p.newNode(s.Name)
	if err != nil {
		return err
	}
	p.stops = append(p.stops, func() { node.Close() })
	var st store.Store
	if s.Stateful {
		st, err = p.openStore(ctx, s.Name)
		if err != nil {
			return err
		}
		p.stops = append(p.stops, func() { st.Close() })
		p.admin.Check(s.Name+": store", st.Check)
	}
	evCfg := events.Config{Logger: p.log}
	if st != nil {
		evCfg.Store = store.EventLog(st)
	}
	ev, err := events.New(node, evCfg)
	if err != nil {
		return err
	}
	if err := s.Register(node, st, ev); err != nil {
		return err
	}
	w, err := p.watch(ctx, cli, node, true)
	if err != nil {
		return err
	}
	p.stops = append(p.stops, w.Close)
	policies := rollout.NewApplier(node, w, p.log)
	p.follow(w, func() { policies.Apply() })
	p.waitCallees(ctx, node, s.Calls)
	reg, err := p.register(ctx, cli, node, ev)
	if err != nil {
		return err
	}
	// Its subscriptions read once it is announced; they stop, and its read
	// streams end, before the node drains (a stream would hold the drain
	// for its whole span) and the store closes.
	ev.Start()
	// A service is ready while registered (its callers find it through
	// etcd) and its store answers.
	p.admin.Check(s.Name+": registration", func(context.Context) error { return reg.Registered() })
	p.publish(cli, node)
	p.admin.Section(nodeSection(node, lim, w, reg, ev))
	if err := p.admin.Collect(newNodeCollector(node, lim, w, reg, ev)); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	p.admin.console.watch(s.Name, node, ev, nodeProbe(node, limitOf(lim)))
	p.stops = append(p.stops, func() {
		t := time.Now()
		reg.Close()
		p.log.Info("deregistered", "service", s.Name, "took", since(t), "answering_for", p.cfg.Grace)
		time.Sleep(p.cfg.Grace) // callers' watchers see us go; meanwhile we still answer
		t = time.Now()
		ev.Close()
		dctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
		defer cancel()
		if err := node.Shutdown(dctx); err != nil {
			p.log.Warn("drain incomplete", "service", s.Name, "err", err, "took", since(t))
		} else {
			p.log.Info("drained", "service", s.Name, "took", since(t))
		}
	})
	p.log.Info("service up", "service", s.Name, "version", node.Version(), "bus", node.Addr())
	return nil
}

// openStore opens service's store: on the PostgreSQL that -store names, or
// Pebble under the data directory. Opening PostgreSQL connects and
// migrates: it gets 30 seconds.
func (p *Process) openStore(ctx context.Context, service string) (store.Store, error) {
	spec := p.cfg.Store
	if spec == "" {
		spec = p.cfg.DataDir
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return store.Open(octx, spec, service)
}

// startFront runs the terminator: its routes and peers follow etcd; once
// it reaches the services of its routes (waitCallees), it registers and
// starts taking requests.
func (p *Process) startFront(ctx context.Context, cli *clientv3.Client) error {
	node, lim, err := p.newNode("terminator")
	if err != nil {
		return err
	}
	p.stops = append(p.stops, func() { node.Close() })
	srv, err := terminator.New(p.cfg.Front, node, p.log)
	if err != nil {
		return err
	}
	srv.SetTracerProvider(p.trace.provider("terminator"))
	p.stops = append(p.stops, func() { srv.Close() })
	w, err := p.watch(ctx, cli, node, false)
	if err != nil {
		return err
	}
	p.stops = append(p.stops, w.Close)
	policies := rollout.NewApplier(node, w, p.log)
	p.follow(w, func() {
		srv.SetRoutes(routesOf(w))
		srv.SetRollout(rollout.FlagsOf(w, p.log), policies.Apply())
	})
	// The front calls the services of its routes.
	p.waitCallees(ctx, node, routedServices(w))
	reg, err := p.register(ctx, cli, node, nil)
	if err != nil {
		return err
	}
	p.stops = append(p.stops, func() {
		t := time.Now()
		reg.Close()
		p.log.Info("deregistered", "service", "terminator", "took", since(t))
	})
	p.publish(cli, node)
	// A front stays ready while etcd is unreachable: it serves from the
	// membership it knows (and says so in its status), where an unready
	// front would be taken out of service with every other, all at once.
	p.admin.Check("front", func(context.Context) error { return srv.Ready() })
	p.admin.Section(Section{Name: "front", Status: func() any { return srv.Status() }, Page: terminator.StatusPage})
	p.admin.Section(nodeSection(node, lim, w, reg, nil))
	if err := errors.Join(p.admin.Collect(newFrontCollector(srv)), p.admin.Collect(newNodeCollector(node, lim, w, reg, nil))); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	p.admin.console.watch("front", node, nil, frontProbe(func() (requests, errors uint64, limit int) {
		st := srv.Status()
		for _, r := range st.Routes {
			for class, n := range r.Responses {
				requests += n
				if class == "5xx" {
					errors += n
				}
			}
		}
		return requests, errors, st.Limit
	}, node))
	if err := srv.Start(); err != nil {
		return err
	}
	p.front = srv
	p.stops = append(p.stops, func() {
		t := time.Now()
		dctx, cancel := context.WithTimeout(context.Background(), p.cfg.Front.DrainTimeout)
		defer cancel()
		if err := srv.Drain(dctx); err != nil {
			p.log.Warn("drain incomplete", "front", srv.Addr(), "err", err, "took", since(t))
		} else {
			p.log.Info("drained", "front", srv.Addr(), "took", since(t))
		}
	})
	// Every front campaigns to drive the rollout ramps; the elected one
	// does. Stopped first, it resigns at once: another front takes over.
	ramps := rollout.Drive(cli, rollout.DriveOptions{Name: "front " + srv.Addr(), TTL: p.cfg.TTL, Logger: p.log})
	p.stops = append(p.stops, ramps.Close)
	return nil
}

// publish publishes node's calls and ghost comparisons to etcd every
// second, for `terminator rollout show` and the ramp driver.
func (p *Process) publish(cli *clientv3.Client, node *nanobus.Node) {
	r := rollout.Report(cli, node, rollout.ReportOptions{TTL: p.cfg.TTL, Logger: p.log})
	p.stops = append(p.stops, r.Close)
}

// follow calls apply now and after every change w sees, until the process
// stops.
func (p *Process) follow(w *discovery.Watcher, apply func()) {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			apply()
			select {
			case <-ctx.Done():
				return
			case <-w.Changes():
			}
		}
	}()
	p.stops = append(p.stops, func() { stop(); <-done })
}

// routesOf is the front's routing table: the public routes of the live
// registrations (with the timeouts they declare), and the routes services
// announced before, which answer 503 while no instance runs rather than
// 404.
func routesOf(w *discovery.Watcher) []terminator.Route {
	var out []terminator.Route
	seen := map[string]bool{}
	add := func(r terminator.Route) {
		if k := r.Service + " " + r.Name; !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	for _, reg := range w.Snapshot() {
		peer, _ := reg.Peer() // routes that do not parse are left out, and logged by the watcher
		for _, r := range terminator.PublicRoutes(peer) {
			add(r)
		}
	}
	for service, routes := range w.Announced() {
		for _, r := range routes {
			add(terminator.Route{Route: r, Service: service})
		}
	}
	return out
}

// routedServices is the services of the front's routes, sorted.
func routedServices(w *discovery.Watcher) []string {
	var out []string
	for _, r := range routesOf(w) {
		if !slices.Contains(out, r.Service) {
			out = append(out, r.Service)
		}
	}
	slices.Sort(out)
	return out
}

// levelFilter drops records below min.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}
