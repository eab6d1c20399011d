package nanobus

import (
	"context"
	"sync"
	"time"

	"github.com/terminator-gw/terminator/wire"
)

// handlerContext is the context a handler runs with. context.WithDeadline
// would cost a timer, a channel and a goroutine-safe tree node per request
// whether or not the handler looks; this one ends at the request's deadline
// or when the node closes, and builds its Done channel only when a handler
// asks for it. Calls made with it need no channel at all: their own timer
// enforces the same deadline (see roundTrip).
type handlerContext struct {
	deadline time.Time
	node     context.Context
	labels   string // the request's labels, for the calls it makes
	ghost    bool   // the request is a ghost copy: so are the calls it makes

	mu    sync.Mutex
	done  chan struct{}
	err   error
	timer *time.Timer
	stop  func() bool // unregisters from node
}

func newHandlerContext(node context.Context, deadline time.Time) *handlerContext {
	return &handlerContext{deadline: deadline, node: node}
}

func (c *handlerContext) Deadline() (time.Time, bool) { return c.deadline, true }

// handlerKey finds the handlerContext under contexts a handler derives
// from it (context.WithTimeout(ctx, ...)).
type handlerKey struct{}

func (c *handlerContext) Value(key any) any {
	if key == (handlerKey{}) {
		return c
	}
	return c.node.Value(key)
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

// inherit gives a call made while handling a request what the request
// carried: its labels (unless the call has its own) and its ghost mark.
func (c *handlerContext) inherit(req *wire.Request) {
	if len(req.Labels) == 0 && c.labels != "" {
		req.Labels = readOnlyBytes(c.labels)
	}
	if c.ghost {
		req.Flags |= wire.FlagGhost
	}
}

func (c *handlerContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
			return c.done
		}
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.end(context.DeadlineExceeded) })
		c.stop = context.AfterFunc(c.node, func() { c.end(context.Canceled) })
	}
	return c.done
}

func (c *handlerContext) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if c.node.Err() != nil {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// end ends the context with err (first call wins).
func (c *handlerContext) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
		c.timer.Stop()
		c.stop()
	}
}

// WithDeadline returns a context that ends at d or when ctx ends, whichever
// is first: context.WithDeadline for the calls a handler makes, without
// its timer and goroutine. Calls made with it enforce d with their own
// timer; its Done is ctx's, so code that waits on Done alone sees the
// earlier deadline only through Err.
func WithDeadline(ctx context.Context, d time.Time) context.Context {
	if cur, ok := ctx.Deadline(); ok && !d.Before(cur) {
		return ctx
	}
	return &narrowContext{Context: ctx, deadline: d}
}

type narrowContext struct {
	context.Context
	deadline time.Time
}

func (c *narrowContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *narrowContext) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// deadlineOnly reports whether ctx can end only at its deadline or when the
// node closes: then a call need not watch its Done channel (its timer and
// Close cover both), which for a handler's context would build the channel
// and a timer for nothing.
func deadlineOnly(ctx context.Context) bool {
	switch c := ctx.(type) {
	case *handlerContext:
		return true
	case *narrowContext:
		return deadlineOnly(c.Context)
	}
	return false
}
