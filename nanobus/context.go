package nanobus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/wire"
)

// lazyDone is the Done channel of the bus's own contexts, made only when
// someone asks for it. context.WithDeadline would cost a timer, a channel
// and a goroutine-safe tree node per request whether or not anyone looks;
// the calls a handler makes need none of them (their own timer enforces
// the deadline, and a cancelled handler cancels them directly: see watch).
// Once made, the channel closes at the deadline or when parent ends, as
// the context contract wants.
type lazyDone struct {
	mu    sync.Mutex
	done  chan struct{}
	err   error // why it ended; nil while it runs
	timer *time.Timer
	stop  func() bool // unregisters from parent
}

// channel returns the Done channel, making it (and what closes it) on
// first use. end is the owner's end method.
func (l *lazyDone) channel(parent context.Context, deadline time.Time, end func(error)) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done == nil {
		l.done = make(chan struct{})
		if l.err != nil {
			close(l.done)
			return l.done
		}
		l.timer = time.AfterFunc(time.Until(deadline), func() { end(context.DeadlineExceeded) })
		l.stop = context.AfterFunc(parent, func() { end(context.Canceled) })
	}
	return l.done
}

// errOf is Err: what ended it, or, before anything did, whether the
// deadline or the parent already has (nobody watches those until Done is
// asked for).
func (l *lazyDone) errOf(parent context.Context, deadline time.Time) error {
	l.mu.Lock()
	err, made := l.err, l.done != nil
	l.mu.Unlock()
	if err != nil || made {
		return err
	}
	if parent.Err() != nil {
		return context.Canceled
	}
	if time.Until(deadline) <= 0 { // the monotonic clock alone, when the deadline has a reading of it
		return context.DeadlineExceeded
	}
	return nil
}

// end records err (the first call wins) and closes the channel if it was
// made. It reports whether this call ended it.
func (l *lazyDone) end(err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.endLocked(err)
}

// endLocked is end, with l.mu held.
func (l *lazyDone) endLocked(err error) bool {
	if l.err != nil {
		return false
	}
	l.err = err
	if l.done != nil {
		close(l.done)
		l.timer.Stop()
		l.stop()
	}
	return true
}

// handlerContext is the context a handler runs with. It ends at the
// request's deadline, when the asker cancels the request (a cancel frame),
// when the handler returns, or when the node closes. Ended by a cancel,
// it cancels the calls made with it that still wait, hop by hop.
type handlerContext struct {
	lazyDone
	deadline time.Time
	bus      *Node
	labels   string // the request's labels, for the calls it makes
	ghost    bool   // the request is a ghost copy: so are the calls it makes
	req      *Request
	// values, when set, answers Value (but for handlerKey): the node's
	// context with the request's span (see startServerSpan). Here, not in
	// the pooled Request: the context outlives the handler (a store's
	// context watcher may still ask it for a value) and the Request is
	// reset for the next one.
	values context.Context

	// calls holds the sequence numbers of the calls made with this context
	// that wait for their answers (under mu). A sequence number, not the
	// call: a call is pooled, and one that finished may be someone else's
	// by the time a cancel looks.
	calls  []uint64
	inline [4]uint64

	// byAsker: a cancel frame ended it. Nobody waits for the reply then.
	byAsker atomic.Bool
	// stream is the writer of a stream route's handler, for credit frames.
	stream atomic.Pointer[StreamWriter]
	// The pipe the request came on and its ID (see runningRequests).
	pipe *atomic.Int64
	id   wire.ID
}

func newHandlerContext(n *Node) *handlerContext {
	c := &handlerContext{bus: n}
	c.calls = c.inline[:0]
	return c
}

func (c *handlerContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *handlerContext) Done() <-chan struct{} {
	return c.channel(c.bus.ctx, c.deadline, func(err error) { c.end(err) })
}

func (c *handlerContext) Err() error { return c.errOf(c.bus.ctx, c.deadline) }

// handlerKey finds the handlerContext under contexts a handler derives
// from it (context.WithTimeout(ctx, ...)).
type handlerKey struct{}

func (c *handlerContext) Value(key any) any {
	if key == (handlerKey{}) {
		return c
	}
	if c.values != nil {
		return c.values.Value(key)
	}
	return c.bus.ctx.Value(key)
}

// handlerContextOf returns the context of the request being handled that
// ctx is, or derives from; nil outside a handler.
func handlerContextOf(ctx context.Context) *handlerContext {
	if hc, ok := ctx.(*handlerContext); ok {
		return hc
	}
	hc, _ := ctx.Value(handlerKey{}).(*handlerContext)
	return hc
}

