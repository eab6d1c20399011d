package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
)

// DefaultPrefix is where registrations live unless told otherwise.
const DefaultPrefix = "/terminator"

// Registration is what a node publishes about itself.
type Registration struct {
	Service string `json:"service"`           // service name, e.g. "profiles"; no "/"
	Node    string `json:"node"`              // this incarnation's ID, unique per start; no "/"
	Addr    string `json:"addr"`              // bus address callers dial, e.g. "tcp://10.0.0.5:7100"
	Version string `json:"version,omitempty"` // the service's build version
	Weight  int    `json:"weight,omitempty"`  // relative share of calls; 0 counts as 1
	// Protocol is the wire protocol the node speaks (wire.ProtocolVersion):
	// callers send it no frame kind of a later one. A registration of
	// before protocols were announced has none, which means 1.
	Protocol int       `json:"protocol,omitempty"`
	Routes   []Route   `json:"routes,omitempty"` // public routes it serves
	Started  time.Time `json:"started"`          // process start; Register fills it in when zero
	// Events is what the node publishes and consumes (package events):
	// what `terminator graph` draws and `terminator hospital` finds.
	Events *events.Declaration `json:"events,omitempty"`
	// Admin is the process's admin listener ("host:port"), where its
	// status, console and pprof are: the fleet view lists it, so no one
	// has to find a random port in a log.
	Admin string `json:"admin,omitempty"`
}

// Route is a route a node serves, public or internal, with what its
// service declared about it.
type Route struct {
	Route      string `json:"route"`                // "GET /profiles/{id}" or "profiles.get"
	TimeoutMS  int64  `json:"timeout_ms,omitempty"` // the deadline the service asks for; 0: the caller's default
	Idempotent bool   `json:"idempotent,omitempty"` // safe to retry on another instance
	GhostSafe  bool   `json:"ghost_safe,omitempty"` // may be copied to a ghost version
	// Hedge: callers may send a second copy to another instance after
	// HedgeAfterUS microseconds (0: the route's p95 as they measure it).
	Hedge        bool  `json:"hedge,omitempty"`
	HedgeAfterUS int64 `json:"hedge_after_us,omitempty"`
	Stream       bool  `json:"stream,omitempty"` // answers with a stream of chunks
	// CORS is a public route's cross-origin policy, when it declares one.
	CORS *nanobus.CORS `json:"cors,omitempty"`
}

// RegistrationOf describes n as it registers: its service, incarnation,
// address, version and routes.
func RegistrationOf(n *nanobus.Node) Registration {
	p := n.Peer()
	reg := Registration{Service: p.Service, Node: fmt.Sprintf("%016x", n.ID()), Addr: p.Addr, Version: p.Version, Weight: p.Weight,
		Protocol: p.Protocol}
	for _, r := range p.Routes {
		reg.Routes = append(reg.Routes, Route{Route: r.Name, TimeoutMS: r.Timeout.Milliseconds(), Idempotent: r.Idempotent, GhostSafe: r.GhostSafe,
			Hedge: r.Hedge, HedgeAfterUS: r.HedgeAfter.Microseconds(), Stream: r.Stream, CORS: r.CORS})
	}
	return reg
}

// Peer is the registration as nanobus takes it. Routes that do not parse
// are left out (and reported).
func (r Registration) Peer() (nanobus.Peer, error) {
	p := nanobus.Peer{Service: r.Service, Addr: r.Addr, Weight: r.Weight, Version: r.Version, Protocol: max(r.Protocol, 1)}
	var errs []error
	for _, rt := range r.Routes {
		nr, err := rt.parse()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.Routes = append(p.Routes, nr)
	}
	return p, errors.Join(errs...)
}

