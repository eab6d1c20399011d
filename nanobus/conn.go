package nanobus

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/xbus"

	"github.com/terminator-gw/terminator/nanobus/internal/busopt"
	"github.com/terminator-gw/terminator/wire"
)

// conn is this node's one dialed BUS socket to one remote node. A BUS socket
// sends every message to every pipe it has; a socket that only ever dials one
// address has exactly one pipe, so a send on it reaches that node and no
// other. It carries our calls to that node, and their answers back: an
// answer is taken only from the conn its call went out on.
type conn struct {
	node *Node
	addr string
	sock mangos.Socket

	// inflight counts our calls waiting on this conn; bounded by
	// Config.MaxInFlight, kept below the socket's write queue so that
	// mangos never drops a send for want of queue space.
	inflight atomic.Int64
	protocol atomic.Int32  // the wire protocol the peer announced
	ready    atomic.Bool   // a pipe is attached: a send now goes somewhere
	sent     atomic.Uint64 // messages handed to the socket
	written  atomic.Uint64 // messages the transport has written (see busopt.Written)
	lost     atomic.Uint64 // sent but gone with an earlier pipe: sent - written when a pipe attached
	qlen     uint64        // the socket's write queue length
	gen      atomic.Uint64
	// direct writes to the current pipe from the caller's goroutine (the
	// bus transport's OptionSend), sparing mangos' send queue and sender
	// goroutine; nil when the transport has none.
	direct atomic.Pointer[func([]byte) error]

	mu      sync.Mutex
	readyCh chan struct{}     // closed while ready; replaced when the pipe goes
	pipes   map[uint32]uint64 // attached pipe ID -> generation it started
	cur     uint32            // the pipe sends go to now
	early   map[uint32]bool   // pipes whose Detached came before their Attached
	refs    int               // services listing this conn as an instance (under Node.mu)
	closed  bool
}

func (n *Node) newConn(addr string) (*conn, error) {
	// Promise 8: a node on a TLS bus never dials in clear, whatever a
	// registry says, and a plain node cannot dial TLS.
	if tlsAddr := strings.HasPrefix(addr, "tls+tcp://"); tlsAddr != (n.cfg.TLS != nil) {
		n.stats.plainRefused.Add(1)
		if n.cfg.TLS != nil {
			return nil, fmt.Errorf("dial %s: the bus runs TLS; a plain peer is refused", addr)
		}
		return nil, fmt.Errorf("dial %s: a TLS peer, and this node has no bus TLS", addr)
	}
	sock, err := xbus.NewSocket()
	if err != nil {
		return nil, err
	}
	c := &conn{node: n, addr: addr, sock: sock, readyCh: make(chan struct{}), pipes: map[uint32]uint64{},
		early: map[uint32]bool{}, qlen: uint64(2*n.cfg.MaxInFlight + 64)}
	// The write queue length is fixed when a pipe is added, so it must be
	// set before dialing. It holds our calls (≤ MaxInFlight), a cancel or
	// a credit for each at most, and slack. (Replies to the peer's calls
	// go out on the connection it dialed, not on this one.)
	if err := sock.SetOption(mangos.OptionWriteQLen, int(c.qlen)); err != nil {
		sock.Close()
		return nil, err
	}
	_ = sock.SetOption(mangos.OptionMaxRecvSize, wire.MaxFrameSize) // answers
	sock.SetPipeEventHook(c.pipeEvent)
	opts := map[string]any{
		mangos.OptionDialAsynch:       true, // keep redialing in the background; a down peer is just not ready
		mangos.OptionReconnectTime:    50 * time.Millisecond,
		mangos.OptionMaxReconnectTime: 2 * time.Second,
	}
	if n.cfg.TLS != nil {
		opts[mangos.OptionTLSConfig] = clientTLS(n.cfg.TLS, addr)
	}
	opts[busopt.Written] = &c.written
	opts[busopt.FrameTimeout] = n.cfg.Limits.FrameTimeout
	opts[busopt.PeerTimeout] = n.cfg.Limits.PeerTimeout
	opts[busopt.Deliver] = c.deliver
	var d mangos.Dialer
	err = n.open(addr, func() (err error) {
		d, err = sock.NewDialer(addr, opts)
		return err
	})
	if err == nil {
		err = d.Dial()
	}
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return c, nil
}

func clientTLS(cfg *tls.Config, addr string) *tls.Config {
	c := cfg.Clone()
	if c.ServerName == "" {
		if u, err := url.Parse(addr); err == nil {
			if host, _, err := net.SplitHostPort(u.Host); err == nil {
				c.ServerName = host
			}
		}
	}
	return c
}

