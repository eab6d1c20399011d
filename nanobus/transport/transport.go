package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/transport"

	"github.com/terminator-gw/terminator/nanobus/internal/busopt"
)

// The transports this package registers, as mangos' transport packages
// export theirs.
var (
	TCP transport.Transport = tcpTransport{scheme: "tcp"}
	TLS transport.Transport = tcpTransport{scheme: "tls+tcp", tls: true}
)

func init() {
	transport.RegisterTransport(TCP)
	transport.RegisterTransport(TLS)
}

// Options this transport takes besides mangos' own (nanobus sets them; the
// names and value types are nanobus/internal/busopt's, shared with
// nanobus). Every one is optional; a value of another type is refused
// with mangos.ErrBadValue.
const (
	// OptionWritten (dialers and listeners): an *atomic.Uint64 that each
	// pipe adds one to for every message it is done with: written to the
	// socket, or dropped with the pipe when it failed or closed first. A
	// sender that counts what it handed over can so wait for its last
	// messages to be out (or gone) before it closes.
	OptionWritten = busopt.Written
	// OptionFrameTimeout (listeners and dialers): a time.Duration within
	// which a frame whose length has arrived must be complete; a peer that
	// stalls mid-frame is cut. 0: no limit.
	OptionFrameTimeout = busopt.FrameTimeout
	// OptionIdleTimeout (listeners): a time.Duration within which an
	// accepted connection must send its first frame after the handshake,
	// or be closed. A connection that has carried no message (hellos and
	// pings are not messages) for this long is silent: at OptionMaxConns,
	// the one silent the longest is closed to make room for a newcomer.
	// 0: no limit.
	OptionIdleTimeout = busopt.IdleTimeout
	// OptionMaxConns (listeners): an int bounding the accepted connections
	// open at once, handshakes included. A connection over it takes the
	// place of a silent one (see OptionIdleTimeout), or is closed at once
	// when none is. 0: no limit.
	OptionMaxConns = busopt.MaxConns
	// OptionMaxBuffered (listeners): an int bounding the bytes held for
	// large frames being read, across all the listener's connections. A
	// large frame takes its whole length from it before it is read; one
	// that would go over is refused, its connection closed. 0: no limit.
	OptionMaxBuffered = busopt.MaxBuffered
	// OptionPeerTimeout (listeners and dialers): a time.Duration after
	// which a connection whose peer has stopped answering is closed: data
	// it sent unacknowledged that long (TCP_USER_TIMEOUT), or, idle, no
	// answer to keepalive probes for about as long. A cut network then
	// fails the calls on it in about this time, not at their deadline.
	// 0: the kernel's defaults (minutes).
	OptionPeerTimeout = busopt.PeerTimeout
	// OptionOnRefuse (listeners and dialers): a func(reason string, err
	// error) called for each connection the transport closes for a limit
	// (those above, and mangos.OptionMaxRecvSize) or for what its peer
	// sent (a wrong SP header, a failed TLS handshake), with reason one of
	// the Refused* constants and err the cause, naming the peer's address.
	// A handshake the peer ends by closing (EOF) is not a refusal. It is
	// called on the transport's goroutines, with none of its locks held.
	OptionOnRefuse = busopt.OnRefuse
	// OptionDeliver (listeners and dialers): a func(m *mangos.Message,
	// reply func([]byte) error, share *atomic.Int64) bool that each pipe
	// calls, on its reading goroutine, with every message it receives; a
	// message it takes (true) does not go up to the mangos socket. This
	// spares the socket's receive queue and the goroutine that would take
	// the message off it. reply writes one message back on the pipe m
	// came in on, and on no other (a BUS socket's own send goes to every
	// pipe); share is a counter that lives as long as the pipe, for the
	// receiver to bound what one peer holds.
	OptionDeliver = busopt.Deliver
	// OptionSend (a pipe's, read with mangos.Pipe.GetOption): a
	// func([]byte) error that writes one message on the pipe from the
	// calling goroutine, sparing the socket's send queue and its sender
	// goroutine (see pipe).
	OptionSend = busopt.Send
)

