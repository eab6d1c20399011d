package nanobus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"go.nanomsg.org/mangos/v3"

	"github.com/terminator-gw/terminator/wire"
)

// A stream answers one call with a sequence of chunks: the head (status
// and headers), then each Send, then an end frame. The asker grants credit
// in chunks (streamWindow to start with, more as it reads), so a handler
// that sends faster than its asker reads waits in Send instead of filling
// buffers.

// streamWindow is the credit a stream starts with, in chunks (the head
// included); the asker grants half of it again each time it has read that
// many.
const streamWindow = 16

// maxCredit bounds the credit an instance keeps for one stream, whatever
// an asker grants.
const maxCredit = 1 << 16

// StreamHandler answers one call with a stream of chunks written with w.
// ctx ends when the asker cancels (or goes away), at the request's
// deadline, or when the node closes; Send then fails. Returning nil ends
// the stream complete; returning an error ends it with the status that
// error means (see StatusOf), or, when nothing was sent yet, answers with
// that status alone, as a Handler's error would.
type StreamHandler func(ctx context.Context, req *Request, w *StreamWriter) error

// HandleStream registers a stream route: h answers each call to it with a
// stream of chunks, which callers read with Node.Stream. A plain call to
// it (Call, Do) is answered 400.
func (n *Node) HandleStream(name string, h StreamHandler, opts ...RouteOption) error {
	if h == nil {
		return fmt.Errorf("route %q: nil handler", name)
	}
	return n.handle(name, &route{stream: h}, append(opts, func(r *Route) { r.Stream = true }))
}

// StreamWriter writes one stream's chunks.
type StreamWriter struct {
	// Status and Header are the stream's head, sent before the first
	// chunk: set them before the first Send. Status 0 means 200.
	Status int
	Header wire.Headers

	node   *Node
	reply  func([]byte) error
	id     wire.ID
	ctx    *handlerContext
	sent   uint32
	credit atomic.Int64
	wake   chan struct{} // a credit came
}

func (n *Node) newStreamWriter(j job, req *Request, ctx *handlerContext) *StreamWriter {
	w := &StreamWriter{node: n, reply: j.reply, id: req.ID, ctx: ctx, wake: make(chan struct{}, 1)}
	w.credit.Store(int64(min(wire.StreamCredit(&req.Request), maxCredit)))
	ctx.stream.Store(w)
	return w
}

// Send sends one chunk: header (e.g. an SSE event's id and type; may be
// empty) and body. It waits while the asker's credit is spent, and fails
// when the stream's context ends or the asker's connection is gone.
func (w *StreamWriter) Send(header wire.Headers, body []byte) error {
	if w.sent == 0 {
		if err := w.write(&wire.Chunk{ID: w.id, Status: w.head(), Header: w.Header}); err != nil {
			return err
		}
	}
	return w.write(&wire.Chunk{ID: w.id, Index: w.sent, Header: header, Body: body})
}

func (w *StreamWriter) head() int {
	if w.Status == 0 {
		return 200
	}
	return w.Status
}

