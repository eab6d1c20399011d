package terminator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/nanobus"
)

// Server is the terminator: the public fasthttp front and its admin
// listener. Requests go to the bus through node.
type Server struct {
	cfg        Config
	node       *nanobus.Node
	router     *Router
	log        *slog.Logger
	http       *fasthttp.Server
	admin      *http.Server
	metrics    *metrics
	retryAfter []byte
	idPrefix   []byte

	ln, adminLn net.Listener
	ready       atomic.Bool
	readyCheck  atomic.Pointer[func() error]
	waiting     atomic.Int64
	idSeq       atomic.Uint64
	counts      httpCounts
	badLog      rateLog
	served      chan error
	drainOnce   sync.Once
	drainErr    error
}

// httpCounts counts what never reaches a route.
type httpCounts struct {
	overloaded, noRoute, headerTooLarge, bodyTooLarge, malformed, timeouts atomic.Uint64
}

// New returns a server that sends requests through node. Start it with Start.
func New(cfg Config, node *nanobus.Node, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	s := &Server{
		cfg:        cfg,
		node:       node,
		router:     NewRouter(log),
		log:        log,
		retryAfter: []byte(strconv.Itoa(max(1, int(cfg.RetryAfter/time.Second)))),
		idPrefix:   []byte(hex.EncodeToString(idb[:]) + "-"),
		served:     make(chan error, 1),
	}
	m, err := newMetrics(s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.http = &fasthttp.Server{
		Handler:               s.handle,
		ErrorHandler:          s.httpError,
		NoDefaultServerHeader: true,
		ReadBufferSize:        cfg.MaxHeaderBytes,
		MaxRequestBodySize:    cfg.MaxBodyBytes,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		Concurrency:           cfg.MaxConns,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{log},
	}
	s.admin = &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Router is the routing table; discovery feeds it with SetRoutes.
func (s *Server) Router() *Router { return s.router }

// SetRoutes replaces the routing table.
func (s *Server) SetRoutes(routes []Route) { s.router.Set(routes, s.cfg.Timeout) }

// SetReadyCheck adds a condition to readiness, such as "registered in etcd".
func (s *Server) SetReadyCheck(f func() error) { s.readyCheck.Store(&f) }

// Start binds the public and admin listeners and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin listen %s: %w", s.cfg.AdminListen, err)
	}
	s.ln, s.adminLn = ln, adminLn
	go func() { s.served <- s.http.Serve(ln) }()
	go func() { _ = s.admin.Serve(adminLn) }()
	s.metrics.start()
	s.ready.Store(true)
	s.log.Info("terminator listening", "http", ln.Addr().String(), "admin", adminLn.Addr().String())
	return nil
}

// Addr is the public listener's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Ready reports whether the server should get traffic, and why not.
func (s *Server) Ready() error {
	if !s.ready.Load() {
		return errors.New("draining")
	}
	if f := s.readyCheck.Load(); f != nil {
		return (*f)()
	}
	return nil
}

// Drain is the graceful half of shutdown: readiness goes false, the public
// listener stops accepting, and in-flight requests finish until ctx ends.
// The admin listener stays up until Close.
// Calling it again returns the first call's result.
func (s *Server) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() {
		s.ready.Store(false)
		s.drainErr = s.http.ShutdownWithContext(ctx)
		if s.ln != nil {
			<-s.served
		}
	})
	return s.drainErr
}

// Close stops the admin listener and the metrics.
func (s *Server) Close() error {
	s.metrics.stop()
	return s.admin.Close()
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "from", "fasthttp")
}

// rateLog logs at most once a second, so bad input cannot flood the log.
type rateLog struct{ next atomic.Int64 }

func (r *rateLog) warn(log *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	if next := r.next.Load(); now >= next && r.next.CompareAndSwap(next, now+int64(time.Second)) {
		log.Warn(msg, args...)
	}
}
