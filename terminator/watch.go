package terminator

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Noticing a client that went away while its request is parked on the bus.
//
// fasthttp tells a handler nothing when its client disconnects (it reads
// the connection only between requests), so a call whose client left would
// run to its deadline, holding an admission slot and an instance's handler.
// nginx, in front, closes its upstream connection when its own client
// aborts; the front notices that close the way nginx notices its client's:
// the socket turns readable with EOF.
//
// A goroutine per parked request blocked in a read would notice at once,
// but costs a goroutine, a stack and a read racing fasthttp's own per
// request, and a timer per request would cost an allocation each. Instead
// every parked request is registered (its socket and its context) in a
// small sharded list, and ONE goroutine per front looks at all of them
// every watchTick with one poll(2) call, timeout 0, per batch of sockets:
// POLLRDHUP, POLLHUP or POLLERR mean the client is gone; POLLIN alone is
// either EOF or a pipelined next request, which recv(MSG_PEEK) tells apart
// without taking a byte from fasthttp. Registering is a mutex and an
// append, nothing allocated; requests that end within a quarter tick
// (nearly all) are never polled at all. The same tick ends the context of a request
// whose deadline passed, so the context keeps its contract (Done closes at
// the deadline, within a tick) with no timer of its own.

// watchTick is how often the watcher looks at parked requests: the delay
// between a client's leaving and its call's cancellation is at most about
// this and a quarter (a request is polled once parked a quarter tick).
const watchTick = 20 * time.Millisecond

// maxPollBatch bounds the sockets polled in one call (and the watcher's
// arrays): more parked requests are polled in several calls.
const maxPollBatch = 1024

// parkShards is the number of shards of the parked list; an exchange keeps
// its shard for life, so handlers on different cores seldom share a lock.
const parkShards = 16

// States of a reqContext.
const (
	ctxLive uint32 = iota
	ctxCancelled
	ctxExpired
)

// reqContext is the context of one request's bus call: its deadline, and a
// Done channel closed by the watcher when the client goes away (Err:
// context.Canceled) or once the deadline has passed (Err:
// context.DeadlineExceeded; the bus enforces the deadline with its own
// timer, so this is for the contract, not for the bus). It lives in the
// pooled exchange: the channel is reused from request to request until it
// is closed, so only a cancelled or expired request costs a new one.
type reqContext struct {
	deadline time.Time
	parked   time.Time     // when the call was registered: younger than a quarter tick, it is not polled
	done     chan struct{} // closed (by the watcher, under the shard's lock) at most once
	state    atomic.Uint32 // ctxLive, ctxCancelled, ctxExpired
	fd       int           // the client connection's socket, or -1: never polled
	shard    int           // the parked list's shard, fixed for the exchange's life
	slot     int           // index in the shard's list while registered, else -1
	gen      uint64        // registrations so far: a watcher's snapshot of another is stale
	// values, when set, answers Value: the request's span, for the bus
	// call's span to be its child (see startSpan).
	values context.Context
}

var nextShard atomic.Uint32

func newReqContext() reqContext {
	return reqContext{done: make(chan struct{}), slot: -1, shard: int(nextShard.Add(1) % parkShards)}
}

// prepare readies c for a new call: a fresh channel if the last one was
// closed. c is not registered now, so the watcher does not look at it.
func (c *reqContext) prepare(deadline time.Time, fd int) {
	if c.state.Load() != ctxLive || c.done == nil {
		c.done = make(chan struct{})
		c.state.Store(ctxLive)
	}
	c.deadline, c.fd = deadline, fd
}

func (c *reqContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *reqContext) Done() <-chan struct{}       { return c.done }

func (c *reqContext) Value(key any) any {
	if c.values == nil {
		return nil
	}
	return c.values.Value(key)
}

// Err reports the deadline as soon as it passes, even before the watcher's
// tick closes Done: the bus asks before it sends, and a request already
// late is not sent.
func (c *reqContext) Err() error {
	switch c.state.Load() {
	case ctxCancelled:
		return context.Canceled
	case ctxExpired:
		return context.DeadlineExceeded
	}
	if time.Until(c.deadline) > 0 { // the monotonic clock alone: c.deadline has a reading of it
		return nil
	}
	return context.DeadlineExceeded
}

// cancelled reports whether the watcher found c's client gone.
func (c *reqContext) cancelled() bool { return c.state.Load() == ctxCancelled }

// end closes c's Done with why, once. Called with c's shard locked, while
// c is registered: its handler cannot be replacing the channel.
func (c *reqContext) end(why uint32) {
	if c.state.CompareAndSwap(ctxLive, why) {
		close(c.done)
	}
}

