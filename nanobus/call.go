package nanobus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.nanomsg.org/mangos/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/wire"
)

// Response is a reply to a call. Header and Body are views into the
// received frame: valid until Release, which returns the frame to its pool.
type Response struct {
	Status  int
	Header  wire.Headers
	Body    []byte
	Version string // the version of the instance that answered
	msg     *mangos.Message
}

var responsePool = sync.Pool{New: func() any { return new(Response) }}

// Release gives the response's memory back. Do not touch it afterwards.
func (r *Response) Release() {
	if r == nil {
		return
	}
	r.msg.Free()
	*r = Response{}
	responsePool.Put(r)
}

// call is one request waiting for its reply.
type call struct {
	seq   uint64
	conn  *conn
	gen   uint64        // the conn's pipe generation when sent
	done  chan struct{} // gets one value, from whoever took the call out of pending
	timer *time.Timer   // fires at the deadline
	resp  *Response
	err   error

	// A stream call's chunks, in order, up to its credit; nil for a plain
	// call. pushed counts the chunks that came (under pending's lock),
	// allowed the credit the reader gave (the first window and every credit
	// frame since); ended is the chunk count its end frame gave.
	chunks  chan *mangos.Message
	pushed  uint32
	allowed atomic.Uint32
	ended   uint32
}

// Calls are pooled with their channel and timer: a round trip then
// allocates neither. (Since Go 1.23, a stopped timer delivers no stale tick.)
var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &call{done: make(chan struct{}, 1), timer: t}
}}

// finish completes the call. Only the one who took it out of pending calls
// it, so it runs once per call.
func (c *call) finish(r *Response, err error) {
	c.resp, c.err = r, err
	c.done <- struct{}{}
}

// Call sends body to the handler for route on one instance of service and
// waits for the reply until ctx ends (without a deadline in ctx: the
// route's declared Timeout, else Config.Timeout). Release the response
// when done with it.
func (n *Node) Call(ctx context.Context, service, route string, body []byte) (*Response, error) {
	// A pooled Pending, as Go's: the headers a call inherits (the request
	// ID) reuse its buffer.
	return n.Go(ctx, service, route, body).Wait()
}

// readOnlyBytes views s as bytes without copying. The encoder only reads
// them; nothing may write through the slice.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Do is Call with the whole request: the terminator uses it to send HTTP
// method, path, headers and the rest. Do fills in req's ID, Deadline, From
// and Service, and, called in a handler, the request ID header of the
// request being handled, unless req has one (into a copy of req.Header
// when it has headers already). A request whose peer is lost before the reply is retried
// once on another instance when its route is idempotent (as the instance
// declared it; a public GET or HEAD unless declared otherwise), and so is
// any request an instance refused because it is shutting down. Without a
// deadline in ctx, the route's declared Timeout applies, else
// Config.Timeout.
func (n *Node) Do(ctx context.Context, service string, req *wire.Request) (*Response, error) {
	var p Pending
	n.start(ctx, service, req, &p)
	return p.finish(req)
}

// Go sends a call as Call does and returns at once; Wait returns its
// reply. A handler that needs several independent answers starts each
// with Go, then waits for each: they run at once, with no goroutine each.
// body and route must stay as they are until Wait returns.
func (n *Node) Go(ctx context.Context, service, route string, body []byte) *Pending {
	p := pendingPool.Get().(*Pending)
	h := p.req.Header // its buffer is kept (see Wait)
	h.Reset()
	p.req = wire.Request{Route: readOnlyBytes(route), Body: body, Header: h}
	n.start(ctx, service, &p.req, p)
	return p
}

// Pending is a call on its way (see Go).
type Pending struct {
	node     *Node
	ctx      context.Context
	service  string
	req      wire.Request // Go's request; Do's is the caller's
	in       *instance    // where it went; nil if it did not
	deadline time.Time
	sent     time.Time
	ghost    *ghostCall
	cl       *call
	err      error
	span     trace.Span // the call's client span; nil without tracing
}

var pendingPool = sync.Pool{New: func() any { return new(Pending) }}