// Reasons passed to OptionOnRefuse.
const (
	RefusedConns        = busopt.RefusedConns        // over OptionMaxConns, no silent connection to close instead
	RefusedFrameTimeout = busopt.RefusedFrameTimeout // a frame not finished in time
	RefusedIdle         = busopt.RefusedIdle         // no frame within OptionIdleTimeout, or silent and closed to make room
	RefusedBuffered     = busopt.RefusedBuffered     // a frame over OptionMaxBuffered
	RefusedTooLong      = busopt.RefusedTooLong      // a frame length over OptionMaxRecvSize
	RefusedBadHeader    = busopt.RefusedBadHeader    // not an SP header for our peer protocol
	RefusedTLS          = busopt.RefusedTLS          // the TLS handshake failed
)

const (
	handshakeTimeout = 5 * time.Second
	writeTimeout     = 10 * time.Second
	readBufferSize   = 32 << 10
	recvChunk        = 64 << 10 // frames above this are read in chunks
)

type tcpTransport struct {
	scheme string
	tls    bool
}

func (t tcpTransport) Scheme() string { return t.scheme }

func (t tcpTransport) NewDialer(url string, sock mangos.Socket) (transport.Dialer, error) {
	addr, err := transport.StripScheme(t, url)
	if err != nil {
		return nil, err
	}
	return &dialer{endpoint: endpoint{addr: addr, tls: t.tls, proto: sock.Info()}}, nil
}

func (t tcpTransport) NewListener(url string, sock mangos.Socket) (transport.Listener, error) {
	addr, err := transport.StripScheme(t, url)
	if err != nil {
		return nil, err
	}
	return &listener{
		endpoint: endpoint{addr: strings.TrimPrefix(addr, "*"), tls: t.tls, proto: sock.Info()},
		scheme:   t.scheme,
		ready:    make(chan *pipe),
		closeq:   make(chan struct{}),
		pending:  map[net.Conn]time.Time{},
		live:     map[*pipe]struct{}{},
	}, nil
}

// limits are the options that bound what a peer can make us hold.
type limits struct {
	maxRecv      int
	frameTimeout time.Duration
	idleTimeout  time.Duration
	peerTimeout  time.Duration
	maxConns     int
	maxBuffered  int64
	written      *atomic.Uint64
	onRefuse     busopt.OnRefuseFunc
	deliver      Deliver
}

// Deliver is the type of OptionDeliver's value.
type Deliver = busopt.DeliverFunc

func (l *limits) refused(reason string, err error) {
	if l.onRefuse != nil {
		l.onRefuse(reason, err)
	}
}

// refusal is the error passed with a refusal: its cause, naming the peer.
func refusal(c net.Conn, err error) error {
	return fmt.Errorf("peer %s: %w", c.RemoteAddr(), err)
}

// endpoint holds what dialers and listeners share: options and the
// handshake.
type endpoint struct {
	addr   string
	tls    bool
	proto  mangos.ProtocolInfo
	mu     sync.Mutex
	config *tls.Config
	limits limits
}

func (e *endpoint) SetOption(name string, v any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ok bool
	switch name {
	case mangos.OptionTLSConfig:
		ok = set(&e.config, v)
	case mangos.OptionMaxRecvSize:
		n, isInt := v.(int)
		ok = isInt && n >= 0 && set(&e.limits.maxRecv, n)
	case OptionWritten:
		ok = set(&e.limits.written, v)
	case OptionFrameTimeout:
		ok = set(&e.limits.frameTimeout, v)
	case OptionIdleTimeout:
		ok = set(&e.limits.idleTimeout, v)
	case OptionPeerTimeout:
		ok = set(&e.limits.peerTimeout, v)
	case OptionMaxConns:
		ok = set(&e.limits.maxConns, v)
	case OptionMaxBuffered:
		var n int
		if ok = set(&n, v); ok {
			e.limits.maxBuffered = int64(n)
		}
	case OptionOnRefuse:
		ok = set(&e.limits.onRefuse, v)
	case OptionDeliver:
		ok = set(&e.limits.deliver, v)
	default:
		return mangos.ErrBadOption
	}
	if !ok {
		return mangos.ErrBadValue
	}
	return nil
}

// set stores v in *dst if it is a T, and leaves *dst as it was if not: a
// refused value must not reset an option to its zero value, which often
// means "no limit".
func set[T any](dst *T, v any) bool {
	x, ok := v.(T)
	if ok {
		*dst = x
	}
	return ok
}

