package role

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AdminConfig configures a process's admin listener.
type AdminConfig struct {
	Listen string // e.g. "127.0.0.1:8081"
	// Token guards everything but /healthz and /readyz: a request must
	// carry "Authorization: Bearer <token>", or basic auth with the token
	// as the password. Required when Listen is not a loopback address.
	Token     string
	TokenFile string // read Token from this file (trailing newline dropped)
	// MetricsToken, when set, is also accepted on /metrics (and nowhere
	// else), so that Prometheus need not hold the admin token.
	MetricsToken     string
	MetricsTokenFile string // read MetricsToken from this file
	// CertFile and KeyFile, when given, serve the admin listener over TLS.
	CertFile, KeyFile string
	// MaxConns bounds the connections open at once (default 64): /healthz
	// needs no token, and the admin shares the process's file descriptors
	// with the front and the bus. Connections over it are closed at once
	// and counted.
	MaxConns int
	// IdleTimeout closes a keep-alive connection with no request for this
	// long (default 15s); ReadTimeout bounds reading one request (default
	// 10s), WriteTimeout writing one response (default 90s: a pprof
	// profile of 30s and more has to fit in it).
	IdleTimeout, ReadTimeout, WriteTimeout time.Duration
}

func (c *AdminConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "admin", c.Listen, "admin HTTP address: /healthz, /readyz, a live console at /, /status.json, /metrics (Prometheus), /debug/pprof/")
	// Not StringVar: flag prints a non-empty default in --help.
	fs.Func("admin-token", "token for the admin listener's status pages and pprof (prefer the environment or -admin-token-file: flags show in ps)",
		func(s string) error { c.Token = s; return nil })
	fs.StringVar(&c.TokenFile, "admin-token-file", c.TokenFile, "file holding the admin token")
	fs.Func("metrics-token", "a read-only token accepted on /metrics only, besides the admin token, for Prometheus (prefer the environment or -metrics-token-file)",
		func(s string) error { c.MetricsToken = s; return nil })
	fs.StringVar(&c.MetricsTokenFile, "metrics-token-file", c.MetricsTokenFile, "file holding the /metrics token")
	fs.StringVar(&c.CertFile, "admin-cert", c.CertFile, "admin TLS certificate (with -admin-key: serve the admin listener over https)")
	fs.StringVar(&c.KeyFile, "admin-key", c.KeyFile, "admin TLS key")
	c.setDefaults()
	fs.IntVar(&c.MaxConns, "admin-max-conns", c.MaxConns, "admin connections open at once; more are closed at once and counted (status.json: admin.refused)")
	fs.DurationVar(&c.IdleTimeout, "admin-idle-timeout", c.IdleTimeout, "an admin keep-alive connection with no request is closed after this")
	fs.DurationVar(&c.ReadTimeout, "admin-read-timeout", c.ReadTimeout, "time to read one admin request")
	fs.DurationVar(&c.WriteTimeout, "admin-write-timeout", c.WriteTimeout, "time to write one admin response (a pprof profile's seconds must fit in it)")
}

// Admin is a process's admin listener: liveness and readiness for probes,
// and, behind the token, status and pprof for people.
type Admin struct {
	cfg   AdminConfig
	log   *slog.Logger
	token []byte
	// scrapeToken opens /metrics only; reg is what /metrics shows.
	scrapeToken []byte
	reg         *prometheus.Registry
	srv         *http.Server
	ln          net.Listener

	conns   atomic.Int64  // open now
	refused atomic.Uint64 // closed at once, over MaxConns
	logged  atomic.Int64  // unix nanos of the last refusal logged

	mu       sync.Mutex
	checks   []check
	sections []Section
	console  *console
}

type check struct {
	name string
	fn   func(context.Context) error
}