// parkShard is one shard of the parked list, padded to its own cache lines.
type parkShard struct {
	mu   sync.Mutex
	list []*reqContext
	_    [64 - 8 - 24]byte
}

// watcher holds the requests parked on the bus and the goroutine that looks
// at their clients.
type watcher struct {
	shards [parkShards]parkShard
	tick   time.Duration
	probe  prober

	stop     chan struct{}
	stopped  chan struct{}
	start    sync.Once
	stopOnce sync.Once

	// The watcher goroutine's own: the batch being polled.
	batch []parkedRef
	fds   []int32
	gone  []bool

	// For the status and tests.
	polled    atomic.Uint64 // sockets polled
	pipelined atomic.Uint64 // sockets readable with data, not EOF: a pipelined request, left alone
	found     atomic.Uint64 // clients found gone
}

// parkedRef is the watcher's snapshot of a registration.
type parkedRef struct {
	c   *reqContext
	gen uint64
}

func newWatcher(tick time.Duration) *watcher {
	return &watcher{
		tick:    tick,
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		batch:   make([]parkedRef, 0, maxPollBatch),
		fds:     make([]int32, 0, maxPollBatch),
		gone:    make([]bool, maxPollBatch),
	}
}

// park registers c for the watcher, as of now.
func (w *watcher) park(c *reqContext, now time.Time) {
	sh := &w.shards[c.shard]
	sh.mu.Lock()
	c.parked = now
	c.gen++
	c.slot = len(sh.list)
	sh.list = append(sh.list, c)
	sh.mu.Unlock()
}

// unpark takes c out of the list: once it returns, the watcher no longer
// touches c.
func (w *watcher) unpark(c *reqContext) {
	sh := &w.shards[c.shard]
	sh.mu.Lock()
	last := len(sh.list) - 1
	moved := sh.list[last]
	sh.list[c.slot], moved.slot = moved, c.slot
	sh.list[last] = nil
	sh.list = sh.list[:last]
	c.slot = -1
	sh.mu.Unlock()
}

// parkedNow counts the registered requests (for tests).
func (w *watcher) parkedNow() int {
	n := 0
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		n += len(sh.list)
		sh.mu.Unlock()
	}
	return n
}

// run starts the watcher goroutine, once.
func (w *watcher) run() {
	w.start.Do(func() {
		go func() {
			defer close(w.stopped)
			t := time.NewTicker(w.tick)
			defer t.Stop()
			for {
				select {
				case <-w.stop:
					return
				case now := <-t.C:
					w.check(now)
				}
			}
		}()
	})
}

// close stops the watcher goroutine and waits for it, if it ran.
func (w *watcher) close() {
	w.stopOnce.Do(func() {
		close(w.stop)
		started := true
		w.start.Do(func() { started = false })
		if started {
			<-w.stopped
		}
	})
}

// check is one tick: it ends the contexts of requests past their deadline
// and polls the sockets of those parked longer than a quarter tick, in
// batches.
func (w *watcher) check(now time.Time) {
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		for j := 0; j < len(sh.list); j++ { // the list may change while unlocked (below)
			c := sh.list[j]
			if c.state.Load() != ctxLive {
				continue
			}
			if !now.Before(c.deadline) {
				c.end(ctxExpired)
				continue
			}
			if c.fd < 0 || now.Sub(c.parked) < w.tick/4 {
				continue
			}
			if len(w.batch) == maxPollBatch {
				sh.mu.Unlock() // poll(2) is a system call: not under the lock
				w.flush()
				sh.mu.Lock()
				// The list may have changed meanwhile: an entry moved into a
				// slot already passed waits for the next tick, and one seen
				// twice is polled twice. Neither is wrong.
			}
			w.batch = append(w.batch, parkedRef{c, c.gen})
			w.fds = append(w.fds, int32(c.fd))
		}
		sh.mu.Unlock()
	}
	w.flush()
}

// flush polls the batch and cancels the calls whose clients are gone, if
// they are still the calls that were seen.
func (w *watcher) flush() {
	if len(w.batch) == 0 {
		return
	}
	gone := w.gone[:len(w.fds)]
	clear(gone)
	pipelined := w.probe.probe(w.fds, gone)
	w.polled.Add(uint64(len(w.fds)))
	w.pipelined.Add(uint64(pipelined))
	for i, ref := range w.batch {
		if !gone[i] {
			continue
		}
		sh := &w.shards[ref.c.shard]
		sh.mu.Lock()
		if ref.c.gen == ref.gen && ref.c.slot >= 0 && ref.c.state.Load() == ctxLive {
			ref.c.end(ctxCancelled)
			w.found.Add(1)
		}
		sh.mu.Unlock()
	}
	clear(w.batch) // hold no exchange past its request
	w.batch, w.fds = w.batch[:0], w.fds[:0]
}
