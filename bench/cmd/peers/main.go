// Command peers runs the systems the benchmark harness compares the
// terminator with, each as a process of its own so that the harness can pin
// it to a CPU and read its CPU time:
//
//	peers hello   -listen ADDR                  fasthttp hello world
//	peers goproxy -listen ADDR -upstream ADDR   net/http/httputil.ReverseProxy
//	peers http    -roles R -data DIR -web ADDR -profiles ADDR -notifications ADDR
//	              the page over HTTP/1.1 keep-alive between the services
//	peers nats    -roles R -data DIR -web ADDR -nats URL
//	              the page over NATS request/reply (services on nats.go micro)
//	peers etcd    -dir DIR -client URL -peer URL
//	              an etcd for the terminator's one-process-per-role layout
//
// -roles is a comma-separated subset of web,profiles,notifications: the
// harness runs one process per role, or all roles in one. Every command
// stops cleanly on SIGTERM or SIGINT. See bench/peers for what the roles do.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/bench/peers"
	"github.com/terminator-gw/terminator/discovery/embedded"
)

const usage = `usage: peers <hello|goproxy|http|nats|etcd> [flags]; "peers <command> -h" lists its flags`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "peers %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	listen := fs.String("listen", envOr("PEERS_LISTEN", "127.0.0.1:8090"), "hello, goproxy: address to serve on (env PEERS_LISTEN)")
	upstream := fs.String("upstream", os.Getenv("PEERS_UPSTREAM"), "goproxy: host:port to forward to (env PEERS_UPSTREAM)")
	roles := fs.String("roles", envOr("PEERS_ROLES", "web,profiles,notifications"), "http, nats: the roles this process plays (env PEERS_ROLES)")
	data := fs.String("data", envOr("PEERS_DATA", "data"), "http, nats: data directory holding profiles/ and notifications/ (env PEERS_DATA)")
	addrs := map[string]*string{}
	for _, r := range append([]string{peers.RoleWeb}, peers.DomainRoles...) {
		env := "PEERS_" + strings.ToUpper(r)
		addrs[r] = fs.String(r, os.Getenv(env), "http: the "+r+" role's address (the web role's also for nats) (env "+env+")")
	}
	natsURL := fs.String("nats", envOr("PEERS_NATS", nats.DefaultURL), "nats: the nats-server to use (env PEERS_NATS)")
	timeout := fs.Duration("timeout", peers.DefaultTimeout, "http, nats: the page's deadline")
	dir := fs.String("dir", envOr("PEERS_ETCD_DIR", "etcd-data"), "etcd: data directory (env PEERS_ETCD_DIR)")
	client := fs.String("client", envOr("PEERS_ETCD_CLIENT", "http://127.0.0.1:2379"), "etcd: client URL (env PEERS_ETCD_CLIENT)")
	peer := fs.String("peer", envOr("PEERS_ETCD_PEER", "http://127.0.0.1:2380"), "etcd: peer URL (env PEERS_ETCD_PEER)")
	_ = fs.Parse(args)

	switch cmd {
	case "hello":
		return serveFast(ctx, *listen, peers.Hello)
	case "goproxy":
		if *upstream == "" {
			return errors.New("-upstream is required")
		}
		return serveGoProxy(ctx, *listen, *upstream)
	case "http", "nats":
		want, err := parseRoles(*roles)
		if err != nil {
			return err
		}
		at := map[string]string{}
		for r, p := range addrs {
			at[r] = *p
		}
		if cmd == "http" {
			return servePageHTTP(ctx, want, *data, at, *timeout)
		}
		return servePageNATS(ctx, want, *data, at[peers.RoleWeb], *natsURL, *timeout)
	case "etcd":
		e, err := embedded.Start(embedded.Config{Dir: *dir, ClientURL: *client, PeerURL: *peer, LogLevel: "fatal"})
		if err != nil {
			return err
		}
		<-ctx.Done()
		e.Close()
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

func parseRoles(s string) ([]string, error) {
	var out []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r != peers.RoleWeb && !slices.Contains(peers.DomainRoles, r) {
			return nil, fmt.Errorf("-roles: unknown role %q (want web, profiles, notifications)", r)
		}
		out = append(out, r)
	}
	return out, nil
}