// Wait waits for the reply of a call Go started, until the call's
// deadline. Call it once: the Pending is not to be used after.
func (p *Pending) Wait() (*Response, error) {
	resp, err := p.finish(&p.req)
	h := p.req.Header
	*p = Pending{}
	p.req.Header = h // it owns its buffer, which the next call reuses
	pendingPool.Put(p)
	return resp, err
}

// start sends req to one instance of service and records what finish
// needs in p (an error, if it did not go out).
func (n *Node) start(ctx context.Context, service string, req *wire.Request, p *Pending) {
	p.node, p.ctx, p.service = n, ctx, service
	if n.closed.Load() {
		p.err = ErrClosed
		return
	}
	if err := ctx.Err(); err != nil {
		if err == context.DeadlineExceeded {
			err = ErrDeadline
		}
		p.err = err
		return
	}
	if hc := handlerContextOf(ctx); hc != nil {
		hc.inherit(req) // calls made for a request carry its labels, its ghost mark and its trace
	}
	in, svc, err := n.pick(service, nil, req.Labels)
	if err != nil {
		if n.tracer != nil { // a call that went nowhere is a span too
			endClientSpan(n.startClientSpan(ctx, service, req, nil), nil, nil, err, false)
		}
		p.err = err
		return
	}
	p.in = in
	if n.tracer != nil {
		p.span = n.startClientSpan(ctx, service, req, in)
	}
	now := time.Now() // one reading for the deadline and the send: a reading costs 60-100 ns on a VM
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = now.Add(in.timeout(req.Route, n.cfg.Timeout))
	}
	p.deadline = deadline
	req.Service = readOnlyBytes(service)
	req.Deadline = deadline.UnixNano()
	req.From = n.from
	p.ghost = n.ghost(svc, service, in, req, deadline) // nil unless a copy goes to a ghost version
	p.sent = now
	p.cl, p.err = n.dispatch(in.conn, req)
}

// finish waits for the answer to what start sent, retries once elsewhere
// when the request surely did not run (the instance is draining) or may
// have run but is safe to repeat, and counts the call.
func (p *Pending) finish(req *wire.Request) (*Response, error) {
	n, in := p.node, p.in
	if in == nil {
		p.logFailure(req, p.err, 0)
		return nil, p.err // it did not go out: nothing to count
	}
	resp, err := (*Response)(nil), p.err
	h := in.hedges[string(req.Route)] // nil unless the route hedges
	if p.cl != nil {
		delay := time.Duration(0)
		if h != nil {
			delay = h.delay(in.routes[string(req.Route)].HedgeAfter)
		}
		if delay > 0 {
			resp, err, in = p.hedge(h, delay, req)
		} else {
			resp, err = n.await(p.ctx, p.cl, p.deadline)
		}
	}
	p.in.conn.inflight.Add(-1)
	retried := false
	if errors.Is(err, ErrUnavailable) || err == ErrPeerLost && in.idempotent(req) {
		// A retry goes out while the budget lasts: instances that keep
		// failing are not sent every call twice.
		if !in.budget.allow() && err == ErrPeerLost {
			n.stats.throttled.Add(1)
		} else if in2, _, perr := n.pick(p.service, in.conn, req.Labels); perr == nil {
			n.stats.retries.Add(1)
			in, retried = in2, true
			resp, err = n.roundTrip(p.ctx, in.conn, req, p.deadline)
		}
	}
	took := time.Since(p.sent)
	status := 0
	if err == nil {
		status = resp.Status
		resp.Version = in.version
	}
	in.stats.record(took, status)
	if err != context.Canceled {
		in.budget.outcome(status == 0 || status >= 500)
		if h != nil {
			h.record(took, time.Now())
		}
	}
	if p.ghost != nil {
		p.ghost.live(resp, err, took)
	}
	if err != nil {
		p.logFailure(req, err, took)
	}
	if p.span != nil {
		endClientSpan(p.span, in, resp, err, retried)
	}
	return resp, err
}

