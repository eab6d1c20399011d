package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// bodySize is every event's body: its stamp, then padding, a small domain
// event's size.
const bodySize = 128

// stampBody returns an event body carrying t, the time the event was meant
// to be published: the subscriber's latency is counted from it.
func stampBody(t time.Time, seq uint64) []byte {
	b := make([]byte, bodySize)
	binary.BigEndian.PutUint64(b, uint64(t.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], seq)
	for i := 16; i < len(b); i++ {
		b[i] = 'x'
	}
	return b
}

// stampOf reads the time stampBody put in body.
func stampOf(body []byte) (time.Time, error) {
	if len(body) < 16 {
		return time.Time{}, fmt.Errorf("event body of %d bytes, want at least 16", len(body))
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(body))), nil
}

// publishFunc publishes one event, durably, and returns once it is.
type publishFunc func(ctx context.Context, key string, body []byte) error

// driver runs a publisher's load: a closed loop of conc publishers, or an
// open loop at a rate spread over conc publishers.
type driver struct {
	publish publishFunc
	keys    int

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup

	published, failed, unsent atomic.Int64
	lastErr                   atomic.Pointer[string]
}

// backlog bounds the open loop's events due and not yet picked up by a
// publisher; over it, events are counted as unsent.
const backlog = 1 << 16

// start begins a load, replacing the one running. rate <= 0 is a closed
// loop.
func (d *driver) start(conc int, rate float64) {
	d.stop()
	ctx, cancel := context.WithCancel(context.Background())
	d.mu.Lock()
	d.cancel = cancel
	d.mu.Unlock()
	var due chan time.Time
	if rate > 0 {
		due = make(chan time.Time, backlog)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer close(due)
			schedule(ctx, rate, func(t time.Time) {
				select {
				case due <- t:
				default:
					d.unsent.Add(1)
				}
			})
		}()
	}
	var seq atomic.Uint64
	for range conc {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for ctx.Err() == nil {
				at := time.Now()
				if due != nil {
					var ok bool
					if at, ok = <-due; !ok {
						return
					}
				}
				n := seq.Add(1)
				key := "k" + strconv.Itoa(int(n)%max(d.keys, 1))
				if err := d.publish(ctx, key, stampBody(at, n)); err != nil {
					if ctx.Err() != nil {
						return
					}
					d.failed.Add(1)
					s := err.Error()
					d.lastErr.Store(&s)
					continue
				}
				d.published.Add(1)
			}
		}()
	}
}

// stop ends the load and waits for the publishes in flight.
func (d *driver) stop() {
	d.mu.Lock()
	cancel := d.cancel
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	d.wg.Wait()
}

// schedule calls emit with each due time of a schedule of rate per second
// from now until ctx ends: every time that has come, in order, then a
// sleep until the next (a late wake-up catches up, it does not skip).
func schedule(ctx context.Context, rate float64, emit func(time.Time)) {
	interval := time.Duration(float64(time.Second) / rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		for !next.After(now) {
			emit(next)
			next = next.Add(interval)
		}
		timer.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
}

// recorder keeps the end-to-end latencies of the events a subscriber
// handled inside the measured window.
type recorder struct {
	mu     sync.Mutex
	h      *hdrhistogram.Histogram
	n      int64
	opened time.Time
	total  atomic.Int64 // since the start, window or not
	bad    atomic.Int64 // bodies without a stamp
}

func newRecorder() *recorder {
	return &recorder{h: hdrhistogram.New(1, 120_000_000, 3), opened: time.Now()}
}

// record counts an event published at stamp and handled now.
func (r *recorder) record(body []byte) {
	at, err := stampOf(body)
	if err != nil {
		r.bad.Add(1)
		return
	}
	us := max(time.Since(at).Microseconds(), 1)
	r.total.Add(1)
	r.mu.Lock()
	_ = r.h.RecordValue(min(us, r.h.HighestTrackableValue()))
	r.n++
	r.mu.Unlock()
}

// window is what a process counted in the measured window.
type window struct {
	Seconds   float64 `json:"seconds"`
	Count     int64   `json:"count"` // events handled (subscriber) or published (publisher)
	Failed    int64   `json:"failed,omitempty"`
	Unsent    int64   `json:"unsent,omitempty"`
	LastError string  `json:"last_error,omitempty"`
	P50       int64   `json:"p50_us,omitempty"`
	P99       int64   `json:"p99_us,omitempty"`
	P999      int64   `json:"p999_us,omitempty"`
	Max       int64   `json:"max_us,omitempty"`
}

// open starts the window: what came before is forgotten.
func (r *recorder) open() {
	r.mu.Lock()
	r.h.Reset()
	r.n = 0
	r.opened = time.Now()
	r.mu.Unlock()
}

// close ends the window and returns it.
func (r *recorder) close() window {
	r.mu.Lock()
	defer r.mu.Unlock()
	return window{Seconds: time.Since(r.opened).Seconds(), Count: r.n,
		P50: r.h.ValueAtQuantile(50), P99: r.h.ValueAtQuantile(99), P999: r.h.ValueAtQuantile(99.9), Max: r.h.Max()}
}

// counter is a publisher's window: the driver's counters between open and
// close.
type counter struct {
	mu                  sync.Mutex
	opened              time.Time
	pub, failed, unsent int64
}

func (c *counter) open(d *driver) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.opened = time.Now()
	c.pub, c.failed, c.unsent = d.published.Load(), d.failed.Load(), d.unsent.Load()
}

func (c *counter) close(d *driver) window {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := window{Seconds: time.Since(c.opened).Seconds(), Count: d.published.Load() - c.pub,
		Failed: d.failed.Load() - c.failed, Unsent: d.unsent.Load() - c.unsent}
	if s := d.lastErr.Load(); s != nil && w.Failed > 0 {
		w.LastError = *s
	}
	return w
}