func (r Route) parse() (nanobus.Route, error) {
	nr, err := nanobus.ParseRoute(r.Route)
	if err != nil {
		return nr, err
	}
	nr.Timeout = time.Duration(r.TimeoutMS) * time.Millisecond
	nr.Idempotent = r.Idempotent // as declared: the record is the truth
	nr.GhostSafe = r.GhostSafe
	nr.Hedge, nr.HedgeAfter = r.Hedge, time.Duration(r.HedgeAfterUS)*time.Microsecond
	nr.Stream = r.Stream
	nr.CORS = r.CORS
	return nr, nil
}

// Key is the registration's etcd key under prefix.
func (r Registration) Key(prefix string) string {
	return servicesPrefix(prefix) + r.Service + "/" + r.Node
}

// newBackoff is the wait between tries against etcd: from first, growing to
// 2s at most (a node must notice soon that etcd is back), with jitter,
// never giving up.
func newBackoff(first time.Duration) *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(first),
		backoff.WithMaxInterval(2*time.Second), backoff.WithMaxElapsedTime(0))
}

// rootPrefix is prefix with one trailing slash: "/terminator/".
func rootPrefix(prefix string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return strings.TrimSuffix(prefix, "/") + "/"
}

func servicesPrefix(prefix string) string { return rootPrefix(prefix) + "services/" }

// routeKey is where a service's public route is announced: kept without a
// lease, so that callers know the route while no instance runs.
func routeKey(prefix, service, route string) string {
	return rootPrefix(prefix) + "routes/" + service + "/" + url.PathEscape(route)
}

func (r Registration) validate() error {
	switch {
	case r.Service == "" || strings.Contains(r.Service, "/"):
		return fmt.Errorf("registration: bad service name %q", r.Service)
	case r.Node == "" || strings.Contains(r.Node, "/"):
		return fmt.Errorf("registration: bad node %q", r.Node)
	case r.Addr == "":
		return errors.New("registration: no address")
	}
	return nil
}

// RegisterOptions tunes a Registrar.
type RegisterOptions struct {
	Prefix string        // default DefaultPrefix
	TTL    time.Duration // lease TTL, default 5s; whole seconds
	Logger *slog.Logger
}

// Registrar keeps one registration in etcd until Close.
//
// Why not concurrency.Session, which also grants a lease and drains one
// KeepAlive: it ties its Grant, its KeepAlive and the Revoke in Close to one
// context. An unbounded Grant waits for etcd to come back (clientv3 waits
// for a ready connection), leaving readiness no error to report, while a
// deadline on that context would also end the keepalive; and the context
// must outlive shutdown for Close's Revoke to work. Granting here and
// passing the lease in with WithLease would leave Session nothing to do but
// the drain loop in run, so the Registrar does without it.
type Registrar struct {
	cli    *clientv3.Client
	reg    Registration
	key    string
	value  string
	routes []clientv3.Op // puts of the announced public routes
	ttl    int64
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	lease   clientv3.LeaseID
	lastErr error
	renewed int // registrations made, the first included
}

