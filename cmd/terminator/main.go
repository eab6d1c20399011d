// Command terminator runs the gateway and its services: all in one process
// (the default for development), or one part per process against an
// external etcd cluster.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/services/echo"
	"github.com/terminator-gw/terminator/services/flirts"
	"github.com/terminator-gw/terminator/services/profiles"
	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/visits"
	"github.com/terminator-gw/terminator/services/web"
	"github.com/terminator-gw/terminator/terminator"
)

const usage = `usage: terminator <command> [flags]

commands:
  all       everything in one process: etcd (embedded unless -etcd-endpoints),
            the terminator and every service, over real loopback bus sockets
  front     the terminator alone
  web       the aggregator alone (owns the public /profiles routes)
  profiles  the profile service alone
  visits    the visit service alone
  flirts    the flirt service alone
  echo      the echo service alone
  seed      load sample profiles, visits and flirts through a running front

Every command but all and seed needs -etcd-endpoints.

Run "terminator <command> -h" for the command's flags.
`

// seeding is true while "all -seed" loads sample data: the front is not
// ready until it is done, so nobody measures or tests a half-seeded store.
var seeding atomic.Bool

// options are the flags every command shares.
type options struct {
	busListen    string
	busAdvertise string
	busCA        string // bus TLS: the CA that signs every member's certificate
	busCert      string
	busKey       string
	dataDir      string
	etcdClient   string // embedded etcd's client URL
	etcdPeer     string // embedded etcd's peer URL
	seed         int    // sample profiles to load on a first start
	ttl          time.Duration
	etcd         discovery.ClientConfig
	front        terminator.Config
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd := os.Args[1]
	var o options
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	fs.StringVar(&o.busListen, "bus-listen", envOr("BUS_LISTEN", "tcp://127.0.0.1:0"), "bus address to listen on (env BUS_LISTEN)")
	fs.StringVar(&o.busAdvertise, "bus-advertise", os.Getenv("BUS_ADVERTISE"), "bus address peers dial, when listening on 0.0.0.0 (env BUS_ADVERTISE)")
	fs.StringVar(&o.busCA, "bus-ca", os.Getenv("BUS_CA"), "bus TLS: CA file that signs every bus member's certificate; with -bus-cert and -bus-key, use tls+tcp:// addresses (env BUS_CA)")
	fs.StringVar(&o.busCert, "bus-cert", os.Getenv("BUS_CERT"), "bus TLS: this process's certificate, used as server and client (env BUS_CERT)")
	fs.StringVar(&o.busKey, "bus-key", os.Getenv("BUS_KEY"), "bus TLS: its key (env BUS_KEY)")
	fs.DurationVar(&o.ttl, "ttl", 5*time.Second, "etcd lease TTL: how long a dead process stays listed")
	o.etcd.RegisterFlags(fs)
	dataFlag := func() {
		fs.StringVar(&o.dataDir, "data", envOr("TERMINATOR_DATA", "data"), "data directory: the services' stores, and embedded etcd's (env TERMINATOR_DATA)")
	}
	switch cmd {
	case "all":
		dataFlag()
		fs.StringVar(&o.etcdClient, "embedded-etcd-client", "http://127.0.0.1:23790", "embedded etcd's client URL")
		fs.StringVar(&o.etcdPeer, "embedded-etcd-peer", "http://127.0.0.1:23800", "embedded etcd's peer URL")
		fs.IntVar(&o.seed, "seed", 0, "on a first start (no data yet), load this many sample profiles")
		o.front.RegisterFlags(fs)
	case "front":
		o.front.RegisterFlags(fs)
	case "seed":
		os.Exit(seedMain(os.Args[2:]))
	default:
		if _, ok := services[cmd]; !ok {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		if cmd != echo.Service && cmd != web.Service {
			dataFlag()
		}
	}
	_ = fs.Parse(os.Args[2:])
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cmd, o, log); err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
}