func (e *endpoint) GetOption(name string) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch name {
	case mangos.OptionTLSConfig:
		return e.config, nil
	case mangos.OptionMaxRecvSize:
		return e.limits.maxRecv, nil
	case OptionFrameTimeout:
		return e.limits.frameTimeout, nil
	case OptionIdleTimeout:
		return e.limits.idleTimeout, nil
	case OptionPeerTimeout:
		return e.limits.peerTimeout, nil
	case OptionMaxConns:
		return e.limits.maxConns, nil
	case OptionMaxBuffered:
		return int(e.limits.maxBuffered), nil
	}
	return nil, mangos.ErrBadOption
}

// open runs the TLS handshake (when configured) and the SP handshake on c.
// buffered, when not nil, is the listener's count of bytes held for
// unfinished frames.
func (e *endpoint) open(c net.Conn, server bool, buffered *atomic.Int64) (*pipe, error) {
	e.mu.Lock()
	cfg, lim := e.config, e.limits
	e.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	p := newPipe(c, lim, buffered)
	if e.tls {
		if cfg == nil {
			c.Close()
			return nil, mangos.ErrTLSNoConfig
		}
		var tc *tls.Conn
		if server {
			tc = tls.Server(c, cfg)
		} else {
			tc = tls.Client(c, cfg)
		}
		if err := tc.Handshake(); err != nil {
			c.Close()
			if refusable(err) {
				lim.refused(RefusedTLS, refusal(c, fmt.Errorf("TLS handshake: %w", err)))
			}
			return nil, err
		}
		state := tc.ConnectionState()
		p.conn, p.tlsState = tc, &state
	}
	// SP header: 0x00 'S' 'P' version 0, our protocol, 2 reserved bytes.
	var h [8]byte
	h[1], h[2] = 'S', 'P'
	binary.BigEndian.PutUint16(h[4:], e.proto.Self)
	if _, err := p.conn.Write(h[:]); err != nil {
		p.conn.Close()
		return nil, err
	}
	if _, err := io.ReadFull(p.conn, h[:]); err != nil {
		p.conn.Close()
		if refusable(err) { // part of a header, or none in time
			lim.refused(RefusedBadHeader, refusal(c, fmt.Errorf("SP header: %w", err)))
		}
		return nil, err
	}
	var err error
	switch {
	case h[0] != 0 || h[1] != 'S' || h[2] != 'P' || h[6] != 0 || h[7] != 0:
		err = mangos.ErrBadHeader
	case h[3] != 0:
		err = mangos.ErrBadVersion
	case binary.BigEndian.Uint16(h[4:]) != e.proto.Peer:
		err = mangos.ErrBadProto
	}
	if err != nil {
		p.conn.Close()
		lim.refused(RefusedBadHeader, refusal(c, fmt.Errorf("SP header % x: %w", h, err)))
		return nil, err
	}
	if !server {
		// Say hello: an empty frame, so that the listener knows at once
		// this is a member and not an idle connection (see Recv).
		if _, err := p.conn.Write(make([]byte, 8)); err != nil {
			p.conn.Close()
			return nil, err
		}
	}
	_ = c.SetDeadline(time.Time{})
	if server && lim.idleTimeout > 0 {
		// Until its first frame, an accepted connection is on probation.
		p.idleUntil = time.Now().Add(lim.idleTimeout)
		_ = p.conn.SetReadDeadline(p.idleUntil)
	}
	p.start()
	return p, nil
}

// refusable reports whether a handshake's failure is the peer's doing, to
// report: not a peer that connected and left without a byte (a port check),
// nor a connection we closed ourselves (the listener closing, or making
// room).
func refusable(err error) bool {
	return !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed)
}

type dialer struct {
	endpoint
}

// socketOptions are the keepalive settings and the control function that
// make a connection whose peer stopped answering fail within timeout.
func socketOptions(timeout time.Duration) (net.KeepAliveConfig, func(network, address string, c syscall.RawConn) error) {
	if timeout <= 0 {
		return net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second}, nil
	}
	// Probes every timeout/3 from timeout/3 of silence on: about timeout
	// when nothing is in flight.
	ka := net.KeepAliveConfig{Enable: true, Idle: timeout / 3, Interval: timeout / 3, Count: 2}
	return ka, func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = setUserTimeout(int(fd), timeout)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func (d *dialer) Dial() (transport.Pipe, error) {
	d.mu.Lock()
	ka, control := socketOptions(d.limits.peerTimeout)
	d.mu.Unlock()
	nd := net.Dialer{Timeout: handshakeTimeout, KeepAliveConfig: ka, Control: control}
	c, err := nd.Dial("tcp", d.addr)
	if err != nil {
		return nil, err
	}
	return d.open(c, false, nil)
}