// logFailure logs a call made while handling a request that failed (no
// instance, busy, deadline, peer lost...), with the request's ID: the
// cause of the 5xx its handler may answer. The front's own calls are in
// its access log; a cancelled call (the client left, a hedge lost) is no
// failure.
func (p *Pending) logFailure(req *wire.Request, err error, took time.Duration) {
	if errors.Is(err, context.Canceled) || handlerContextOf(p.ctx) == nil || !p.node.logsFailure(slog.LevelWarn) {
		return
	}
	p.node.requestLog(slog.LevelWarn, "call failed", req, slog.String("service", p.service),
		slog.String("err", err.Error()), slog.Duration("took", took))
}

// roundTrip sends req on c, whose in-flight slot the caller holds, and
// waits for the reply. It gives the slot back.
func (n *Node) roundTrip(ctx context.Context, c *conn, req *wire.Request, deadline time.Time) (*Response, error) {
	defer c.inflight.Add(-1)
	cl, err := n.dispatch(c, req)
	if err != nil {
		return nil, err
	}
	return n.await(ctx, cl, deadline)
}

// dispatch encodes req with a new correlation ID and hands it to c. The
// returned call waits in pending for its answer (see await).
func (n *Node) dispatch(c *conn, req *wire.Request) (*call, error) {
	return n.dispatchCall(c, req, nil)
}

// dispatchStream is dispatch for a stream call: its chunks will queue up
// to the stream's first credit.
func (n *Node) dispatchStream(c *conn, req *wire.Request) (*call, error) {
	return n.dispatchCall(c, req, make(chan *mangos.Message, streamWindow))
}

func (n *Node) dispatchCall(c *conn, req *wire.Request, chunks chan *mangos.Message) (*call, error) {
	cl := callPool.Get().(*call)
	cl.chunks = chunks
	cl.allowed.Store(uint32(cap(chunks)))
	cl.seq = n.nextSeq()
	cl.conn = c
	cl.gen = c.gen.Load()
	req.ID = wire.ID{Node: n.id, Seq: cl.seq}

	m := mangos.NewMessage(req.Size())
	var err error
	if m.Body, err = wire.AppendRequest(m.Body[:0], req); err != nil {
		m.Free()
		n.recycle(cl)
		return nil, fmt.Errorf("encode request: %w", err)
	}
	// Register before checking readiness: a pipe lost after this check
	// finds the call in pending and fails it, so none waits in vain.
	n.pending.add(cl)
	if !c.ready.Load() {
		m.Free()
		return nil, n.abandon(cl, ErrPeerLost)
	}
	if err := c.send(m); err == ErrBusy {
		return nil, n.abandon(cl, ErrBusy)
	}
	// Any other error is a closed socket, whose pipe-loss handler fails
	// the call.
	n.stats.calls.Add(1)
	return cl, nil
}

// abandon takes back a call whose request did not go out, and returns why
// it failed: why, or what the pipe-loss handler said if it got there first.
func (n *Node) abandon(cl *call, why error) error {
	if n.pending.take(cl.seq) != cl {
		<-cl.done // the pipe-loss handler (or Close) failed it already
		why = cl.err
	}
	n.recycle(cl)
	switch why {
	case ErrPeerLost:
		n.stats.peerLost.Add(1)
	case ErrBusy:
		n.stats.busy.Add(1)
	}
	return why
}

// await waits for the answer to cl until the deadline, or until ctx is
// cancelled.
func (n *Node) await(ctx context.Context, cl *call, deadline time.Time) (*Response, error) {
	resp, err, _ := n.wait(ctx, cl, nil, deadline, time.Time{})
	return resp, err
}

// errPatience is wait's word for "no answer yet, and the calls still wait".
var errPatience = errors.New("nanobus: no answer yet")