// write sends c once the credit allows.
func (w *StreamWriter) write(c *wire.Chunk) error {
	for w.credit.Load() <= 0 {
		select {
		case <-w.wake:
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	m := mangos.NewMessage(c.Size())
	var err error
	if m.Body, err = wire.AppendChunk(m.Body[:0], c); err != nil {
		m.Free()
		return fmt.Errorf("chunk %d: %w", c.Index, err)
	}
	err = w.reply(m.Body)
	m.Free()
	if err != nil {
		w.node.stats.undeliverable.Add(1)
		return ErrPeerLost
	}
	w.credit.Add(-1)
	w.sent++
	return nil
}

// grant adds credit from the asker.
func (w *StreamWriter) grant(chunks uint32) {
	if w.credit.Add(int64(chunks)) > maxCredit {
		w.credit.Store(maxCredit)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// end closes a stream whose head went out: complete, or with the status
// rep (the handler's error) says.
func (w *StreamWriter) end(rep Reply, err error) {
	e := wire.End{ID: w.id, Chunks: w.sent}
	if err != nil {
		e.Status, e.Message = rep.Status, rep.Body
		if len(e.Message) > wire.MaxMessage {
			e.Message = e.Message[:wire.MaxMessage]
		}
	}
	m := mangos.NewMessage(e.Size())
	m.Body, _ = wire.AppendEnd(m.Body[:0], &e)
	if !w.node.send(w.reply, m) {
		warnSometimes(&w.node.errLog, w.node.log, "stream end undeliverable: the asker's connection is gone")
	}
}

// runStream calls a stream handler, turning a panic into an error.
func (n *Node) runStream(ctx context.Context, rt *route, req *Request, w *StreamWriter) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return rt.stream(ctx, req, w)
}

// credited takes a credit frame: more chunks for the stream it names, if
// that stream runs for the connection the frame came on.
func (n *Node) credited(m *mangos.Message, share *atomic.Int64) {
	var c wire.Credit
	if err := wire.DecodeCredit(m.Body, &c); err != nil {
		n.malformed(m, err)
		return
	}
	m.Free()
	if hc := n.running.get(share, c.ID); hc != nil {
		if w := hc.stream.Load(); w != nil {
			w.grant(c.Chunks)
		}
	}
}

// Stream is a stream of chunks a stream route answers a call with (see
// Node.Stream). Read it with Next until io.EOF; Close it always.
type Stream struct {
	Status  int          // the head's
	Header  wire.Headers // the head's; views valid until Close
	Version string       // of the instance that answers

	node     *Node
	ctx      context.Context
	watch    *handlerContext // cancels the stream with a handler's context (see wait)
	in       *instance
	cl       *call // nil once over
	seq      uint64
	deadline time.Time
	sent     time.Time
	head     *mangos.Message // the head's frame, which Header points into
	cur      *mangos.Message // the chunk Next returned last
	chunk    wire.Chunk
	got      uint32 // chunks read, the head included
	unacked  uint32 // chunks read since the last credit
	single   []byte // the body of a reply: a stream of one
	over     bool   // the call is done (end, reply or error): what remains is in cl.chunks
	err      error  // how it ended, once it did and was read to the end
}

// Stream calls a stream route on one instance of service and returns when
// the stream's head (status and headers) has arrived. An instance of a
// build before streams answers with one reply: a stream of that one body.
// The stream lasts until its end, ctx's end, or the deadline (ctx's, else
// the route's Timeout, else Config.Timeout).
func (n *Node) Stream(ctx context.Context, service, route string, body []byte) (*Stream, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := wire.Request{Route: readOnlyBytes(route), Body: body}
	if hc := handlerContextOf(ctx); hc != nil {
		hc.inherit(&req)
	}
	n.propagate(ctx, &req)
	in, _, err := n.pick(service, nil, req.Labels)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(in.timeout(req.Route, n.cfg.Timeout))
	}
	req.Service, req.Deadline, req.From = readOnlyBytes(service), deadline.UnixNano(), n.from
	if in.conn.speaks(wire.KindCredit) {
		wire.AskStream(&req, streamWindow)
	}
	s := &Stream{node: n, ctx: ctx, in: in, deadline: deadline, sent: time.Now(), Version: in.version}
	if s.cl, err = n.dispatchStream(in.conn, &req); err != nil {
		in.conn.inflight.Add(-1)
		return nil, err
	}
	s.seq = s.cl.seq
	n.stats.inFlight.Add(1)
	if s.watch = watcher(ctx); s.watch != nil && !s.watch.watch(s.seq) {
		n.cancelCall(s.seq)
	}
	s.cl.timer.Reset(time.Until(deadline))
	m, err := s.recv()
	if err != nil {
		s.Close()
		return nil, err
	}
	if m == nil {
		if s.Status == 0 { // an end with no head before it
			s.Close()
			return nil, fmt.Errorf("%w: a stream ended before its head", ErrMalformed)
		}
		return s, nil // a reply: a stream of one
	}
	s.head = m
	if err := wire.DecodeChunk(m.Body, &s.chunk); err != nil || s.chunk.Index != 0 {
		s.Close()
		return nil, fmt.Errorf("%w: the stream's head does not decode", ErrMalformed)
	}
	s.Status, s.Header = s.chunk.Status, s.chunk.Header
	s.consumed()
	return s, nil
}

// Next returns the next chunk's header and body, views valid until the
// next call; io.EOF when the stream ended complete. Another error says
// why it broke off: a *StatusError with the status the instance ended it
// with, ErrDeadline, ErrPeerLost, ctx's error...
func (s *Stream) Next() (wire.Headers, []byte, error) {
	if s.cur != nil {
		s.cur.Free()
		s.cur = nil
	}
	if s.single != nil || s.cl == nil && s.err == nil {
		body := s.single
		s.single, s.err = nil, io.EOF
		if len(body) > 0 {
			return wire.Headers{}, body, nil
		}
	}
	if s.err != nil {
		return wire.Headers{}, nil, s.err
	}
	m, err := s.recv()
	if err != nil {
		return wire.Headers{}, nil, err
	}
	if m == nil {
		return wire.Headers{}, nil, io.EOF
	}
	s.cur = m
	if err := wire.DecodeChunk(m.Body, &s.chunk); err != nil || s.chunk.Index != s.got {
		err := fmt.Errorf("%w: chunk %d of the stream does not decode, or is out of order", ErrMalformed, s.got)
		s.Close() // cancels the stream at its instance
		s.err = err
		return wire.Headers{}, nil, err
	}
	s.consumed()
	return s.chunk.Header, s.chunk.Body, nil
}

// consumed counts a chunk read, and grants credit when half the window
// is used.
func (s *Stream) consumed() {
	s.got++
	if s.unacked++; s.unacked < streamWindow/2 || s.over || !s.in.conn.speaks(wire.KindCredit) {
		return
	}
	c := wire.Credit{ID: wire.ID{Node: s.node.id, Seq: s.seq}, Chunks: s.unacked}
	m := mangos.NewMessage(c.Size())
	m.Body, _ = wire.AppendCredit(m.Body[:0], &c)
	s.cl.allowed.Add(s.unacked) // before the credit goes: its chunks may come at once
	if s.in.conn.send(m) != nil {
		s.cl.allowed.Add(^(s.unacked - 1)) // not sent: not given
		return
	}
	s.unacked = 0
}

// recv waits for the next frame of the stream: a chunk (returned), or the
// call's end (nil, with s.err set, or nil error and s.single set for a
// reply).
func (s *Stream) recv() (*mangos.Message, error) {
	cl := s.cl
	if cl == nil {
		return nil, s.err
	}
	select {
	case m := <-cl.chunks:
		return m, nil
	default:
	}
	if s.over {
		return nil, s.finish()
	}
	var cancelled <-chan struct{}
	if s.watch == nil {
		cancelled = s.ctx.Done()
	}
	select {
	case m := <-cl.chunks:
		return m, nil
	case <-cl.done:
		s.over = true
		select {
		case m := <-cl.chunks: // chunks sent before the end come first
			return m, nil
		default:
			return nil, s.finish()
		}
	case <-cl.timer.C:
		s.giveUp(ErrDeadline)
	case <-cancelled:
		err := s.ctx.Err()
		if err == context.DeadlineExceeded {
			err = ErrDeadline
		}
		s.giveUp(err)
	}
	return nil, s.err
}

// finish reads how the call ended, once every chunk before the end was
// read: nil for a reply (a stream of one) or a complete end (s.err is
// io.EOF then), the error otherwise.
func (s *Stream) finish() error {
	cl := s.cl
	resp, err := cl.resp, cl.err
	switch {
	case err == nil && resp != nil: // a reply
		s.Status, s.Header, s.single = resp.Status, resp.Header, resp.Body
		s.head, resp.msg = resp.msg, nil
		resp.Release()
		s.done(nil)
		return nil
	case err == errStreamEnd:
		if cl.ended != s.got {
			err = fmt.Errorf("%w: the stream ended after %d chunks, %d came", ErrPeerLost, cl.ended, s.got)
		} else {
			err = io.EOF
		}
	}
	s.done(err)
	return s.errOrNil()
}

func (s *Stream) errOrNil() error {
	if s.err == io.EOF {
		return nil
	}
	return s.err
}

// giveUp ends a stream its asker no longer waits for: the instance is
// told, unless it stops by itself (at the deadline).
func (s *Stream) giveUp(why error) {
	n := s.node
	if n.pending.take(s.seq) == s.cl {
		if why != ErrDeadline {
			n.sendCancel(s.cl.conn, s.seq)
			n.stats.cancelled.Add(1)
		} else {
			n.stats.timeouts.Add(1)
		}
	} else {
		<-s.cl.done // it ended meanwhile
		if r := s.cl.resp; r != nil {
			r.Release()
		}
	}
	s.done(why)
}

// done records how the stream ended and gives its call back.
func (s *Stream) done(err error) {
	cl := s.cl
	cl.timer.Stop()
	for len(cl.chunks) > 0 { // the call left pending: nothing is pushed any more
		(<-cl.chunks).Free()
	}
	if s.watch != nil {
		s.watch.unwatch(s.seq)
	}
	n := s.node
	n.stats.inFlight.Add(-1)
	s.in.conn.inflight.Add(-1)
	status := s.Status
	if err != nil && err != io.EOF {
		status = 0
	}
	s.in.stats.record(time.Since(s.sent), status)
	cl.chunks = nil
	n.recycle(cl)
	s.cl, s.err = nil, err
}

// Close ends the stream: one still running is cancelled at its instance.
// Call it once the stream is read, or given up on.
func (s *Stream) Close() {
	if s.cl != nil {
		if s.over {
			s.finish()
		} else {
			s.giveUp(context.Canceled)
		}
	}
	for _, m := range []*mangos.Message{s.cur, s.head} {
		if m != nil {
			m.Free()
		}
	}
	s.cur, s.head, s.single, s.Header = nil, nil, nil, wire.Headers{}
}

// errStreamEnd completes a stream call whose end frame said complete.
var errStreamEnd = errors.New("nanobus: stream complete")