// run starts the command's parts, waits for a signal, and stops them in
// order: the front drains first, services deregister and drain, etcd last.
func run(ctx context.Context, cmd string, o options, log *slog.Logger) error {
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	seeding.Store(cmd == "all" && o.seed > 0)
	if len(o.etcd.Endpoints) == 0 {
		if cmd != "all" {
			return errors.New("-etcd-endpoints is required (only \"all\" embeds etcd)")
		}
		log.Info("starting embedded etcd", "client", o.etcdClient, "data", filepath.Join(o.dataDir, "etcd"))
		e, err := discovery.StartEmbedded(discovery.EmbeddedConfig{
			Dir: filepath.Join(o.dataDir, "etcd"), ClientURL: o.etcdClient, PeerURL: o.etcdPeer,
			LogLevel: "fatal", // etcd logs its own orderly shutdown as errors
		})
		if err != nil {
			return err
		}
		closers = append(closers, e.Close)
		o.etcd.Endpoints = e.Endpoints()
		log.Info("embedded etcd ready", "endpoints", e.Endpoints())
	}
	cli, err := o.etcd.Client()
	if err != nil {
		return err
	}
	closers = append(closers, func() { cli.Close() })

	for _, name := range serviceOrder {
		if cmd != "all" && cmd != name {
			continue
		}
		stopSvc, err := startService(ctx, cli, o, name, log)
		if err != nil {
			return err
		}
		closers = append(closers, stopSvc)
	}
	if cmd == "all" || cmd == "front" {
		stopFront, err := startFront(ctx, cli, o, log)
		if err != nil {
			return err
		}
		closers = append(closers, stopFront)
		if cmd == "all" {
			if o.seed > 0 {
				// Sample data is a convenience: failing to load it is
				// worth a warning, not an exit.
				if err := seedIfEmpty(ctx, o, log); err != nil {
					log.Warn("seeding sample data failed", "err", err)
				}
				seeding.Store(false)
			}
			printWelcome(o.front.Listen, o.front.AdminListen)
		}
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

func newNode(service string, o options, log *slog.Logger) (*nanobus.Node, error) {
	cfg := nanobus.Config{Service: service, Listen: o.busListen, Advertise: o.busAdvertise, Logger: log}
	if o.busCA != "" || o.busCert != "" || o.busKey != "" {
		t, err := busTLS(o)
		if err != nil {
			return nil, err
		}
		cfg.TLS = t
	}
	return nanobus.NewNode(cfg)
}

// busTLS is the bus's mutual TLS: every member presents a certificate
// signed by the bus CA, and accepts only peers that do.
func busTLS(o options) (*tls.Config, error) {
	if o.busCA == "" || o.busCert == "" || o.busKey == "" {
		return nil, errors.New("bus TLS needs -bus-ca, -bus-cert and -bus-key together")
	}
	cert, err := tls.LoadX509KeyPair(o.busCert, o.busKey)
	if err != nil {
		return nil, fmt.Errorf("bus certificate: %w", err)
	}
	pem, err := os.ReadFile(o.busCA)
	if err != nil {
		return nil, fmt.Errorf("bus CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("bus CA %s: no certificates", o.busCA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool, MinVersion: tls.VersionTLS13}, nil
}

// services are the services this binary runs; a stateful one opens its
// store under the data directory and returns it to be closed last.
var services = map[string]func(n *nanobus.Node, dataDir string) (io.Closer, error){
	echo.Service:     func(n *nanobus.Node, _ string) (io.Closer, error) { echo.Register(n); return nil, nil },
	web.Service:      func(n *nanobus.Node, _ string) (io.Closer, error) { web.Register(n); return nil, nil },
	profiles.Service: withStore(profiles.Register),
	visits.Service:   withStore(visits.Register),
	flirts.Service:   withStore(flirts.Register),
}

// serviceOrder starts the domain services before the aggregator that calls them.
var serviceOrder = []string{profiles.Service, visits.Service, flirts.Service, web.Service, echo.Service}

func withStore(register func(*nanobus.Node, store.Store)) func(*nanobus.Node, string) (io.Closer, error) {
	return func(n *nanobus.Node, dir string) (io.Closer, error) {
		s, err := store.OpenPebble(filepath.Join(dir, n.Service()))
		if err != nil {
			return nil, err
		}
		register(n, s)
		return s, nil
	}
}

// startService runs one service on its own bus node, with its peers from
// etcd (the aggregator calls the others), and registers it; the returned
// func deregisters, lets watchers see it, drains, and closes its store.
func startService(ctx context.Context, cli *clientv3.Client, o options, service string, log *slog.Logger) (func(), error) {
	node, err := newNode(service, o, log)
	if err != nil {
		return nil, err
	}
	st, err := services[service](node, o.dataDir)
	if err != nil {
		node.Close()
		return nil, err
	}
	closeAll := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		node.Shutdown(dctx)
		if st != nil {
			st.Close()
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The front logs membership changes; a service's watcher would only
	// repeat them, once per service in a one-process run.
	quiet := slog.New(levelFilter{log.Handler(), slog.LevelWarn})
	w, err := discovery.Watch(wctx, cli, discovery.WatchOptions{Peers: node, Logger: quiet})
	if err != nil {
		closeAll()
		return nil, err
	}
	reg, err := announce(ctx, cli, node, o.ttl, log)
	if err != nil {
		w.Close()
		closeAll()
		return nil, err
	}
	log.Info("service up", "service", service, "bus", node.Addr())
	return func() {
		reg.Close()
		time.Sleep(200 * time.Millisecond) // let watchers drop us before we stop answering
		w.Close()
		closeAll()
	}, nil
}

// announce registers node in etcd with the public routes it serves.
func announce(ctx context.Context, cli *clientv3.Client, node *nanobus.Node, ttl time.Duration, log *slog.Logger) (*discovery.Registrar, error) {
	reg := discovery.Registration{Service: node.Service(), Node: fmt.Sprintf("%016x", node.ID()), Addr: node.Addr(), Weight: 1}
	for _, r := range node.Routes() {
		if _, err := terminator.ParseRoute(r, node.Service(), 0); err == nil {
			reg.Routes = append(reg.Routes, discovery.Route{Route: r})
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return discovery.Register(rctx, cli, reg, discovery.RegisterOptions{TTL: ttl, Logger: log})
}

// startFront runs the terminator: routes and peers follow etcd.
func startFront(ctx context.Context, cli *clientv3.Client, o options, log *slog.Logger) (func(), error) {
	node, err := newNode("terminator", o, log)
	if err != nil {
		return nil, err
	}
	srv, err := terminator.New(o.front, node, log)
	if err != nil {
		node.Close()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := discovery.Watch(wctx, cli, discovery.WatchOptions{Peers: node, Logger: log})
	if err != nil {
		node.Close()
		return nil, err
	}
	follow := make(chan struct{})
	go func() {
		defer close(follow)
		for {
			srv.SetRoutes(routesOf(w.Snapshot(), log))
			select {
			case <-ctx.Done():
				return
			case <-w.Changes():
			}
		}
	}()
	reg, err := announce(ctx, cli, node, o.ttl, log)
	if err != nil {
		w.Close()
		node.Close()
		return nil, err
	}
	srv.SetReadyCheck(func() error {
		if seeding.Load() {
			return errors.New("loading sample data")
		}
		if w.Stats().Stale {
			return errors.New("etcd unreachable: routes may be stale")
		}
		return reg.Registered()
	})
	if err := srv.Start(); err != nil {
		reg.Close()
		w.Close()
		node.Close()
		return nil, err
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.Background(), o.front.DrainTimeout)
		defer cancel()
		if err := srv.Drain(dctx); err != nil {
			log.Warn("drain incomplete", "err", err)
		}
		reg.Close()
		w.Close()
		<-follow
		node.Close()
		srv.Close()
	}, nil
}

// routesOf turns registrations into the terminator's routing table.
func routesOf(regs []discovery.Registration, log *slog.Logger) []terminator.Route {
	var out []terminator.Route
	seen := map[string]bool{}
	for _, reg := range regs {
		for _, r := range reg.Routes {
			rt, err := terminator.ParseRoute(r.Route, reg.Service, time.Duration(r.TimeoutMS)*time.Millisecond)
			if err != nil {
				log.Warn("ignoring a bad announced route", "service", reg.Service, "err", err)
				continue
			}
			if k := rt.Key() + " " + rt.Service; !seen[k] {
				seen[k] = true
				out = append(out, rt)
			}
		}
	}
	return out
}

func printWelcome(listen, admin string) {
	host := listen
	if strings.HasPrefix(host, ":") {
		host = "localhost" + host
	}
	fmt.Printf(`
terminator is up.
  public HTTP  http://%[1]s
  admin        http://%[2]s/   (status page; /status.json, /readyz, /debug/pprof/)

try:
  curl -s http://%[1]s/profiles/1
  curl -s -X PUT --data '{"name":"Ann","age":31,"city":"Lyon","bio":"hiker"}' http://%[1]s/profiles/ann
  curl -s -X POST --data '{"visitor":"1"}' http://%[1]s/profiles/ann/visits
  curl -s -X POST --data '{"from":"1","message":"hi Ann"}' http://%[1]s/profiles/ann/flirts
  curl -s http://%[1]s/profiles/ann
  curl -s http://%[1]s/profiles/ann/visitors
  curl -s http://%[1]s/echo
  curl -s http://%[2]s/status.json

Ctrl-C stops it cleanly.
`, host, admin)
}

// levelFilter drops records below min.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