func (c *conn) pipeEvent(ev mangos.PipeEvent, p mangos.Pipe) {
	switch ev {
	case mangos.PipeEventAttached:
		c.mu.Lock()
		if c.early[p.ID()] { // already gone: mangos ran its Detached first
			delete(c.early, p.ID())
			c.mu.Unlock()
			return
		}
		// What the earlier pipes did not write is lost: flush must not
		// wait for it.
		if s, w := c.sent.Load(), c.written.Load(); s > w {
			c.lost.Store(s - w)
		}
		g := c.gen.Add(1)
		c.pipes[p.ID()] = g
		c.cur = p.ID()
		if v, err := p.GetOption(busopt.Send); err == nil {
			if send, ok := v.(func([]byte) error); ok {
				c.direct.Store(&send)
			}
		}
		if !c.ready.Load() {
			c.ready.Store(true)
			close(c.readyCh)
		}
		c.mu.Unlock()
	case mangos.PipeEventDetached:
		// mangos runs this hook in a goroutine of its own, so it may come
		// after the next pipe's Attached: only the current pipe's loss
		// makes the conn unready.
		c.mu.Lock()
		g, ok := c.pipes[p.ID()]
		if !ok {
			c.early[p.ID()] = true
		}
		delete(c.pipes, p.ID())
		if ok && p.ID() == c.cur && c.ready.Load() {
			c.ready.Store(false)
			c.direct.Store(nil)
			c.readyCh = make(chan struct{})
		}
		c.mu.Unlock()
		if ok {
			c.node.connLost(c, g)
		}
	}
}

// waitReady waits until a pipe is attached or the deadline passes. A
// message sent with no pipe attached goes nowhere (mangos returns nil).
func (c *conn) waitReady(deadline time.Time) bool {
	if c.ready.Load() {
		return true
	}
	c.mu.Lock()
	ch := c.readyCh
	c.mu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return c.ready.Load()
	}
}

// send hands m to the socket; mangos frees it once written. It refuses
// with ErrBusy when the socket's write queue could be full: mangos would
// drop the message without a word. (The in-flight bounds keep this from
// happening unless the peer stops reading.)
func (c *conn) send(m *mangos.Message) error {
	if c.queued() >= int64(c.qlen)-8 {
		m.Free()
		return ErrBusy
	}
	c.sent.Add(1)
	if send := c.direct.Load(); send != nil {
		err := (*send)(m.Body)
		m.Free()
		if err != nil {
			c.sent.Add(^uint64(0))
		}
		return err
	}
	if err := c.sock.SendMsg(m); err != nil {
		c.sent.Add(^uint64(0))
		m.Free()
		return err
	}
	return nil
}

// deliver takes what arrives on this conn: answers to our calls (replies,
// errors, the chunks and ends of streams). A request, cancel, credit or
// event has no business here (peers send theirs on the connections they
// dial). Event acks answer nothing this node sends yet: they are counted
// as unknown answers. A kind this node does not
// know is counted and dropped: answering it would reach the peer's
// listener, where no answer belongs.
func (c *conn) deliver(m *mangos.Message, _ func([]byte) error, _ *atomic.Int64) bool {
	n := c.node
	n.delivering.Add(1)
	defer n.delivering.Add(-1)
	kind, err := wire.KindOf(m.Body)
	switch {
	case n.closed.Load():
		m.Free()
	case err != nil && !errors.Is(err, wire.ErrKind):
		n.malformed(m, err)
	case kind == wire.KindReply:
		n.completeReply(c, m)
	case kind == wire.KindError:
		n.completeError(c, m)
	case err == nil && kind.Protocol() <= n.protocol && kind == wire.KindChunk:
		n.completeChunk(c, m)
	case err == nil && kind.Protocol() <= n.protocol && kind == wire.KindEnd:
		n.completeEnd(c, m)
	case err == nil && kind.Protocol() <= n.protocol && kind == wire.KindEventAck:
		n.unclaimed(m)
	case err == nil && kind.Protocol() > n.protocol, errors.Is(err, wire.ErrKind):
		n.stats.unknownKinds.Add(1)
		m.Free()
	default:
		n.misdirected(m, "a request on a connection this node dialed")
	}
	return true
}

// speaks reports whether the peer announced a protocol with frames of
// kind k: a node of before would not decode them.
func (c *conn) speaks(k wire.Kind) bool {
	p := k.Protocol()
	return p != 0 && p <= int(c.protocol.Load())
}

// queued is about how many messages wait in the socket's queues. The
// counters move while it reads them (written first: sent only grows), and
// lost is an estimate, so it can come out a little off, never far.
func (c *conn) queued() int64 {
	done := int64(c.written.Load() + c.lost.Load())
	return int64(c.sent.Load()) - done
}

func (c *conn) close() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if !already {
		_ = c.sock.Close()
	}
}