// RequestOf returns the request whose handler ctx is the context of (or
// derives from), nil outside a handler. It is valid until the handler
// returns: what causes a side effect (an event published, for one) reads
// the request's ID, headers and ghost mark from it.
func RequestOf(ctx context.Context) *Request {
	if hc := handlerContextOf(ctx); hc != nil {
		return hc.req
	}
	return nil
}

// inherit gives a call made while handling a request what the request
// carried: its labels (unless the call has its own), its ghost mark, the
// nested mark (admitted work: see Limiter.AcquireNested), and
// its request ID (unless the call has its own), so that one ID follows a
// page through every hop and every log line about it, and its traceparent
// (which a node that traces replaces with the call's own span: see
// startClientSpan).
func (c *handlerContext) inherit(req *wire.Request) {
	if len(req.Labels) == 0 && c.labels != "" {
		req.Labels = readOnlyBytes(c.labels)
	}
	if len(req.TraceParent) == 0 && c.req != nil {
		req.TraceParent = c.req.TraceParent
	}
	req.Flags |= wire.FlagNested
	if c.ghost {
		req.Flags |= wire.FlagGhost
	}
	if c.req != nil {
		if id := c.req.Header.Get(hdrRequestID); len(id) > 0 && req.Header.Get(hdrRequestID) == nil {
			if req.Header.Len() > 0 {
				// The caller's headers may be shared by other calls: they
				// are copied, not appended to.
				var h wire.Headers
				for k, v := range req.Header.All() {
					h.AddBytes(k, v)
				}
				req.Header = h
			}
			req.Header.AddBytes(readOnlyBytes(hdrRequestID), id)
		}
	}
}

// end ends the context with err, and reports whether this call did. Ended
// by a cancel (the asker's, or the handler returning), it cancels the
// calls made with it that still wait.
func (c *handlerContext) end(err error) bool {
	c.mu.Lock()
	if !c.endLocked(err) {
		c.mu.Unlock()
		return false
	}
	var calls []uint64
	if err == context.Canceled {
		calls, c.calls = c.calls, nil // watch refuses from now on
	}
	c.mu.Unlock()
	for _, seq := range calls {
		c.bus.cancelCall(seq)
	}
	return true
}

// cancel ends c for a cancel frame from the asker. It reports whether c
// was still running.
func (c *handlerContext) cancel() bool {
	c.byAsker.Store(true) // if it ended already, nobody reads it any more
	return c.end(context.Canceled)
}

// watch records a call made with c, so that cancelling c cancels it. It
// reports false when c was cancelled already: the call is to be cancelled
// by its maker.
func (c *handlerContext) watch(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == context.Canceled {
		return false
	}
	c.calls = append(c.calls, seq)
	return true
}

// unwatch forgets a call that is over.
func (c *handlerContext) unwatch(seq uint64) {
	c.mu.Lock()
	for i, s := range c.calls {
		if s == seq {
			last := len(c.calls) - 1
			c.calls[i] = c.calls[last]
			c.calls = c.calls[:last]
			break
		}
	}
	c.mu.Unlock()
}

// WithDeadline returns a context that ends at d or when ctx ends, whichever
// is first: context.WithDeadline for the calls a handler makes, without a
// timer or goroutine unless its Done is asked for. Calls made with it
// enforce d with their own timer and are cancelled with the handler's
// context.
func WithDeadline(ctx context.Context, d time.Time) context.Context {
	if cur, ok := ctx.Deadline(); ok && !d.Before(cur) {
		return ctx
	}
	return &narrowContext{Context: ctx, deadline: d}
}

type narrowContext struct {
	context.Context
	lazyDone
	deadline time.Time
}

func (c *narrowContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *narrowContext) Done() <-chan struct{} {
	return c.channel(c.Context, c.deadline, func(err error) { c.end(err) })
}

func (c *narrowContext) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	return c.errOf(c.Context, c.deadline)
}

// watcher returns the handler context a call made with ctx is cancelled
// with, when ctx can end in no other way than its deadline or that
// handler context's end: then the call need not wait on ctx's Done, which
// would make its channel and a timer for nothing. Otherwise nil.
func watcher(ctx context.Context) *handlerContext {
	switch c := ctx.(type) {
	case *handlerContext:
		return c
	case *narrowContext:
		return watcher(c.Context)
	}
	return nil
}
