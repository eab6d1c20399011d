package nanobus

import (
	"context"
	"sync"
	"time"
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

func (c *handlerContext) Value(key any) any { return c.node.Value(key) }

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