type listener struct {
	endpoint
	scheme string
	ready  chan *pipe
	closeq chan struct{}
	once   sync.Once

	conns    atomic.Int64 // accepted and not yet closed, handshakes included
	buffered atomic.Int64 // bytes taken by large frames being read

	lmu     sync.Mutex
	l       net.Listener
	pending map[net.Conn]time.Time // accepted, still handshaking: since when
	live    map[*pipe]struct{}     // accepted and handshaken, until closed
}

func (l *listener) Listen() error {
	l.mu.Lock()
	ka, _ := socketOptions(l.limits.peerTimeout) // the timeout is set on each accepted conn
	idle, maxConns := l.limits.idleTimeout, l.limits.maxConns
	l.mu.Unlock()
	if l.isClosed() {
		return mangos.ErrClosed
	}
	lc := net.ListenConfig{KeepAliveConfig: ka}
	ln, err := lc.Listen(context.Background(), "tcp", l.addr)
	if err != nil {
		return err
	}
	l.lmu.Lock()
	if l.isClosed() { // closed while we bound the port
		l.lmu.Unlock()
		ln.Close()
		return mangos.ErrClosed
	}
	l.l = ln
	l.lmu.Unlock()
	go l.accept(ln)
	if idle > 0 && maxConns > 0 {
		go l.watch(idle)
	}
	return nil
}

func (l *listener) isClosed() bool {
	select {
	case <-l.closeq:
		return true
	default:
		return false
	}
}

func (l *listener) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		l.mu.Lock()
		lim := l.limits
		l.mu.Unlock()
		if _, control := socketOptions(lim.peerTimeout); control != nil {
			if sc, ok := c.(syscall.Conn); ok {
				if rc, err := sc.SyscallConn(); err == nil {
					_ = control("tcp", "", rc)
				}
			}
		}
		// Over the cap, a newcomer takes the place of a connection that
		// has been silent past the idle timeout, if there is one: its
		// slot then frees as it closes.
		if n := l.conns.Add(1); lim.maxConns > 0 && n > int64(lim.maxConns) && !l.makeRoom(&lim) {
			l.conns.Add(-1)
			c.Close()
			lim.refused(RefusedConns, refusal(c, fmt.Errorf("%d connections open already", lim.maxConns)))
			continue
		}
		l.lmu.Lock()
		if l.isClosed() {
			l.lmu.Unlock()
			l.conns.Add(-1)
			c.Close()
			return
		}
		l.pending[c] = time.Now()
		l.lmu.Unlock()
		// Handshake off the accept loop: a slow or silent client must not
		// hold up the others.
		go func() {
			p, err := l.open(c, true, &l.buffered)
			l.lmu.Lock()
			since := l.pending[c] // silent since it connected
			delete(l.pending, c)
			if err != nil {
				l.lmu.Unlock()
				l.conns.Add(-1)
				return
			}
			p.onClose = func() {
				l.lmu.Lock()
				delete(l.live, p)
				l.lmu.Unlock()
				l.conns.Add(-1)
			}
			p.quietSince = since
			l.live[p] = struct{}{}
			l.lmu.Unlock()
			select {
			case l.ready <- p:
			case <-l.closeq:
				p.Close()
			}
		}()
	}
}

// watch looks at every connection's message count twice per idle timeout,
// so that how long each has been silent is known to within half the
// timeout when room must be made, without a clock read per message.
func (l *listener) watch(idle time.Duration) {
	t := time.NewTicker(idle / 2)
	defer t.Stop()
	for {
		select {
		case <-l.closeq:
			return
		case now := <-t.C:
			l.lmu.Lock()
			l.observe(now)
			l.lmu.Unlock()
		}
	}
}

// observe notes, with lmu held, the connections that carried a message
// since the last look: silent since now at the most. (So a connection's
// silence is never overestimated: it is not closed for it too early.)
func (l *listener) observe(now time.Time) {
	for p := range l.live {
		if n := p.msgs.Load(); n != p.seen {
			p.seen, p.quietSince = n, now
		}
	}
}