// wait waits for the first answer to a, or to b, a hedged copy of it when
// not nil, until the deadline or until ctx is cancelled; with patience set,
// only until then, returning errPatience with the calls still waiting. It
// returns the answer and which call gave it (0: a, 1: b); the other call
// is cancelled, and both are given back to their pool.
func (n *Node) wait(ctx context.Context, a, b *call, deadline, patience time.Time) (*Response, error, int) {
	n.stats.inFlight.Add(1)
	defer n.stats.inFlight.Add(-1)
	calls := [2]*call{a, b}
	// The timer enforces the deadline. A handler's context (or one
	// narrowed from it) cancels the calls made with it directly (watch),
	// so they need no Done channel, which would cost it a timer; any
	// other context is watched through Done.
	var cancelled <-chan struct{}
	hc := watcher(ctx)
	if hc == nil {
		cancelled = ctx.Done()
	}
	for _, cl := range calls {
		if cl != nil && hc != nil && !hc.watch(cl.seq) {
			n.cancelCall(cl.seq) // cancelled before it could be watched
		}
	}
	var hedge <-chan time.Time
	if !patience.IsZero() {
		t := hedgeTimers.Get().(*time.Timer)
		t.Reset(time.Until(patience))
		defer func() { t.Stop(); hedgeTimers.Put(t) }()
		hedge = t.C
	}
	var bDone <-chan struct{}
	if b != nil {
		bDone = b.done
	}
	won, gaveUp := 0, error(nil)
	answered := false
	if b == nil {
		// An answer already in (a call waited on after other work, as the
		// page's second call is) needs no timer armed and stopped.
		select {
		case <-a.done:
			answered = true
		default:
		}
	}
	if !answered {
		a.timer.Reset(time.Until(deadline))
		select {
		case <-a.done:
		case <-bDone:
			won = 1
		case <-a.timer.C:
			gaveUp = ErrDeadline
		case <-cancelled:
			gaveUp = ctx.Err()
			if gaveUp == context.DeadlineExceeded {
				gaveUp = ErrDeadline
			}
		case <-hedge:
			gaveUp = errPatience
		}
		a.timer.Stop()
	}
	if hc != nil {
		for _, cl := range calls {
			if cl != nil {
				hc.unwatch(cl.seq)
			}
		}
	}
	if gaveUp == errPatience {
		return nil, errPatience, 0 // the calls wait on
	}
	if gaveUp != nil {
		// Take both back; one answered meanwhile is used.
		won = -1
		for i, cl := range calls {
			if cl == nil {
				continue
			}
			if n.pending.take(cl.seq) == cl {
				if gaveUp != ErrDeadline {
					n.sendCancel(cl.conn, cl.seq) // the instance stops; at the deadline it stops by itself
				}
				n.recycle(cl)
				calls[i] = nil
			} else if won < 0 {
				<-cl.done
				won = i
			} else {
				<-cl.done // both answered: the second is dropped
				cl.resp.Release()
				n.recycle(cl)
				calls[i] = nil
			}
		}
		if won < 0 {
			switch gaveUp {
			case ErrDeadline:
				n.stats.timeouts.Add(1)
			default:
				n.stats.cancelled.Add(1)
			}
			return nil, gaveUp, 0
		}
	}
	if other := calls[1-won]; other != nil {
		// The loser of a hedge: cancelled at the instance, or, if its
		// answer came meanwhile, dropped.
		if n.pending.take(other.seq) == other {
			n.sendCancel(other.conn, other.seq)
		} else {
			<-other.done
			other.resp.Release()
		}
		n.recycle(other)
	}
	cl := calls[won]
	resp, err := cl.resp, cl.err
	n.recycle(cl)
	switch err {
	case nil:
		n.stats.replies.Add(1)
	case ErrPeerLost:
		n.stats.peerLost.Add(1)
	case context.Canceled:
		n.stats.cancelled.Add(1)
	}
	return resp, err, won
}

var hedgeTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// recycle gives a finished call back to its pool.
func (n *Node) recycle(cl *call) {
	cl.resp, cl.err, cl.conn, cl.chunks, cl.ended, cl.pushed = nil, nil, nil, nil, 0, 0
	cl.allowed.Store(0)
	callPool.Put(cl)
}

// cancelCall cancels the call seq if it still waits: its waiter gets
// context.Canceled, and the instance a cancel frame, so that its handler
// stops too.
func (n *Node) cancelCall(seq uint64) {
	cl := n.pending.take(seq)
	if cl == nil {
		return // answered, or given up, already
	}
	c := cl.conn
	cl.finish(nil, context.Canceled)
	n.sendCancel(c, seq)
}

