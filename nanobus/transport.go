package nanobus

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/transport"
)

// The bus's own mangos transport for "tcp://" and "tls+tcp://", speaking
// the standard SP-over-TCP framing (an 8-byte SP header exchange, then each
// message as a 64-bit big-endian length and its bytes), so any SP peer
// interoperates. It replaces mangos' stock tcp and tls+tcp transports for
// three reasons:
//   - mangos v3.4.2's listener writes a pipe's state during the handshake
//     without the lock its Close reads it under: a data race whenever a node
//     closes while a peer is connecting, which fails `go test -race`.
//   - the stock pipe allocates on every message (a length buffer and
//     net.Buffers on send, binary.Read on receive) and makes a syscall per
//     message each way; this one reads through a buffer and batches writes
//     (see pipe), so a burst costs one syscall each way, and allocates
//     nothing.
//   - it counts what it has written, so a draining node can wait until
//     its last replies have left instead of cutting them off.
//
// Registering replaces mangos' transports for these schemes process-wide.
func init() {
	transport.RegisterTransport(tcpTransport{scheme: "tcp"})
	transport.RegisterTransport(tcpTransport{scheme: "tls+tcp", tls: true})
}

// optWritten is a dialer option: an *atomic.Uint64 its pipes add one to for
// each message written to the socket.
const optWritten = "NANOBUS-WRITTEN"

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
		pending:  map[net.Conn]struct{}{},
	}, nil
}

// endpoint holds what dialers and listeners share: options and the
// handshake.
type endpoint struct {
	addr    string
	tls     bool
	proto   mangos.ProtocolInfo
	mu      sync.Mutex
	config  *tls.Config
	maxRecv int
	written *atomic.Uint64
}

func (e *endpoint) SetOption(name string, v any) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch name {
	case mangos.OptionTLSConfig:
		c, ok := v.(*tls.Config)
		if !ok {
			return mangos.ErrBadValue
		}
		e.config = c
	case mangos.OptionMaxRecvSize:
		n, ok := v.(int)
		if !ok || n < 0 {
			return mangos.ErrBadValue
		}
		e.maxRecv = n
	case optWritten:
		w, ok := v.(*atomic.Uint64)
		if !ok {
			return mangos.ErrBadValue
		}
		e.written = w
	default:
		return mangos.ErrBadOption
	}
	return nil
}

func (e *endpoint) GetOption(name string) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch name {
	case mangos.OptionTLSConfig:
		return e.config, nil
	case mangos.OptionMaxRecvSize:
		return e.maxRecv, nil
	}
	return nil, mangos.ErrBadOption
}

// open runs the TLS handshake (when configured) and the SP handshake on c.
func (e *endpoint) open(c net.Conn, server bool) (*pipe, error) {
	e.mu.Lock()
	cfg, maxRecv, written := e.config, e.maxRecv, e.written
	e.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	p := newPipe(c, maxRecv, written)
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
		return nil, err
	}
	switch {
	case h[0] != 0 || h[1] != 'S' || h[2] != 'P' || h[6] != 0 || h[7] != 0:
		p.conn.Close()
		return nil, mangos.ErrBadHeader
	case h[3] != 0:
		p.conn.Close()
		return nil, mangos.ErrBadVersion
	case binary.BigEndian.Uint16(h[4:]) != e.proto.Peer:
		p.conn.Close()
		return nil, mangos.ErrBadProto
	}
	_ = c.SetDeadline(time.Time{})
	p.start()
	return p, nil
}

type dialer struct {
	endpoint
}

func (d *dialer) Dial() (transport.Pipe, error) {
	nd := net.Dialer{Timeout: handshakeTimeout, KeepAlive: 30 * time.Second}
	c, err := nd.Dial("tcp", d.addr)
	if err != nil {
		return nil, err
	}
	return d.open(c, false)
}

type listener struct {
	endpoint
	scheme string
	ready  chan *pipe
	closeq chan struct{}
	once   sync.Once

	lmu     sync.Mutex
	l       net.Listener
	pending map[net.Conn]struct{} // accepted, still handshaking
}

func (l *listener) Listen() error {
	lc := net.ListenConfig{KeepAlive: 30 * time.Second}
	ln, err := lc.Listen(context.Background(), "tcp", l.addr)
	if err != nil {
		return err
	}
	l.lmu.Lock()
	l.l = ln
	l.lmu.Unlock()
	go l.accept(ln)
	return nil
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
		l.lmu.Lock()
		select {
		case <-l.closeq:
			l.lmu.Unlock()
			c.Close()
			return
		default:
		}
		l.pending[c] = struct{}{}
		l.lmu.Unlock()
		// Handshake off the accept loop: a slow or silent client must not
		// hold up the others.
		go func() {
			p, err := l.open(c, true)
			l.lmu.Lock()
			delete(l.pending, c)
			l.lmu.Unlock()
			if err != nil {
				return
			}
			select {
			case l.ready <- p:
			case <-l.closeq:
				p.Close()
			}
		}()
	}
}