// makeRoom closes the connection that has been silent the longest, if one
// has been silent past the idle timeout (a handshake under way counts as
// silent since it connected), and reports whether it closed one. Only at
// the cap: a member with nothing to say while there is room is left alone,
// since closing it would make its dialer reconnect, and calls fail
// meanwhile.
func (l *listener) makeRoom(lim *limits) bool {
	if lim.idleTimeout <= 0 {
		return false
	}
	now := time.Now()
	l.lmu.Lock()
	l.observe(now)
	since := now.Add(-lim.idleTimeout)
	var victim *pipe
	var conn net.Conn
	for p := range l.live {
		if p.quietSince.Before(since) {
			since, victim, conn = p.quietSince, p, p.conn
		}
	}
	for c, t := range l.pending {
		if t.Before(since) {
			since, victim, conn = t, nil, c
		}
	}
	if victim != nil {
		delete(l.live, victim) // not chosen twice
	} else if conn != nil {
		delete(l.pending, conn)
	}
	l.lmu.Unlock()
	if conn == nil {
		return false
	}
	if victim != nil {
		victim.Close() // mangos sees the pipe fail and drops it
	} else {
		conn.Close() // its handshake fails, and gives its slot back
	}
	lim.refused(RefusedIdle, refusal(conn, fmt.Errorf("silent for %v, closed to make room", now.Sub(since).Round(time.Millisecond))))
	return true
}

func (l *listener) Accept() (transport.Pipe, error) {
	l.lmu.Lock()
	listening := l.l != nil
	l.lmu.Unlock()
	if !listening { // nothing would ever come
		return nil, mangos.ErrClosed
	}
	select {
	case p := <-l.ready:
		return p, nil
	case <-l.closeq:
		return nil, mangos.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() {
		l.lmu.Lock()
		close(l.closeq)
		if l.l != nil {
			l.l.Close()
		}
		for c := range l.pending {
			c.Close()
		}
		l.lmu.Unlock()
	})
	return nil
}

func (l *listener) Address() string {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	if l.l != nil {
		return l.scheme + "://" + l.l.Addr().String()
	}
	return l.scheme + "://" + l.addr
}

// pipe is one established connection. mangos calls Send from one goroutine
// and Recv from another, never each concurrently with itself; nanobus also
// writes through OptionSend from any goroutine, and takes what Recv reads
// through OptionDeliver.
//
// Writes are batched: a sender appends its framed message to a buffer that
// the pipe's writer goroutine writes. Under load, messages pile up while a
// write is in the kernel, and the next write carries them all: one syscall
// for many messages, where a write per message spent most of the bus's CPU
// time. (Writing from the sender's own goroutine when no write is under
// way saves the hand-off but loses most batching: it measured slower.)
type pipe struct {
	conn net.Conn
	r    *bufio.Reader
	hdr  [8]byte // Recv's length scratch
	// msgs counts the messages received (not hellos or pings): a
	// listener tells silent connections by it, where a clock read per
	// message would cost more.
	msgs     atomic.Uint64
	lim      limits
	buffered *atomic.Int64 // the listener's, or nil
	tlsState *tls.ConnectionState
	reply    func([]byte) error // p.send, made once: handed to deliver with every message
	share    atomic.Int64       // the receiver's count for this pipe (see OptionDeliver)

	idleUntil time.Time // an accepted pipe's probation: its first frame is due by then
	deadline  bool      // a read deadline is set

	wmu     sync.Mutex
	wcond   *sync.Cond // signals the writer (more to write) and senders (room again)
	pending []byte     // framed messages waiting to be written
	count   uint64     // messages in pending
	spare   []byte     // the last written buffer, for reuse
	writing bool       // the writer has work: senders need not wake it
	werr    error      // the first write error; the pipe is dead after it
	closed  bool
	onClose func() // once, when the pipe closes (the listener's count)

	// An accepted pipe's, under the listener's lmu: msgs when last looked
	// at, and since when it has not changed.
	seen       uint64
	quietSince time.Time
}

// maxPending bounds the bytes waiting for the writer; Send blocks above it.
// The bus's in-flight bounds keep the message count far below mangos' write
// queue either way, so blocking here never makes mangos drop.
const maxPending = 1 << 20

// batchEnough is a write big enough not to wait for company.
const batchEnough = 16 << 10

