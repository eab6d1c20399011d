package nanobus

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/xbus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/terminator-gw/terminator/nanobus/internal/busopt"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/wire"
)

// lingerTime is how long Shutdown keeps connections open after the last
// reply was written.
const lingerTime = 100 * time.Millisecond

// maxServing times MaxInFlight bounds the handlers a node runs at once.
const maxServing = 8

// maxDeadline bounds the timeout a route may declare.
const maxDeadline = 5 * time.Minute

// Config configures a Node. The zero value is a caller-only node on a free
// loopback port.
type Config struct {
	// Service is the service this node's handlers belong to ("profiles").
	// Empty for a node that only calls others, like the terminator.
	Service string
	// Listen is the bus address to listen on: "tcp://host:port" or, with
	// TLS set, "tls+tcp://host:port". Default a free loopback port.
	Listen string
	// Advertise is the address other nodes dial to reach this one, sent in
	// every request so the reply comes back here. Default: the bound
	// listen address (required when listening on 0.0.0.0 or ::).
	Advertise string
	// TLS, when set, is used both to listen (a client certificate signed
	// by ClientCAs is then required of every peer) and to dial peers.
	TLS *tls.Config
	// MaxInFlight bounds the calls waiting on one remote node. Over it,
	// calls fail at once with ErrBusy. Default 1024.
	MaxInFlight int
	// Timeout is the deadline of a call whose context has none. Default 5s.
	Timeout time.Duration
	// Version is the version of the service this node runs, registered
	// with it so that callers can pick instances by version.
	Version string
	// Limits bound what remote peers can make this node hold.
	Limits Limits
	// Limiter, when set, bounds the handlers running at once (a
	// *limit.Limiter does so adaptively, by measured latency): a request
	// over it is refused at once as busy, before its handler runs.
	Limiter Limiter
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// ErrorLogRate bounds the lines a second the node writes about failed
	// requests (a handler's 5xx, a call a handler made that failed, a
	// reply dropped); the lines over it are counted in Stats.LogsDropped.
	// Default 20.
	ErrorLogRate int
	// TracerProvider, when set, records a span for each call the node
	// makes (client) and each request it handles (server), continuing the
	// W3C traceparent that requests carry (see trace.go). Nil: no spans,
	// at no cost.
	TracerProvider trace.TracerProvider

	// protocol is the wire protocol the node speaks and announces; 0 means
	// wire.ProtocolVersion. Tests set 1 to play a node of before protocol 2.
	protocol int
}

// Limiter bounds the handlers a node runs at once (Config.Limiter).
// *limit.Limiter, of nanobus/limit, is one that adapts to measured latency.
type Limiter interface {
	// Acquire admits one handler, or refuses it (false): the request is
	// then answered busy at once.
	Acquire() bool
	// Release ends an admitted handler that ran for rtt.
	Release(rtt time.Duration)
}

// nestedLimiter is a Limiter that admits nested calls (wire.FlagNested:
// made by a handler for the request it serves) before new work, as
// *limit.Limiter does.
type nestedLimiter interface{ AcquireNested() bool }

// Limits bound what remote peers can make a node hold. A connection over a
// limit is closed, counted in Stats and logged (at a bounded rate). They take effect with the bus's
// own transport (import nanobus/transport); the zero value of a field means
// its default.
type Limits struct {
	// FrameTimeout: a frame whose length has arrived must be complete
	// within it, or its connection is cut. Default 10s.
	FrameTimeout time.Duration `json:"frame_timeout"`
	// IdleTimeout: an accepted connection must send its first frame within
	// it. One that has carried no message (the dialer's hello and pings
	// do not count) for this long is silent: at MaxConns, the connection
	// silent the longest is closed to make room for a new one. Quiet
	// members are left alone while there is room. Default 30s.
	IdleTimeout time.Duration `json:"idle_timeout"`
	// PeerTimeout: a connection whose peer stops answering (a cut
	// network: no reset ever comes) is closed after about this long, and
	// the calls on it fail (and are retried elsewhere when idempotent),
	// rather than waiting for their deadlines. Default 1s.
	PeerTimeout time.Duration `json:"peer_timeout"`
	// MaxConns bounds the connections other nodes open to this one,
	// handshakes included. One over it takes the place of a silent one
	// (see IdleTimeout), or is refused when none is. Default 4096.
	MaxConns int `json:"max_conns"`
	// MaxBuffered bounds the memory of large frames (over 64 KiB) being
	// read, across all connections: such a frame takes its whole declared
	// length from it before it is read, and is refused at once if that
	// would go over. Default 64 MiB: four frames of the largest size.
	MaxBuffered int `json:"max_buffered"`
}

