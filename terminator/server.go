package terminator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/limit"
)

// Server is the terminator: the public fasthttp front. Requests go to the
// bus through node. Its numbers (Status) and readiness (Ready) are for the
// process's admin listener to show.
type Server struct {
	cfg        Config
	node       *nanobus.Node
	router     *Router
	log        *slog.Logger
	tracer     trace.Tracer // nil: no spans (SetTracerProvider)
	http       *fasthttp.Server
	metrics    *metrics
	retryAfter []byte
	idPrefix   []byte

	ln        net.Listener
	unix      bool                 // ln is a unix socket: peers have no address (see peer)
	edge      atomic.Pointer[edge] // feature flags and experiments, decided per request
	ready     atomic.Bool
	limiter   *limit.Limiter // requests waiting for replies
	watch     *watcher       // the requests parked on the bus, and whether their clients are still there
	idSeq     atomic.Uint64
	counts    httpCounts
	bodyBytes atomic.Int64 // request body bytes reserved now, within Config.BodyBudget
	conns     atomic.Int64 // open client connections, within Config.MaxConns
	badLog    rate.Sometimes
	accessLog accessLog
	served    chan error
	drainOnce sync.Once
	drainErr  error
}

// httpCounts counts what never reaches a route.
type httpCounts struct {
	overloaded, noRoute, headerTooLarge, bodyTooLarge, malformed, timeouts atomic.Uint64
	bodyBudget                                                             atomic.Uint64 // bodies refused for the memory budget
	connsRefused                                                           atomic.Uint64 // connections over -max-conns
	badPath                                                                atomic.Uint64 // encoded slashes, dot or empty segments
	badMethod                                                              atomic.Uint64 // 405: a routed path, another method
	preflights                                                             atomic.Uint64 // OPTIONS answered at the front (CORS preflights)
}

// The front's adaptive limit on requests waiting for replies starts at
// initialLimit and stays at minLimit or more (and at Config.MaxWaiting or
// less). The floor is what a small box needs in flight to reach its peak:
// below it, bus messages stop sharing writes, each costs more, and a limit
// driven by latency would chase itself down.
const (
	initialLimit = 256
	minLimit     = 64
)

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
		badLog:     rate.Sometimes{Interval: time.Second},
		limiter:    limit.New(cfg.MaxWaiting, cfg.MaxWaiting, cfg.MaxWaiting),
		watch:      newWatcher(watchTick),
	}
	s.accessLog.sampled.Max = int64(cfg.AccessLogRate)
	if !cfg.FixedLimit {
		s.limiter = limit.New(initialLimit, minLimit, cfg.MaxWaiting)
	}
	s.limiter.SetQueue(limit.Queue{Policy: cfg.Admission, Interval: cfg.QueueWait, Target: cfg.QueueTarget})
	if err := checkCORS(&cfg.CORS); err != nil {
		return nil, err
	}
	s.router.cors = newCORS(&cfg.CORS)
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
		// The handler gets the head and at most 8 KiB of the body, and
		// reads the rest itself once admitted, within the body budget.
		StreamRequestBody: true,
		// Bodies go to the services as they came: no multipart parsing
		// (which would read a whole upload, to temporary files).
		DisablePreParseMultipartForm: true,
		// No 100 Continue before a refusal.
		ExpectHandler: s.expect,
		// Nor a wait for a body that will be refused.
		HeaderReceived: s.headerReceived,
		// The listener holds connections to MaxConns and answers those
		// over it (capListener); fasthttp's limit, above it, never refuses
		// one (a connection closed may hold its worker a moment longer).
		Concurrency:     2 * cfg.MaxConns,
		CloseOnShutdown: true,
		Logger:          fasthttpLogger{log},
	}
	return s, nil
}

// Router is the routing table; discovery feeds it with SetRoutes.
func (s *Server) Router() *Router { return s.router }

// SetRoutes replaces the routing table.
func (s *Server) SetRoutes(routes []Route) { s.router.Set(routes, s.cfg.Timeout) }

// Start binds the public listener (TCP, or a unix socket: see Listen) and
// serves in the background.
func (s *Server) Start() error {
	ln, err := Listen(s.cfg.Listen, s.cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.unix = ln.Addr().Network() == "unix"
	capped := &capListener{Listener: ln, s: s, refusing: make(chan struct{}, maxRefusing)}
	go func() { s.served <- s.http.Serve(capped) }()
	s.metrics.start()
	s.watch.run()
	s.ready.Store(true)
	s.log.Info("terminator listening", "http", s.Addr())
	return nil
}

// Addr is the public listener's address: "host:port", or "unix:PATH".
func (s *Server) Addr() string { return listenAddr(s.ln) }

// Ready reports whether the server takes traffic, and why not.
func (s *Server) Ready() error {
	if !s.ready.Load() {
		return errors.New("draining")
	}
	return nil
}

// Drain is the graceful half of shutdown: readiness goes false, the public
// listener stops accepting (a unix socket's file is removed), and in-flight
// requests finish until ctx ends.
// Calling it again returns the first call's result.
func (s *Server) Drain(ctx context.Context) error {
	s.drainOnce.Do(func() {
		s.ready.Store(false)
		s.drainErr = s.http.ShutdownWithContext(ctx)
		if s.ln != nil {
			// fasthttp's Shutdown closes only the listeners Serve has
			// registered: one called before the Serve goroutine got that
			// far would leave it accepting, and this wait hanging.
			_ = s.ln.Close()
			<-s.served
		}
	})
	return s.drainErr
}

// Close stops the metrics and the watcher of parked requests' clients
// (after Drain: while requests drain, their clients may still leave).
func (s *Server) Close() error {
	s.metrics.stop()
	s.watch.close()
	return nil
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "from", "fasthttp")
}