func newPipe(c net.Conn, lim limits, buffered *atomic.Int64) *pipe {
	p := &pipe{conn: c, lim: lim, buffered: buffered}
	p.wcond = sync.NewCond(&p.wmu)
	p.reply = p.send
	return p
}

func (p *pipe) start() {
	p.r = bufio.NewReaderSize(p.conn, readBufferSize)
	go p.writer()
}

// Send writes m (mangos' send path), then frees it.
func (p *pipe) Send(m *mangos.Message) error {
	err := p.write(m.Header, m.Body)
	m.Free()
	return err
}

// send writes one message whose bytes are body (OptionSend's function).
// An empty body is a ping: the receiver drops it, and sending it makes a
// connection whose peer went silent fail within OptionPeerTimeout.
func (p *pipe) send(body []byte) error { return p.write(nil, body) }

func (p *pipe) write(header, body []byte) error {
	p.wmu.Lock()
	for p.werr == nil && !p.closed && len(p.pending) > maxPending {
		p.wcond.Wait()
	}
	if err := p.werr; err != nil || p.closed {
		p.wmu.Unlock()
		if err == nil {
			err = mangos.ErrClosed
		}
		return err
	}
	p.pending = binary.BigEndian.AppendUint64(p.pending, uint64(len(header)+len(body)))
	p.pending = append(append(p.pending, header...), body...)
	if len(header)+len(body) > 0 {
		p.count++ // an empty frame (a ping) is not a message: OptionWritten counts messages
	}
	if !p.writing { // wake the writer; otherwise the write under way takes ours along
		p.writing = true
		p.wcond.Broadcast()
	}
	p.wmu.Unlock()
	return nil
}

// flush writes what is pending, with wmu held (released during the
// write). It reports false if the pipe is dead.
func (p *pipe) flush() bool {
	buf, n := p.pending, p.count
	p.pending, p.count = p.spare[:0], 0
	p.wcond.Broadcast() // room for blocked senders
	p.wmu.Unlock()

	// A peer that stops reading must not hold this pipe forever: it
	// counts as lost, and calls on it fail instead of timing out.
	_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := p.conn.Write(buf)

	p.wmu.Lock()
	if cap(buf) <= 4*maxPending {
		p.spare = buf // do not keep a burst's buffer forever
	}
	if err != nil {
		p.werr = err
		p.writing = false
		p.wcond.Broadcast()
		p.done(n) // gone with the pipe
		p.dropPending()
		p.conn.Close() // the reader sees it too, and mangos drops the pipe
		return false
	}
	p.done(n)
	return true
}

// writer writes what senders append, while there is some.
func (p *pipe) writer() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	for {
		for !p.writing && !p.closed && p.werr == nil {
			p.wcond.Wait()
		}
		if p.closed || p.werr != nil {
			return
		}
		for len(p.pending) > 0 {
			if len(p.pending) < batchEnough {
				// Let goroutines that are about to send run first: under
				// load they add to this write.
				p.wmu.Unlock()
				runtime.Gosched()
				p.wmu.Lock()
			}
			if !p.flush() {
				return
			}
		}
		p.writing = false
	}
}

// Recv reads the next frame. An empty frame is a dialer's hello: it ends an
// accepted connection's probation and is not passed on. (SP allows empty
// messages; stock mangos peers never send one unasked, and a bus frame is
// never empty.)
func (p *pipe) Recv() (*mangos.Message, error) {
	for {
		m, err := p.recv()
		if err != nil || p.lim.deliver == nil || !p.lim.deliver(m, p.reply, &p.share) {
			return m, err
		}
	}
}