// SetDefaults fills in the fields left zero.
func (l *Limits) SetDefaults() {
	if l.FrameTimeout <= 0 {
		l.FrameTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 30 * time.Second
	}
	if l.PeerTimeout <= 0 {
		l.PeerTimeout = time.Second
	}
	if l.MaxConns <= 0 {
		l.MaxConns = 4096
	}
	if l.MaxBuffered <= 0 {
		l.MaxBuffered = 4 * wire.MaxFrameSize
	}
}

// open calls open, which makes a listener or dialer for addr with the bus
// transport's options. A transport that refuses them is not the bus's own:
// without it a node has no frame deadlines or connection limits, and no
// way to answer on the connection a request came in on, so it is an error.
func (n *Node) open(addr string, open func() error) error {
	err := open()
	if errors.Is(err, mangos.ErrBadOption) {
		return fmt.Errorf("%s: the bus transport registered for this scheme is not nanobus's "+
			"(import _ \"github.com/terminator-gw/terminator/nanobus/transport\", after any mangos transport): %w", addr, err)
	}
	return err
}

// Node is one process's endpoint on the bus: it listens on one address,
// serves the handlers registered on it, and calls other nodes' services.
type Node struct {
	cfg      Config
	nested   nestedLimiter // cfg.Limiter, when it puts nested calls first
	log      *slog.Logger
	protocol int    // the wire protocol it speaks and announces (Config.protocol)
	id       uint64 // incarnation: random per start, the high half of every correlation ID
	addr     string // advertised address
	from     []byte // addr, as sent in requests
	// timingPrefix starts this node's Server-Timing entry:
	// `service;desc="version";dur=`.
	timingPrefix []byte
	sock         mangos.Socket
	tracer       trace.Tracer // nil: no spans (Config.TracerProvider)

	seq     atomic.Uint64 // calls made: the high half of each call's sequence number
	pending pendingCalls
	running runningRequests
	replies struct{ sent, written atomic.Uint64 } // replies handed to the listener's pipes, and done with (busopt.Written)
	stats   counters
	badLog  rate.Sometimes  // malformed input
	errLog  rate.Sometimes  // everything else that goes wrong per request
	reqLog  limit.PerSecond // lines about failed requests, with their IDs

	mu        sync.RWMutex     // guards conns, policies, callStats and writes of services and routes
	conns     map[string]*conn // remote address -> our dialed socket to it
	policies  map[string]*policy.Policy
	callStats map[[2]string]*callStats // (service, version) -> calls made to it
	hedging   map[[2]string]*hedging   // (service, route) -> a hedged route's latency and counts
	budgets   map[string]*budget       // service -> its retry budget
	services  atomic.Pointer[map[string]*service]

	ghosts     atomic.Int64 // ghost copies in flight
	ghostStats sync.Map     // (service, route) -> *ghostStats
	routes     atomic.Pointer[map[string]*route]

	ctx         context.Context // ends when the node closes; parent of handler contexts
	cancel      context.CancelFunc
	serving     atomic.Int64 // handlers running or about to
	work        chan job     // requests for idle workers; closed by Close
	idleWorkers atomic.Int64
	delivering  atomic.Int64 // deliver calls under way
	draining    atomic.Bool
	closed      atomic.Bool
}