// Register publishes reg and keeps it alive in the background. It returns
// once the first registration succeeded, or with ctx's error. Each public
// route is also announced under routes/, without a lease: callers keep
// knowing the route (and answer 503, not 404) while no instance runs.
func Register(ctx context.Context, cli *clientv3.Client, reg Registration, opt RegisterOptions) (*Registrar, error) {
	if err := reg.validate(); err != nil {
		return nil, err
	}
	if reg.Started.IsZero() {
		reg.Started = time.Now().UTC()
	}
	if opt.TTL <= 0 {
		opt.TTL = 5 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	value, err := json.Marshal(reg)
	if err != nil {
		return nil, err
	}
	var routes []clientv3.Op
	for _, rt := range reg.Routes {
		nr, err := rt.parse()
		if err != nil {
			return nil, fmt.Errorf("registration: %w", err)
		}
		if nr.Public() {
			b, _ := json.Marshal(rt)
			routes = append(routes, clientv3.OpPut(routeKey(opt.Prefix, reg.Service, rt.Route), string(b)))
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Registrar{
		cli: cli, reg: reg, key: reg.Key(opt.Prefix), value: string(value), routes: routes,
		ttl: max(1, int64(opt.TTL/time.Second)), log: opt.Logger.With("key", reg.Key(opt.Prefix)),
		cancel: cancel, done: make(chan struct{}),
	}
	first := make(chan struct{})
	refused := make(chan error, 1)
	go r.run(rctx, first, refused)
	select {
	case <-first:
		return r, nil
	case err := <-refused:
		r.Close()
		return nil, fmt.Errorf("register %s: %w", r.key, err)
	case <-ctx.Done():
		last := r.Registered()
		r.Close()
		return nil, fmt.Errorf("register %s: %w (last error: %v)", r.key, ctx.Err(), last)
	}
}

// run registers, keeps the lease alive, and registers again whenever the
// lease is lost, until Close. Before the first registration, an error
// retrying will not heal (Permanent) goes to refused and ends it.
func (r *Registrar) run(ctx context.Context, first chan<- struct{}, refused chan<- error) {
	defer close(r.done)
	retry := newBackoff(200 * time.Millisecond)
	for {
		ch, err := r.register(ctx)
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		if first != nil && err == nil {
			close(first)
			first = nil
		}
		if err == nil {
			retry.Reset()
			// Drain: clientv3 drops keepalive responses for a full channel,
			// and the channel closing is the only sign that the lease is
			// gone (etcd unreachable for a TTL, or the lease revoked).
			for range ch {
			}
			if ctx.Err() != nil {
				return
			}
			r.mu.Lock()
			r.lastErr = errors.New("lease lost: etcd unreachable for longer than the TTL")
			r.lease = 0
			r.mu.Unlock()
			r.log.Warn("registration lease lost; registering again")
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if first != nil && Permanent(err) {
			r.log.Warn("etcd refuses the registration: not retrying", "endpoints", strings.Join(r.cli.Endpoints(), ","), "err", err)
			refused <- err
			return
		}
		wait := retry.NextBackOff()
		r.log.Warn("registration failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// register grants a lease, puts the key under it and starts the keepalive.
func (r *Registrar) register(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	octx, cancel := context.WithTimeout(ctx, time.Duration(r.ttl)*time.Second)
	defer cancel()
	lease, err := r.cli.Grant(octx, r.ttl)
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	ops := append([]clientv3.Op{clientv3.OpPut(r.key, r.value, clientv3.WithLease(lease.ID))}, r.routes...)
	if _, err := r.cli.Txn(octx).Then(ops...).Commit(); err != nil {
		return nil, fmt.Errorf("put %s: %w", r.key, err)
	}
	ch, err := r.cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return nil, fmt.Errorf("keepalive: %w", err)
	}
	r.mu.Lock()
	r.lease = lease.ID
	r.renewed++
	r.mu.Unlock()
	r.log.Info("registered", "lease", fmt.Sprintf("%x", lease.ID), "ttl_s", r.ttl)
	return ch, nil
}

// Registered is nil while the key is in etcd under a live lease, and the
// reason otherwise: what a readiness check reports.
func (r *Registrar) Registered() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease != 0 {
		return nil
	}
	if r.lastErr != nil {
		return r.lastErr
	}
	return errors.New("not registered: no answer from etcd yet")
}

// Registrations counts how many times the key was put: 1, plus one per
// re-registration after a lost lease.
func (r *Registrar) Registrations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.renewed
}

// Key is the etcd key this registrar keeps.
func (r *Registrar) Key() string { return r.key }

// Close stops the keepalive and revokes the lease: the key disappears at
// once, and watchers stop sending to this node.
func (r *Registrar) Close() error {
	r.cancel()
	<-r.done
	r.mu.Lock()
	lease := r.lease
	r.lease = 0
	r.mu.Unlock()
	if lease == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("revoke lease of %s: %w", r.key, err)
	}
	return nil
}
