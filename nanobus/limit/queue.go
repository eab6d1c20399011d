package limit

import (
	"sync"
	"sync/atomic"
	"time"
)

// Policy is how work over the limit waits for a turn (Queue.Policy).
type Policy uint8

const (
	// CoDel keeps the queueing delay bounded rather than the queue, in
	// the manner of "Fail at Scale" (ACM Queue, 2015: controlled delay
	// with adaptive LIFO). Work waits in arrival order up to Interval,
	// which absorbs a burst and the queue of a fixed set of clients that
	// each wait for their answer. When work waits longer than that, the
	// queue stands, arrivals outrun the service: then work waits at most
	// Target and the newest is served first (it still has a client
	// waiting; the oldest has likely given up), until the queue empties.
	// A standing queue that turns away more than twice what it serves for
	// an Interval goes back to arrival order: its clients come straight
	// back when refused (a closed loop), and there waiting sheds more load
	// than refusing does.
	CoDel Policy = iota
	// FIFO serves in arrival order, each waiting up to Interval: the
	// policy before CoDel, kept for comparison. Under lasting overload it
	// keeps a standing queue of Interval's length.
	FIFO
)

// String is the policy's flag value.
func (p Policy) String() string {
	if p == FIFO {
		return "fifo"
	}
	return "codel"
}

// ParsePolicy reads a policy's flag value: "codel" or "fifo".
func ParsePolicy(s string) (Policy, bool) {
	switch s {
	case "codel":
		return CoDel, true
	case "fifo":
		return FIFO, true
	}
	return 0, false
}

// Queue is where work over the limit waits for a turn (Limiter.Admit).
type Queue struct {
	Policy Policy
	// Interval is the longest wait while the queue is not standing (CoDel)
	// or at all (FIFO); 0 refuses at once whatever the limit cannot take.
	Interval time.Duration
	// Target is CoDel's longest wait while the queue stands.
	Target time.Duration
	// Max bounds the work waiting; more is refused at once (default 4096).
	Max int
}

// waiter is one piece of work waiting for a turn. Only the queue's owner
// (under its lock) takes it out, and tells it, in one value, whether it
// got a slot: it never leaves by itself, so it needs no timer.
type waiter struct {
	turn  chan bool
	since int64 // unix nanos: when it began to wait
}

var waiters = sync.Pool{New: func() any { return &waiter{turn: make(chan bool, 1)} }}

// queue is a Limiter's waiting work: a ring, oldest first.
type queue struct {
	Queue
	mu      sync.Mutex
	ring    []*waiter
	head, n int
	ticking bool // a goroutine expires old work while the queue holds some

	// CoDel: whether the queue stands (newest first, Target), since
	// when, and what it served and turned away since then.
	standing         bool
	since            int64
	served, rejected int

	waiting atomic.Int64
	expired atomic.Int64
	full    atomic.Int64
}

// SetQueue sets how work over the limit waits (Admit); before any use.
func (l *Limiter) SetQueue(q Queue) {
	if q.Max <= 0 {
		q.Max = 4096
	}
	if q.Target <= 0 || q.Target > q.Interval {
		q.Target = q.Interval
	}
	l.q.Queue = q
}

// Admit is Acquire that, over the limit, waits for a turn as the Queue
// says rather than refusing at once; false means refused (answer "busy").
// Work refused after waiting cost a wait, never a timer: the queue's
// owner expires it (on the next Admit or Release, or a tick while work
// waits).
func (l *Limiter) Admit() bool {
	if l.Acquire() {
		return true
	}
	q := &l.q
	if q.Interval <= 0 {
		return false
	}
	now := time.Now().UnixNano()
	q.mu.Lock()
	q.expire(now)
	if q.n >= q.Max {
		q.mu.Unlock()
		q.full.Add(1)
		return false
	}
	q.waiting.Add(1)
	// Again, now that a Release would see us: one that came between the
	// first try and here found nobody waiting.
	if l.Acquire() {
		q.waiting.Add(-1)
		q.mu.Unlock()
		return true
	}
	w := waiters.Get().(*waiter)
	w.since = now
	q.push(w)
	if !q.ticking {
		q.ticking = true
		go q.tick()
	}
	q.mu.Unlock()
	ok := <-w.turn
	waiters.Put(w)
	return ok
}

// handOver gives a releasing caller's slot to a waiter, if there is one
// and the limit still has room for it.
func (l *Limiter) handOver() bool {
	q := &l.q
	now := time.Now().UnixNano()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(now)
	if q.n == 0 || l.inflight.Load() > l.limit.Load() {
		return false
	}
	var w *waiter
	if q.standing {
		w = q.popNewest()
		q.served++
	} else {
		w = q.popOldest()
	}
	q.waiting.Add(-1)
	w.turn <- true
	return true
}

// Full reports whether work would be refused at once now: the limit is
// reached and there is no room to wait. Work that takes effort before it
// asks (a request body to read) looks first.
func (l *Limiter) Full() bool {
	return l.inflight.Load() >= l.limit.Load() && (l.q.Interval <= 0 || l.q.waiting.Load() >= int64(l.q.Max))
}

// Waiting is the work waiting for a turn now.
func (l *Limiter) Waiting() int { return int(l.q.waiting.Load()) }

// Refused counts the work refused by the queue since the start: expired
// after waiting its longest, and turned away because Max were waiting.
// (Work refused at once, without a queue, is the caller's to count.)
func (l *Limiter) Refused() (expired, full int64) { return l.q.expired.Load(), l.q.full.Load() }

// expire refuses the waiters that waited their longest: Interval, or
// Target while the queue stands. The oldest are at the front. It also
// moves CoDel between arrival order and standing (see CoDel).
func (q *queue) expire(now int64) {
	if q.standing {
		switch {
		case q.n == 0:
			q.standing = false
		case now-q.since > int64(q.Interval):
			if q.rejected > 2*q.served {
				q.standing = false // a closed loop: waiting sheds more
			}
			q.since, q.served, q.rejected = now, 0, 0
		}
	}
	for q.n > 0 {
		w := q.ring[q.head]
		longest := int64(q.Interval)
		if q.standing {
			longest = int64(q.Target)
		}
		if now-w.since <= longest {
			break
		}
		if q.Policy == CoDel && !q.standing {
			// Work waited longer than a burst or a set of clients makes
			// it wait: the queue stands. This one, and what else waited
			// past Target, is refused.
			q.standing, q.since, q.served, q.rejected = true, now, 0, 0
		}
		q.popOldest()
		q.waiting.Add(-1)
		q.expired.Add(1)
		if q.standing {
			q.rejected++
		}
		w.turn <- false
	}
}

// tick expires waiting work when nothing else comes by to (no Admit, no
// Release: every admitted piece of work stuck), and ends once the queue
// is empty.
func (q *queue) tick() {
	t := time.NewTicker(max(q.Target/2, 100*time.Microsecond))
	defer t.Stop()
	for range t.C {
		q.mu.Lock()
		q.expire(time.Now().UnixNano())
		if q.n == 0 {
			q.ticking = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

func (q *queue) push(w *waiter) {
	if q.n == len(q.ring) {
		ring := make([]*waiter, max(64, 2*len(q.ring)))
		for i := range q.n {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.n)%len(q.ring)] = w
	q.n++
}

func (q *queue) popOldest() *waiter {
	w := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	return w
}

func (q *queue) popNewest() *waiter {
	i := (q.head + q.n - 1) % len(q.ring)
	w := q.ring[i]
	q.ring[i] = nil
	q.n--
	return w
}