// sendCancel tells the instance at c to stop the call seq, if it knows
// cancel frames. It is a hint: a cancel that cannot go out is dropped (the
// deadline still bounds the work), and the call is over either way.
func (n *Node) sendCancel(c *conn, seq uint64) {
	if !c.speaks(wire.KindCancel) || !c.ready.Load() {
		return
	}
	f := wire.Cancel{ID: wire.ID{Node: n.id, Seq: seq}}
	m := mangos.NewMessage(f.Size())
	m.Body, _ = wire.AppendCancel(m.Body[:0], &f)
	if c.send(m) == nil {
		n.stats.cancelsSent.Add(1)
	}
}

// nextSeq is a new call's sequence number: a counter in the high half, so
// that it is unique, and random bits in the low half, so that no peer can
// guess the ID of a call it was not sent. (The high half of an ID, the
// node's incarnation, is no secret: it is in every request.)
func (n *Node) nextSeq() uint64 {
	return n.seq.Add(1)<<32 | uint64(rand.Uint32())
}

// completeReply hands a reply frame that arrived on c to the call waiting
// for it.
func (n *Node) completeReply(c *conn, m *mangos.Message) {
	r := responsePool.Get().(*Response)
	var rep wire.Reply
	if err := wire.DecodeReply(m.Body, &rep); err != nil {
		responsePool.Put(r)
		n.malformed(m, err)
		return
	}
	cl := n.claim(c, rep.ID)
	if cl == nil {
		responsePool.Put(r)
		m.Free()
		return
	}
	r.Status, r.Header, r.Body, r.msg = rep.Status, rep.Header, rep.Body, m
	cl.finish(r, nil)
}

// completeError fails the call an error frame that arrived on c answers.
func (n *Node) completeError(c *conn, m *mangos.Message) {
	var e wire.Error
	err := wire.DecodeError(m.Body, &e)
	if err != nil {
		n.malformed(m, err)
		return
	}
	cl := n.claim(c, e.ID)
	if cl != nil {
		n.stats.refused.Add(1)
		base, ok := codeErrors[e.Code]
		if !ok {
			base = ErrMalformed
		}
		cl.finish(nil, fmt.Errorf("%w: %s", base, e.Message))
	}
	m.Free()
}

// unclaimed takes an event ack: no call of this node waits for one yet.
// It is checked, then counted as stale or unknown, as a reply for no call
// is.
func (n *Node) unclaimed(m *mangos.Message) {
	var a wire.EventAck
	if err := wire.DecodeEventAck(m.Body, &a); err != nil {
		n.malformed(m, err)
		return
	}
	m.Free()
	if a.ID.Node != n.id {
		n.stats.staleReplies.Add(1)
	} else {
		n.stats.unknownReplies.Add(1)
	}
}

// completeChunk queues a chunk that arrived on c for the stream call it
// belongs to. An instance that sends past the credit it was given breaks
// the stream: the call fails as malformed.
func (n *Node) completeChunk(c *conn, m *mangos.Message) {
	var ch wire.Chunk
	if err := wire.DecodeChunk(m.Body, &ch); err != nil {
		n.malformed(m, err)
		return
	}
	if ch.ID.Node != n.id {
		n.stats.staleReplies.Add(1)
		m.Free()
		return
	}
	switch n.pending.push(c, ch.ID.Seq, m) {
	case pushed:
	case pushOther:
		n.stats.misdirected.Add(1)
		m.Free()
	case pushFull:
		n.stats.malformed.Add(1)
		m.Free()
		if cl, _ := n.pending.takeFrom(c, ch.ID.Seq); cl != nil {
			cl.finish(nil, fmt.Errorf("%w: the stream sent past its credit", ErrMalformed))
		}
	default:
		n.stats.lateReplies.Add(1) // a stream given up, or a chunk for a plain call
		m.Free()
	}
}

// completeEnd ends the stream call an end frame that arrived on c closes.
func (n *Node) completeEnd(c *conn, m *mangos.Message) {
	var e wire.End
	err := wire.DecodeEnd(m.Body, &e)
	if err != nil {
		n.malformed(m, err)
		return
	}
	if cl := n.claim(c, e.ID); cl != nil {
		cl.ended = e.Chunks
		err = errStreamEnd
		if e.Status != 0 {
			err = &StatusError{Status: e.Status, Message: string(e.Message)}
		}
		cl.finish(nil, err)
	}
	m.Free()
}