// stack closes what a command opened, in reverse order.
type stack []func()

func (s stack) close() {
	for i := len(s) - 1; i >= 0; i-- {
		s[i]()
	}
}

// serveFast serves h on addr until ctx ends.
func serveFast(ctx context.Context, addr string, h fasthttp.RequestHandler) error {
	srv, errc, err := startFast(addr, h)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	return shutdown(srv.ShutdownWithContext)
}

func startFast(addr string, h fasthttp.RequestHandler) (*fasthttp.Server, chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := peers.NewServer(h)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	return srv, errc, nil
}

// shutdown gives a server 5 seconds to finish what it is serving.
func shutdown(stop func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return stop(ctx)
}

func serveGoProxy(ctx context.Context, addr, upstream string) error {
	srv, err := peers.ReverseProxy(upstream)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return shutdown(srv.Shutdown)
}

// openDomains opens the stores of the domain roles among roles.
func openDomains(roles []string, data string, closers *stack) ([]*peers.Domain, error) {
	var out []*peers.Domain
	for _, r := range roles {
		if r == peers.RoleWeb {
			continue
		}
		d, err := peers.OpenDomain(r, data)
		if err != nil {
			return nil, err
		}
		*closers = append(*closers, func() { d.Close() })
		out = append(out, d)
	}
	return out, nil
}

func servePageHTTP(ctx context.Context, roles []string, data string, addrs map[string]string, timeout time.Duration) error {
	var closers stack
	defer closers.close()
	domains, err := openDomains(roles, data, &closers)
	if err != nil {
		return err
	}
	errc := make(chan error, len(roles))
	serve := func(addr string, h fasthttp.RequestHandler) error {
		if addr == "" {
			return errors.New("no address to serve on")
		}
		srv, e, err := startFast(addr, h)
		if err != nil {
			return err
		}
		go func() { errc <- <-e }()
		closers = append(closers, func() { shutdown(srv.ShutdownWithContext) })
		return nil
	}
	for _, d := range domains {
		if err := serve(addrs[d.Role()], peers.HTTPService(d)); err != nil {
			return fmt.Errorf("%s: %w", d.Role(), err)
		}
	}
	if slices.Contains(roles, peers.RoleWeb) {
		call, err := peers.HTTPCaller(addrs, 1024)
		if err != nil {
			return err
		}
		if err := serve(addrs[peers.RoleWeb], peers.NewAggregator(call, timeout).Handle); err != nil {
			return fmt.Errorf("web: %w", err)
		}
	}
	return wait(ctx, errc)
}

func servePageNATS(ctx context.Context, roles []string, data, webAddr, natsURL string, timeout time.Duration) error {
	var closers stack
	defer closers.close()
	domains, err := openDomains(roles, data, &closers)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(natsURL, nats.Name("peers "+strings.Join(roles, ",")), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect %s: %w", natsURL, err)
	}
	closers = append(closers, func() { nc.Drain() })
	for _, d := range domains {
		svc, err := peers.ServeNATS(nc, d)
		if err != nil {
			return err
		}
		closers = append(closers, func() { svc.Stop() })
	}
	errc := make(chan error, 1)
	if slices.Contains(roles, peers.RoleWeb) {
		if webAddr == "" {
			return errors.New("-web is required with the web role")
		}
		srv, e, err := startFast(webAddr, peers.NewAggregator(peers.NATSCaller(nc), timeout).Handle)
		if err != nil {
			return err
		}
		go func() { errc <- <-e }()
		closers = append(closers, func() { shutdown(srv.ShutdownWithContext) })
	}
	// Make sure the subscriptions reached the server before callers come.
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("flush to %s: %w", natsURL, err)
	}
	return wait(ctx, errc)
}

// wait returns at the signal, or with the first server that failed.
func wait(ctx context.Context, errc chan error) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("server stopped: %w", err)
	}
}