func (p *pipe) recv() (*mangos.Message, error) {
	var size uint64
	for size == 0 {
		if _, err := io.ReadFull(p.r, p.hdr[:]); err != nil {
			if !p.idleUntil.IsZero() && isTimeout(err) {
				p.lim.refused(RefusedIdle, refusal(p.conn, fmt.Errorf("no frame within %v of connecting", p.lim.idleTimeout)))
			}
			return nil, err
		}
		if !p.idleUntil.IsZero() {
			p.clearDeadline()
			p.idleUntil = time.Time{} // a member now: no idle limit
		}
		size = binary.BigEndian.Uint64(p.hdr[:])
	}
	if p.lim.maxRecv > 0 && size > uint64(p.lim.maxRecv) || size > math.MaxInt32 {
		p.lim.refused(RefusedTooLong, refusal(p.conn, fmt.Errorf("frame of %d bytes: %w", size, mangos.ErrTooLong)))
		return nil, mangos.ErrTooLong
	}
	// A frame not already in the buffer must arrive within the frame
	// timeout: a peer that announces a frame and stalls is cut.
	if p.lim.frameTimeout > 0 && uint64(p.r.Buffered()) < size {
		p.deadline = true
		_ = p.conn.SetReadDeadline(time.Now().Add(p.lim.frameTimeout))
	}
	m, err := p.readBody(int(size))
	if err != nil {
		if p.deadline && isTimeout(err) {
			p.lim.refused(RefusedFrameTimeout, refusal(p.conn, fmt.Errorf("a %d-byte frame not finished within %v", size, p.lim.frameTimeout)))
		}
		return nil, err
	}
	p.clearDeadline()
	p.msgs.Add(1)
	return m, nil
}

func (p *pipe) clearDeadline() {
	if p.deadline || !p.idleUntil.IsZero() {
		p.deadline = false
		_ = p.conn.SetReadDeadline(time.Time{})
	}
}

func (p *pipe) readBody(size int) (*mangos.Message, error) {
	if size <= recvChunk {
		m := mangos.NewMessage(size)
		m.Body = m.Body[:size]
		if _, err := io.ReadFull(p.r, m.Body); err != nil {
			m.Free()
			return nil, err
		}
		return m, nil
	}
	if p.buffered != nil && p.lim.maxBuffered > 0 {
		// A large frame takes its whole length from the budget before a
		// byte of it is read, then gets exactly that much memory, once:
		// what a peer can make us allocate is bounded by the budget, not
		// by the bytes it sends, and nothing is spent growing a buffer.
		if p.buffered.Add(int64(size)) > p.lim.maxBuffered {
			p.buffered.Add(-int64(size))
			p.lim.refused(RefusedBuffered, refusal(p.conn, fmt.Errorf("a %d-byte frame over the %d bytes for frames being read", size, p.lim.maxBuffered)))
			return nil, errBufferFull
		}
		defer p.buffered.Add(-int64(size))
		m := mangos.NewMessage(size) // above mangos' pooled sizes: a buffer of exactly size
		m.Body = m.Body[:size]
		if _, err := io.ReadFull(p.r, m.Body); err != nil {
			m.Free()
			return nil, err
		}
		return m, nil
	}
	// With no budget, a large frame is read a chunk at a time, growing the
	// buffer as bytes arrive: a peer that announces a large frame and
	// trickles must not get its length in memory up front.
	m := mangos.NewMessage(recvChunk)
	body := m.Body[:0]
	for left := size; left > 0; {
		n := min(left, recvChunk)
		body = slices.Grow(body, n)
		if _, err := io.ReadFull(p.r, body[len(body):len(body)+n]); err != nil {
			m.Free()
			return nil, err
		}
		body = body[:len(body)+n]
		left -= n
	}
	m.Body = body
	return m, nil
}

var errBufferFull = errors.New("bytes held for frames being read over the bound")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// done counts n messages the pipe is finished with (OptionWritten).
func (p *pipe) done(n uint64) {
	if p.lim.written != nil && n > 0 {
		p.lim.written.Add(n)
	}
}

// dropPending discards what waits to be written, counted as done: the pipe
// will not write it. Called with wmu held.
func (p *pipe) dropPending() {
	p.done(p.count)
	p.pending, p.count = p.pending[:0], 0
}

func (p *pipe) Close() error {
	p.wmu.Lock()
	already := p.closed
	p.closed = true
	p.dropPending()
	p.wcond.Broadcast()
	onClose := p.onClose
	p.wmu.Unlock()
	if !already && onClose != nil {
		onClose()
	}
	return p.conn.Close()
}

func (p *pipe) GetOption(name string) (any, error) {
	switch name {
	case OptionSend:
		return p.send, nil
	case mangos.OptionMaxRecvSize:
		return p.lim.maxRecv, nil
	case mangos.OptionLocalAddr:
		return p.conn.LocalAddr(), nil
	case mangos.OptionRemoteAddr:
		return p.conn.RemoteAddr(), nil
	case mangos.OptionTLSConnState:
		if p.tlsState != nil {
			return *p.tlsState, nil
		}
	}
	return nil, mangos.ErrBadOption
}