// NewNode starts a node listening on cfg.Listen.
func NewNode(cfg Config) (*Node, error) {
	if cfg.Listen == "" {
		cfg.Listen = "tcp://127.0.0.1:0"
		if cfg.TLS != nil {
			cfg.Listen = "tls+tcp://127.0.0.1:0"
		}
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ErrorLogRate <= 0 {
		cfg.ErrorLogRate = defaultErrorLogRate
	}
	cfg.Limits.SetDefaults()
	if tlsAddr := strings.HasPrefix(cfg.Listen, "tls+tcp://"); tlsAddr != (cfg.TLS != nil) {
		return nil, fmt.Errorf("listen %s: tls+tcp:// and Config.TLS go together", cfg.Listen)
	}
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	n := &Node{
		cfg:      cfg,
		protocol: cmp.Or(cfg.protocol, wire.ProtocolVersion),
		log:      cfg.Logger.With("node", cfg.Service),
		tracer:   tracerOf(cfg.TracerProvider),
		id:       binary.BigEndian.Uint64(idb[:]) | 1, // never 0
		conns:    map[string]*conn{}, policies: map[string]*policy.Policy{}, callStats: map[[2]string]*callStats{},
		hedging: map[[2]string]*hedging{}, budgets: map[string]*budget{},
	}
	n.nested, _ = cfg.Limiter.(nestedLimiter)
	n.badLog.Interval, n.errLog.Interval = time.Second, time.Second
	n.reqLog.Max = int64(cfg.ErrorLogRate)
	n.services.Store(&map[string]*service{})
	n.work = make(chan job)
	n.routes.Store(&map[string]*route{})
	n.ctx, n.cancel = context.WithCancel(context.Background())

	sock, err := xbus.NewSocket()
	if err != nil {
		return nil, err
	}
	n.sock = sock
	_ = sock.SetOption(mangos.OptionMaxRecvSize, wire.MaxFrameSize)
	opts := map[string]any{}
	if cfg.TLS != nil {
		srv := cfg.TLS.Clone()
		srv.ClientAuth = tls.RequireAndVerifyClientCert
		opts[mangos.OptionTLSConfig] = srv
	}
	lim := cfg.Limits
	opts[busopt.FrameTimeout], opts[busopt.IdleTimeout], opts[busopt.PeerTimeout] = lim.FrameTimeout, lim.IdleTimeout, lim.PeerTimeout
	opts[busopt.MaxConns], opts[busopt.MaxBuffered] = lim.MaxConns, lim.MaxBuffered
	opts[busopt.OnRefuse], opts[busopt.Deliver], opts[busopt.Written] = n.refused, n.deliver, &n.replies.written
	var l mangos.Listener
	err = n.open(cfg.Listen, func() (err error) {
		l, err = sock.NewListener(cfg.Listen, opts)
		return err
	})
	if err == nil {
		err = l.Listen()
	}
	if err != nil {
		sock.Close()
		if strings.Contains(err.Error(), "unsupported transport") || errors.Is(err, mangos.ErrBadTran) {
			return nil, fmt.Errorf("listen %s: %w (import _ \"github.com/terminator-gw/terminator/nanobus/transport\")", cfg.Listen, err)
		}
		return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	n.addr = cfg.Advertise
	if n.addr == "" {
		n.addr = l.Address()
		if u, err := url.Parse(n.addr); err == nil {
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
				sock.Close()
				return nil, fmt.Errorf("listen %s: set Advertise to an address peers can dial", cfg.Listen)
			}
		}
	}
	n.from = []byte(n.addr)
	n.timingPrefix = fmt.Appendf(nil, "%s;desc=%q;dur=", cmp.Or(cfg.Service, "node"), cfg.Version)

	// Nothing reads the socket: the bus transport hands every message to
	// deliver (or conn.deliver) on the goroutine that read it.
	go n.ping()
	go n.trimWorkers()
	return n, nil
}

// ping sends an empty frame, twice per PeerTimeout, on every connection
// with calls in flight. A peer cut off by the network sends no reset and,
// once our requests are acknowledged, leaves nothing unanswered for the
// kernel to notice; an empty frame it cannot acknowledge makes the
// connection fail within the PeerTimeout (TCP_USER_TIMEOUT), and its calls
// with it, rather than at their deadlines.
func (n *Node) ping() {
	t := time.NewTicker(n.cfg.Limits.PeerTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		var busy []*conn
		n.mu.RLock()
		for _, c := range n.conns {
			if c.inflight.Load() > 0 && c.ready.Load() {
				busy = append(busy, c)
			}
		}
		n.mu.RUnlock()
		for _, c := range busy { // outside the lock: a send may wait for room
			if send := c.direct.Load(); send != nil {
				_ = (*send)(nil)
			}
		}
	}
}

// refused counts a connection the transport closed, for a limit or for
// what its peer sent, and logs it (at a bounded rate: a flood of bad
// connections must not flood the log) with err, which names the peer's
// address and the cause (for TLS, the handshake's error: bad certificate,
// unknown authority, expired...).
func (n *Node) refused(reason string, err error) {
	log := &n.errLog
	switch reason {
	case busopt.RefusedConns:
		n.stats.connsRefused.Add(1)
	case busopt.RefusedFrameTimeout:
		n.stats.frameTimeouts.Add(1)
	case busopt.RefusedIdle:
		n.stats.idleClosed.Add(1)
	case busopt.RefusedBuffered:
		n.stats.bufferRefused.Add(1)
	// What the peer sent: logged apart from the limits, with malformed
	// frames, so that one kind of trouble does not hide the other.
	case busopt.RefusedTooLong:
		n.stats.tooLong.Add(1)
		log = &n.badLog
	case busopt.RefusedBadHeader:
		n.stats.badHeader.Add(1)
		log = &n.badLog
	case busopt.RefusedTLS:
		n.stats.tlsRefused.Add(1)
		log = &n.badLog
	}
	warnSometimes(log, n.log, "peer connection closed", "reason", reason, "err", err)
}

// Addr is the bus address peers reach this node at.
func (n *Node) Addr() string { return n.addr }

// Service is the service this node serves ("" for a caller-only node).
func (n *Node) Service() string { return n.cfg.Service }

// Version is the version of the service this node runs.
func (n *Node) Version() string { return n.cfg.Version }

// Services lists the services this node knows instances of, sorted.
func (n *Node) Services() []string {
	m := *n.services.Load()
	out := make([]string, 0, len(m))
	for s := range m {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Peer is this node as its callers see it: what a registry announces.
func (n *Node) Peer() Peer {
	return Peer{Service: n.cfg.Service, Addr: n.addr, Weight: 1, Version: n.cfg.Version, Protocol: n.protocol, Routes: n.Routes()}
}

// ID is this node's incarnation: random per start.
func (n *Node) ID() uint64 { return n.id }

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	s := n.stats.snapshot()
	s.Limits = n.cfg.Limits
	s.LogsDropped = n.reqLog.Refused()
	n.mu.Lock()
	for _, c := range n.conns {
		if c.ready.Load() {
			s.Peers++
		}
	}
	n.mu.Unlock()
	return s
}

// job is a request for a worker: the frame, and the pipe it came on.
type job struct {
	m     *mangos.Message
	reply func([]byte) error // writes on the asker's pipe, and no other
	share *atomic.Int64      // handlers at work for that pipe; also names the pipe
	id    wire.ID
	ctx   *handlerContext // what the handler will run with; a cancel can end it before it starts
}

// deliver takes one message received on the listener: a request goes to a
// worker; a cancel is counted; an event, a frame of a kind this node does
// not know, or a request that does not decode is answered with an error
// frame, on the pipe it came on, so that no asker waits out its deadline
// for an answer that cannot come. Answers come on the connections this node
// dialed (see conn.deliver); one arriving here did not come from the
// instance that was asked, and is dropped. The bus's transport calls
// deliver on the goroutine that read the message.
func (n *Node) deliver(m *mangos.Message, reply func([]byte) error, share *atomic.Int64) bool {
	// Close waits for deliveries under way before it closes n.work.
	n.delivering.Add(1)
	defer n.delivering.Add(-1)
	if n.closed.Load() {
		m.Free()
		return true
	}
	kind, err := wire.KindOf(m.Body)
	switch {
	case err == nil && kind == wire.KindRequest:
		// A node-wide bound on handler goroutines, and a share of it per
		// connection: askers bound their own calls, but nothing else stops
		// one peer's flood of frames from taking every slot.
		if n.serving.Add(1) > int64(maxServing*n.cfg.MaxInFlight) {
			n.serving.Add(-1)
			n.stats.overload.Add(1)
			warnSometimes(&n.errLog, n.log, "request dropped: too many handlers running")
			m.Free()
			return true
		}
		// The request is cancellable from now on: a cancel frame read
		// right after it must find it, though no worker took it yet.
		_, id, err := wire.PrefixOf(m.Body)
		if err != nil {
			n.serving.Add(-1)
			n.malformed(m, err)
			return true
		}
		j := job{m: m, reply: reply, share: share, id: id, ctx: newHandlerContext(n)}
		n.running.add(share, id, j.ctx)
		select {
		case n.work <- j: // an idle worker takes it
		default:
			go n.worker(j)
		}
	case err != nil || kind.Protocol() > n.protocol:
		n.unknownKind(m, reply, err)
	case kind == wire.KindCancel:
		n.cancelled(m, share)
	case kind == wire.KindCredit:
		n.credited(m, share)
	case kind == wire.KindEvent:
		n.event(m, reply)
	default:
		n.misdirected(m, "an answer on a connection its call did not go out on")
	}
	return true
}

// unknownKind answers a frame whose kind this node does not know (err is
// ErrKind, or nil for a kind past the protocol it speaks) with an error
// frame: its sender is newer, or broken, and must not wait in silence. A
// frame whose prefix does not read is malformed: dropped, counted.
func (n *Node) unknownKind(m *mangos.Message, reply func([]byte) error, err error) {
	kind, id, perr := wire.PrefixOf(m.Body)
	if perr != nil || err != nil && !errors.Is(err, wire.ErrKind) {
		n.malformed(m, cmp.Or(perr, err))
		return
	}
	n.stats.unknownKinds.Add(1)
	warnSometimes(&n.badLog, n.log, "frame of an unknown kind answered", "kind", uint8(kind), "size", len(m.Body))
	m.Free()
	n.answerError(reply, id, wire.CodeUnknownKind, "unknown frame kind")
}

// cancelled takes a cancel frame: the handler of the call it names, if it
// still runs, sees its context end with context.Canceled, and so do the
// calls it made. Only the connection a request came on can cancel it.
func (n *Node) cancelled(m *mangos.Message, share *atomic.Int64) {
	var c wire.Cancel
	if err := wire.DecodeCancel(m.Body, &c); err != nil {
		n.malformed(m, err) // a cancel is never answered
		return
	}
	m.Free()
	n.stats.cancels.Add(1)
	if hc := n.running.get(share, c.ID); hc != nil && hc.cancel() {
		n.stats.handlersCancelled.Add(1)
	}
}

// event takes an event frame. A node has no event handlers yet: the event
// is refused as having no route, so that its sender knows at once.
func (n *Node) event(m *mangos.Message, reply func([]byte) error) {
	var e wire.Event
	err := wire.DecodeEvent(m.Body, &e)
	m.Free()
	if err != nil {
		n.stats.malformed.Add(1)
		warnSometimes(&n.badLog, n.log, "malformed event answered", "err", err)
		n.answerError(reply, e.ID, wire.CodeMalformed, "event does not decode")
		return
	}
	n.stats.noRoute.Add(1)
	n.answerError(reply, e.ID, wire.CodeNoRoute, "no event handler")
}

// maxIdleWorkers is how many idle workers a node keeps for good. A
// worker is a goroutine that serves request after request: its stack,
// grown by the first handlers it ran, stays grown, where a goroutine per
// request would grow a fresh stack every time (copying it two or three
// times: at 1024 connections that was a tenth of the page's CPU time).
// Idle workers past this many retire slowly (see trimWorkers), not as soon
// as they are idle: under steady load the count of idle workers swings
// with every burst, and a worker that exits on a swing is a goroutine
// made again, stack and all, on the next.
const maxIdleWorkers = 256

// trimEvery is how often trimWorkers looks at the idle workers.
const trimEvery = time.Second

// worker serves j, then whatever deliver hands it, until the node closes or
// trimWorkers retires it (a job with no message).
func (n *Node) worker(j job) {
	for {
		n.serve(j)
		n.idleWorkers.Add(1)
		var ok bool
		j, ok = <-n.work
		n.idleWorkers.Add(-1)
		if !ok || j.m == nil {
			return // the node closed, or the worker retired
		}
	}
}

// trimWorkers retires, every trimEvery, half of the idle workers past
// maxIdleWorkers: after a burst, the idle count falls back to
// maxIdleWorkers within seconds, while under steady load only the workers
// idle at a tick go, a few per second at most.
func (n *Node) trimWorkers() {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		excess := n.idleWorkers.Load() - maxIdleWorkers
		if excess <= 0 {
			continue
		}
		// As deliver does: Close closes n.work only once no send is under way.
		n.delivering.Add(1)
		if n.closed.Load() {
			n.delivering.Add(-1)
			return
		}
	retire:
		for range (excess + 1) / 2 {
			select {
			case n.work <- job{}:
			default: // none idle after all
				break retire
			}
		}
		n.delivering.Add(-1)
	}
}

func (n *Node) malformed(m *mangos.Message, err error) {
	n.stats.malformed.Add(1)
	warnSometimes(&n.badLog, n.log, "malformed frame dropped", "size", len(m.Body), "err", err)
	m.Free()
}

// misdirected drops a frame that came on a connection that may not carry
// it: no peer speaks for another.
func (n *Node) misdirected(m *mangos.Message, why string) {
	n.stats.misdirected.Add(1)
	warnSometimes(&n.badLog, n.log, "frame dropped: "+why, "size", len(m.Body))
	m.Free()
}

// connLost fails every call that went out on the lost pipe, at once rather
// than at its deadline. A conn no service lists any more (its peer left
// the registry: RemovePeer) is closed; AddPeer dials again if it comes
// back.
func (n *Node) connLost(c *conn, gen uint64) {
	lost := n.pending.takeConn(c, gen)
	for _, cl := range lost {
		cl.finish(nil, ErrPeerLost)
	}
	n.mu.Lock()
	if c.refs == 0 && n.conns[c.addr] == c {
		delete(n.conns, c.addr)
		go c.close()
	}
	n.mu.Unlock()
	if len(lost) > 0 {
		n.log.Info("peer connection lost", "addr", c.addr, "calls_failed", len(lost))
	}
}

// Shutdown stops taking requests (new ones are answered "unavailable"),
// waits for running handlers to answer or for ctx to end, then closes.
func (n *Node) Shutdown(ctx context.Context) error {
	n.draining.Store(true)
	err := n.drain(ctx)
	if err == nil {
		err = n.flush(ctx)
		// Linger: a reply written on our connection to the asker can still
		// be in flight when the asker sees this node's listener close on
		// the other connection, and would then fail the call as lost.
		select {
		case <-time.After(lingerTime):
		case <-ctx.Done():
		}
	}
	if cerr := n.Close(); err == nil {
		err = cerr
	}
	return err
}

// drain waits until no handler runs. (A draining node still receives, to
// answer "unavailable", so this counts rather than using a WaitGroup, whose
// Add may not race its Wait.)
func (n *Node) drain(ctx context.Context) error {
	for n.serving.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// flush waits until every reply and request handed to a connection has
// been written to its socket (or the connection is gone), so that closing
// does not cut off the last answers of a drain.
func (n *Node) flush(ctx context.Context) error {
	for {
		n.mu.RLock()
		waiting := 0
		if n.replies.sent.Load() > n.replies.written.Load() {
			waiting++
		}
		for _, c := range n.conns {
			if c.ready.Load() && c.queued() > 0 {
				waiting++
			}
		}
		n.mu.RUnlock()
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Close closes the node at once: handler contexts end, calls waiting on it
// fail with ErrClosed, its sockets close.
func (n *Node) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	err := n.sock.Close()
	for n.delivering.Load() > 0 {
		time.Sleep(100 * time.Microsecond) // a delivery finishes its hand-off
	}
	close(n.work) // idle workers exit
	n.mu.Lock()
	conns := n.conns
	n.conns = map[string]*conn{}
	n.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	n.cancel() // only now: replies of handlers that stop early have nowhere to go
	for _, cl := range n.pending.takeAll() {
		cl.finish(nil, ErrClosed)
	}
	return err
}