// NewAdmin checks cfg and returns an admin listener; Start binds it.
func NewAdmin(cfg AdminConfig, log *slog.Logger) (*Admin, error) {
	cfg.setDefaults()
	a := &Admin{cfg: cfg, log: log, console: newConsole()}
	token, err := tokenOf(cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	scrape, err := tokenOf(cfg.MetricsToken, cfg.MetricsTokenFile)
	if err != nil {
		return nil, fmt.Errorf("metrics token: %w", err)
	}
	if token == "" && !loopback(cfg.Listen) {
		return nil, fmt.Errorf("admin listener %s is not on loopback: give it a token (-admin-token-file, or %s)",
			cfg.Listen, EnvName("admin-token"))
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("admin TLS: give both -admin-cert and -admin-key, or neither")
	}
	a.token, a.scrapeToken = []byte(token), []byte(scrape)
	a.reg = a.newRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", a.metricsHandler())
	private := http.NewServeMux()
	private.HandleFunc("/debug/pprof/", pprof.Index)
	private.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	private.HandleFunc("/debug/pprof/profile", pprof.Profile)
	private.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	private.HandleFunc("/debug/pprof/trace", pprof.Trace)
	private.HandleFunc("GET /status.json", a.statusJSON)
	private.HandleFunc("GET /{$}", a.consolePage)
	private.HandleFunc("GET /status/{$}", a.statusPage)
	private.HandleFunc("GET /status/series.json", a.seriesJSON)
	private.HandleFunc("GET /status/console.json", a.consoleJSON)
	private.HandleFunc("POST /actions/ramp/stop", a.stopRamp)
	mux.Handle("/", a.authorized(private))
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: min(5*time.Second, cfg.ReadTimeout),
		ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	a.sections = append(a.sections, Section{Name: "admin", Status: func() any { return a.Stats() }})
	return a, nil
}

func (c *AdminConfig) setDefaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 64
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 15 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 90 * time.Second
	}
}

// Stats is the admin listener's connection numbers.
func (a *Admin) Stats() AdminStats {
	return AdminStats{Conns: a.conns.Load(), MaxConns: a.cfg.MaxConns, Refused: a.refused.Load()}
}

// loopback reports whether addr ("host:port") listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *Admin) authorized(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.token) > 0 {
			if subtle.ConstantTimeCompare([]byte(credential(r)), a.token) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="terminator admin"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// credential is the token r carries: "Authorization: Bearer <token>", or
// basic auth with the token as the password.
func credential(r *http.Request) string {
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return bearer
	}
	if _, pw, ok := r.BasicAuth(); ok {
		return pw
	}
	return ""
}

// tokenOf is token, or the content of file when given (trailing newline
// dropped).
func tokenOf(token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Check adds a readiness condition: /readyz answers 503 while any fails.
func (a *Admin) Check(name string, fn func(context.Context) error) {
	a.mu.Lock()
	a.checks = append(a.checks, check{name, fn})
	a.mu.Unlock()
}

// Section adds a part to the status page and /status.json.
func (a *Admin) Section(s Section) {
	a.mu.Lock()
	a.sections = append(a.sections, s)
	a.mu.Unlock()
}

// Ready runs the readiness checks (a second at most) and reports the
// failures, each named.
func (a *Admin) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	a.mu.Lock()
	checks := append([]check(nil), a.checks...)
	a.mu.Unlock()
	var errs []error
	for _, c := range checks {
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// Start binds the listener and serves in the background.
func (a *Admin) Start() error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", a.cfg.Listen, err)
	}
	// Under TLS, so that a refused connection costs no handshake.
	ln = &capListener{Listener: ln, a: a}
	if a.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.CertFile, a.cfg.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin TLS: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	a.ln = ln
	go func() { _ = a.srv.Serve(ln) }()
	go a.console.run()
	a.log.Info("admin listening", "addr", ln.Addr().String(), "tls", a.cfg.CertFile != "", "token", len(a.token) > 0,
		"max_conns", a.cfg.MaxConns, "idle_timeout", a.cfg.IdleTimeout)
	return nil
}

// capListener closes the connections accepted over the admin's MaxConns
// at once, counting them. Not netutil.LimitListener: it stops accepting
// while full, and the connections wait in the kernel's backlog, unanswered
// and uncounted, while whoever fills the cap holds it.
type capListener struct {
	net.Listener
	a *Admin
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := l.a
		if a.conns.Add(1) <= int64(a.cfg.MaxConns) {
			return &countedConn{Conn: c, open: &a.conns}, nil
		}
		a.conns.Add(-1)
		c.Close()
		n := a.refused.Add(1)
		// Logged at most every 10s: whoever fills the cap could fill the
		// log too.
		now, last := time.Now().UnixNano(), a.logged.Load()
		if now-last >= int64(10*time.Second) && a.logged.CompareAndSwap(last, now) {
			a.log.Warn("admin connection refused: over the cap (-admin-max-conns)",
				"remote", c.RemoteAddr().String(), "max_conns", a.cfg.MaxConns, "refused", n)
		}
	}
}

// countedConn gives its slot back when closed, once.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// Addr is the listener's address.
func (a *Admin) Addr() string { return a.ln.Addr().String() }

// Close stops the listener.
func (a *Admin) Close() error {
	if a.ln != nil {
		a.console.close()
	}
	return a.srv.Close()
}

// AdminStats is the admin listener's own numbers, under "admin" in
// /status.json.
type AdminStats struct {
	Conns    int64  `json:"conns"`     // open now
	MaxConns int    `json:"max_conns"` // the cap
	Refused  uint64 `json:"refused"`   // connections closed at once for being over the cap
}