func (l *listener) Accept() (transport.Pipe, error) {
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
// and Recv from another, never each concurrently with itself.
//
// Send does not write: it appends the message to a buffer that a writer
// goroutine flushes. Under load, messages pile up while a write is in the
// kernel, and the next write carries them all: one syscall for many
// messages, where a write per message spent most of the bus's CPU time. At
// low load the writer is idle and wakes at once, so nothing waits for a
// batch to fill.
type pipe struct {
	conn     net.Conn
	r        *bufio.Reader
	hdr      [8]byte // Recv's length scratch
	maxRecv  int
	written  *atomic.Uint64
	tlsState *tls.ConnectionState

	wmu     sync.Mutex
	wcond   *sync.Cond // signals the writer (more to write) and Send (room again)
	pending []byte     // framed messages waiting for the writer
	count   uint64     // messages in pending
	werr    error      // the writer's first error; the pipe is dead after it
	closed  bool
}

// maxPending bounds the bytes waiting for the writer; Send blocks above it.
// The bus's in-flight bounds keep the message count far below mangos' write
// queue either way, so blocking here never makes mangos drop.
const maxPending = 1 << 20

// batchEnough is a write big enough not to wait for company.
const batchEnough = 16 << 10

func newPipe(c net.Conn, maxRecv int, written *atomic.Uint64) *pipe {
	p := &pipe{conn: c, maxRecv: maxRecv, written: written}
	p.wcond = sync.NewCond(&p.wmu)
	return p
}

func (p *pipe) start() {
	p.r = bufio.NewReaderSize(p.conn, readBufferSize)
	go p.writer()
}

func (p *pipe) Send(m *mangos.Message) error {
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
	p.pending = binary.BigEndian.AppendUint64(p.pending, uint64(len(m.Header)+len(m.Body)))
	p.pending = append(append(p.pending, m.Header...), m.Body...)
	p.count++
	p.wcond.Broadcast()
	p.wmu.Unlock()
	m.Free()
	return nil
}

func (p *pipe) writer() {
	var buf []byte
	for {
		p.wmu.Lock()
		for len(p.pending) == 0 && !p.closed {
			p.wcond.Wait()
		}
		if p.closed {
			p.wmu.Unlock()
			return
		}
		if len(p.pending) < batchEnough {
			// Let goroutines that are about to send run first: under load
			// they add to this write; when idle, Gosched returns at once.
			p.wmu.Unlock()
			runtime.Gosched()
			p.wmu.Lock()
		}
		buf, p.pending = p.pending, buf[:0]
		n := p.count
		p.count = 0
		p.wcond.Broadcast() // room for blocked senders
		p.wmu.Unlock()

		// A peer that stops reading must not hold this pipe forever: it
		// counts as lost, and calls on it fail instead of timing out.
		_ = p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := p.conn.Write(buf); err != nil {
			p.wmu.Lock()
			p.werr = err
			p.wcond.Broadcast()
			p.wmu.Unlock()
			p.conn.Close() // the receiver sees it too, and mangos drops the pipe
			return
		}
		if p.written != nil {
			p.written.Add(n)
		}
		if cap(buf) > 4*maxPending {
			buf = nil // do not keep a burst's buffer forever
		}
	}
}

func (p *pipe) Recv() (*mangos.Message, error) {
	if _, err := io.ReadFull(p.r, p.hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint64(p.hdr[:])
	if p.maxRecv > 0 && size > uint64(p.maxRecv) || size > math.MaxInt32 {
		return nil, mangos.ErrTooLong
	}
	if size <= recvChunk {
		m := mangos.NewMessage(int(size))
		m.Body = m.Body[:size]
		if _, err := io.ReadFull(p.r, m.Body); err != nil {
			m.Free()
			return nil, err
		}
		return m, nil
	}
	// A large frame is read a chunk at a time, growing the buffer as bytes
	// arrive: a peer that announces 16 MiB and trickles must not get 16 MiB
	// of our memory up front.
	m := mangos.NewMessage(recvChunk)
	body := m.Body[:0]
	for left := int(size); left > 0; {
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

func (p *pipe) Close() error {
	p.wmu.Lock()
	p.closed = true
	p.wcond.Broadcast()
	p.wmu.Unlock()
	return p.conn.Close()
}

func (p *pipe) GetOption(name string) (any, error) {
	switch name {
	case mangos.OptionMaxRecvSize:
		return p.maxRecv, nil
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