// claim takes the call an answer that arrived on c is for out of pending,
// counting answers that match none. Only the conn the call went out on can
// answer it: an answer naming another conn's call is dropped, and the call
// waits on.
func (n *Node) claim(c *conn, id wire.ID) *call {
	if id.Node != n.id {
		n.stats.staleReplies.Add(1)
		return nil
	}
	cl, other := n.pending.takeFrom(c, id.Seq)
	if other {
		n.stats.misdirected.Add(1)
		warnSometimes(&n.badLog, n.log, "answer dropped: it came on another connection than its call", "from", c.addr)
		return nil
	}
	if cl == nil {
		if id.Seq>>32 <= n.seq.Load() {
			n.stats.lateReplies.Add(1)
		} else {
			n.stats.unknownReplies.Add(1)
		}
	}
	return cl
}

// pendingCalls maps sequence numbers to waiting calls, sharded so that
// concurrent callers and the receivers rarely share a lock.
type pendingCalls struct {
	shards [64]struct {
		sync.Mutex
		m map[uint64]*call
		_ [48]byte // with the mutex and the map pointer, a cache line: shards do not share one
	}
}

func (p *pendingCalls) add(c *call) {
	s := &p.shards[c.seq%64]
	s.Lock()
	if s.m == nil {
		s.m = make(map[uint64]*call)
	}
	s.m[c.seq] = c
	s.Unlock()
}

func (p *pendingCalls) take(seq uint64) *call {
	s := &p.shards[seq%64]
	s.Lock()
	c := s.m[seq]
	if c != nil {
		delete(s.m, seq)
	}
	s.Unlock()
	return c
}

// takeConn takes every call sent on conn at pipe generation gen or earlier.
// takeFrom takes the call seq if it went out on c; other reports a call
// seq that went out on another conn, which it leaves.
func (p *pendingCalls) takeFrom(c *conn, seq uint64) (cl *call, other bool) {
	s := &p.shards[seq%64]
	s.Lock()
	cl = s.m[seq]
	switch {
	case cl == nil:
	case cl.conn != c:
		cl, other = nil, true
	default:
		delete(s.m, seq)
	}
	s.Unlock()
	return cl, other
}

// What push did with a chunk.
const (
	pushNone  = iota // no call seq waits
	pushed           // queued for its stream
	pushOther        // call seq went out on another conn: left alone
	pushFull         // past the stream's credit: its instance broke the rule
)

// push queues m for the stream call seq, if it went out on c.
func (p *pendingCalls) push(c *conn, seq uint64, m *mangos.Message) int {
	s := &p.shards[seq%64]
	s.Lock()
	defer s.Unlock()
	cl := s.m[seq]
	switch {
	case cl == nil || cl.chunks == nil:
		return pushNone
	case cl.conn != c:
		return pushOther
	}
	if cl.pushed >= cl.allowed.Load() {
		return pushFull
	}
	cl.pushed++
	// Within the credit, the queue has room: the reader grants only what
	// it has taken out, so at most the first window waits in it.
	cl.chunks <- m
	return pushed
}

func (p *pendingCalls) takeConn(conn *conn, gen uint64) []*call {
	var out []*call
	for i := range p.shards {
		s := &p.shards[i]
		s.Lock()
		for seq, c := range s.m {
			if c.conn == conn && c.gen <= gen {
				out = append(out, c)
				delete(s.m, seq)
			}
		}
		s.Unlock()
	}
	return out
}

func (p *pendingCalls) takeAll() []*call {
	var out []*call
	for i := range p.shards {
		s := &p.shards[i]
		s.Lock()
		for seq, c := range s.m {
			out = append(out, c)
			delete(s.m, seq)
		}
		s.Unlock()
	}
	return out
}

// deadlineOf is the absolute deadline a request carries, or zero.
func deadlineOf(req *wire.Request) time.Time {
	if req.Deadline == 0 {
		return time.Time{}
	}
	return time.Unix(0, req.Deadline)
}
