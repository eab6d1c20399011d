package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// LateAfter is how far past its intended time an open-loop request may be
// sent before it counts as Late.
const LateAfter = time.Millisecond

// fileReserve is the open files kept aside from the connections.
const fileReserve = 256

// queueCap bounds the open-loop requests that fell due and wait in the
// generator for a connection (all connections busy, none left to open):
// past it a due request is dropped and counted Unsent.
const queueCap = 1 << 16

// maxOpening bounds the connections being opened at once (workers started
// for want of a free connection that have not had their first answer): a
// burst of thousands of dials overflows the target's listen queue, and
// every dropped SYN then waits a second or more for its retransmit, which
// would be the generator's delay, not the target's.
const maxOpening = 512

// busyLag is how late the dispatcher itself may be and still open
// connections: later than that, the generator is short of CPU (its
// workers wait to run, not for answers), and more connections would only
// cost more CPU; the due requests then wait for a worker, counted late.
// (Go's timers wake up to ~1 ms late on an idle process.)
const busyLag = 2 * time.Millisecond

// sourceAddrs is how many loopback source addresses (127.0.0.1 up) the
// connections to an IPv4 loopback target spread over: each has its own
// ~28k ephemeral ports, and a sweep's points close thousands of
// connections each, which then sit in TIME_WAIT for a minute.
const sourceAddrs = 16

// statShards is how many tallies the workers share (each under a mutex):
// one histogram set per worker would cost ~0.5 MB each, 4 GB at 8192.
const statShards = 16

// Histogram bounds, in microseconds: anything slower than a minute is a hang,
// and the per-request timeout caps us well below that anyway.
const (
	histMinUS = 1
	histMaxUS = 60_000_000
	histSig   = 3
)

// maxErrorKinds caps the distinct error messages kept, so a flood of unique
// messages (ports, addresses) cannot grow memory without bound.
const maxErrorKinds = 16

// Options describes one bounded run.
type Options struct {
	// URLs are spread round-robin over requests (each connection starts at a
	// different offset). At least one is required.
	URLs []string
	// Method defaults to GET, or POST when Body is set.
	Method string
	// Body is sent with every request (e.g. for POST).
	Body []byte
	// ContentType for Body; defaults to application/octet-stream when Body is set.
	ContentType string
	// Connections is the number of keep-alive connections (and workers); default 64.
	// In open loop it is where the generator starts: see MaxConnections.
	Connections int
	// MaxConnections, open loop only, is how many connections the generator
	// may open: when every open connection is waiting for an answer as a
	// request falls due, it opens another, so a slow answer never delays
	// the next send (the internet does not wait for your answers either).
	// Zero or below Connections keeps Connections fixed: a due request then
	// waits in the generator for a free connection, timed from its
	// intended send all the same, and counted Late. At most maxOpening
	// (512) connections are opened at once. The bound is capped by
	// the process's open-file limit (RLIMIT_NOFILE, raised to its hard
	// limit as needed).
	MaxConnections int
	// Duration of the measured window; required (> 0): every run is bounded.
	Duration time.Duration
	// Warmup runs before the measured window; its requests are not recorded.
	Warmup time.Duration
	// Rate > 0 selects open loop at Rate requests/second in total;
	// 0 selects closed loop.
	Rate float64
	// Timeout per request (read and write); default 2s.
	Timeout time.Duration
	// AllowRemote permits non-loopback targets. Off by default.
	AllowRemote bool
	// OnWindow, when set, is called as the measured window opens (true)
	// and as it closes (false), from a goroutine of its own, and both
	// calls happen before Run returns (the closing one early when ctx ends
	// first). A caller reads the target's counters there, its CPU time
	// say, so that they cover exactly the requests the Result counts.
	OnWindow func(open bool)
}

// Result is the outcome of a run. Latencies are in the histograms, in µs.
type Result struct {
	Requests int64 // measured requests that completed (any status) or failed
	Errors   int64 // measured requests with a transport error (no status)
	Unsent   int64 // open loop: scheduled in the window but never sent
	// Late counts open-loop requests of the window sent more than
	// LateAfter after their intended time: the generator's own lag (a
	// busy CPU, or every connection busy and none left to open).
	Late int64
	// SendLag holds every measured open-loop request's delay from its
	// intended time to its actual send, in µs (nil in closed loop).
	SendLag *hdrhistogram.Histogram
	// PeakConnections is how many workers (one connection each) sent
	// requests: in closed loop Connections, in open loop those the load
	// needed (the idle worker used last goes first); MaxConnections the
	// bound it had (after RLIMIT_NOFILE).
	PeakConnections, MaxConnections int
	// CPU is this process's CPU time (user + system, getrusage) over the
	// measured window: the generator's own cost, whatever else the
	// process does beside it.
	CPU time.Duration
	// Completed counts responses (any status) that arrived inside the
	// window, whatever their send time: the throughput actually delivered.
	// It differs from Requests in open loop under overload, where the
	// window is spent answering a backlog scheduled earlier.
	Completed int64
	// CompletedStatus splits Completed by status code.
	CompletedStatus map[int]int64
	Status          map[int]int64 // measured responses by status code
	// ErrorKinds counts measured errors by message (capped at a few kinds).
	ErrorKinds map[string]int64
	Window     time.Duration // the measured window's length
	Offered    float64       // open loop: the requested rate

	// Latency holds every measured response (any status); Admitted only 2xx.
	// In open loop both are measured from the intended send time.
	Latency  *hdrhistogram.Histogram
	Admitted *hdrhistogram.Histogram
	// Service holds every measured response timed from its actual send: the
	// target's own answer time, without the generator's backlog. Equal to
	// Latency in closed loop.
	Service *hdrhistogram.Histogram
}

// RPS is responses (any status) completed inside the window per second.
func (r *Result) RPS() float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(r.Completed) / r.Window.Seconds()
}

// Non2xx counts measured responses whose status is outside 200..299.
func (r *Result) Non2xx() int64 {
	var n int64
	for code, c := range r.Status {
		if code < 200 || code > 299 {
			n += c
		}
	}
	return n
}

// Percentile of all measured responses, as a duration.
func (r *Result) Percentile(q float64) time.Duration {
	return usToDuration(r.Latency.ValueAtQuantile(q))
}

// Max of all measured responses.
func (r *Result) Max() time.Duration { return usToDuration(r.Latency.Max()) }

// Summary is a one-line human report.
func (r *Result) Summary() string {
	codes := make([]int, 0, len(r.Status))
	for c := range r.Status {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var sb strings.Builder
	for _, c := range codes {
		fmt.Fprintf(&sb, " %d:%d", c, r.Status[c])
	}
	return fmt.Sprintf("rps=%.0f p50=%v p90=%v p99=%v p99.9=%v max=%v n=%d errors=%d unsent=%d status:%s",
		r.RPS(), r.Percentile(50), r.Percentile(90), r.Percentile(99), r.Percentile(99.9), r.Max(),
		r.Requests, r.Errors, r.Unsent, sb.String())
}

func usToDuration(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUS, histMaxUS, histSig) }

// target is one parsed URL, ready to be copied into a fasthttp.Request.
type target struct {
	host   string // host:port for the Host header and the client
	uri    string // path and query
	client *fasthttp.HostClient
}

// CheckLoopback returns an error unless every URL's host is a loopback
// address (or "localhost").
func CheckLoopback(urls []string) error {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("loadgen: parse %q: %w", raw, err)
		}
		h := u.Hostname()
		if h == "localhost" {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("loadgen: %q is not a loopback target (set AllowRemote to load remote hosts)", raw)
		}
	}
	return nil
}

func (o *Options) normalize() error {
	if len(o.URLs) == 0 {
		return errors.New("loadgen: no URLs")
	}
	if o.Duration <= 0 {
		return errors.New("loadgen: Duration must be > 0 (every run is bounded)")
	}
	if o.Warmup < 0 || o.Rate < 0 {
		return errors.New("loadgen: negative Warmup or Rate")
	}
	if o.Connections <= 0 {
		o.Connections = 64
	}
	if o.Rate == 0 || o.MaxConnections < o.Connections {
		o.MaxConnections = o.Connections
	}
	if o.MaxConnections > o.Connections {
		// Every connection is a file; keep room for the rest of the process.
		limit := raiseNoFile(uint64(o.MaxConnections) + fileReserve)
		if limit < uint64(o.Connections)+fileReserve {
			return fmt.Errorf("loadgen: %d connections need more open files than RLIMIT_NOFILE allows (%d)", o.Connections, limit)
		}
		o.MaxConnections = min(o.MaxConnections, int(limit-fileReserve))
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Method == "" {
		o.Method = fasthttp.MethodGet
		if o.Body != nil {
			o.Method = fasthttp.MethodPost
		}
	}
	if o.Body != nil && o.ContentType == "" {
		o.ContentType = "application/octet-stream"
	}
	if !o.AllowRemote {
		if err := CheckLoopback(o.URLs); err != nil {
			return err
		}
	}
	return nil
}

func buildTargets(o *Options) ([]target, error) {
	clients := map[string]*fasthttp.HostClient{}
	targets := make([]target, 0, len(o.URLs))
	for _, raw := range o.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("loadgen: parse %q: %w", raw, err)
		}
		if u.Scheme != "http" {
			return nil, fmt.Errorf("loadgen: %q: only http:// is supported", raw)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
		c := clients[host]
		if c == nil {
			c = &fasthttp.HostClient{
				Addr:         host,
				MaxConns:     o.MaxConnections,
				ReadTimeout:  o.Timeout,
				WriteTimeout: o.Timeout,
				// No silent retries: each attempt must be counted exactly once.
				MaxIdemponentCallAttempts: 1,
				// Waiting for a free connection would hide queueing inside the
				// client; we have exactly one worker per connection anyway.
				MaxConnWaitTimeout:            0,
				DisableHeaderNamesNormalizing: true,
				// The connection used last goes first: only as many stay busy
				// as the load needs, and they stay warm.
				ConnPoolStrategy:         fasthttp.LIFO,
				NoDefaultUserAgentHeader: true,
			}
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() != nil && ip.IsLoopback() {
				c.Dial = loopbackDialer(o.Timeout)
			}
			clients[host] = c
		}
		uri := u.RequestURI()
		targets = append(targets, target{host: u.Host, uri: uri, client: c})
	}
	return targets, nil
}

// loopbackDialer dials from 127.0.0.1 to 127.0.0.sourceAddrs in turn.
func loopbackDialer(timeout time.Duration) fasthttp.DialFunc {
	var n atomic.Uint32
	return func(addr string) (net.Conn, error) {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+n.Add(1)%sourceAddrs))}
		d := net.Dialer{LocalAddr: src, Timeout: timeout}
		return d.Dial("tcp4", addr)
	}
}

// tally is a share of the run's counts; workers share statShards of them.
type tally struct {
	mu                       sync.Mutex
	requests, errors, unsent int64
	late                     int64
	completed                int64
	completedStatus          map[int]int64
	status                   map[int]int64
	errKinds                 map[string]int64
	lat, ok, svc, lag        *hdrhistogram.Histogram
}

func newTally() *tally {
	return &tally{status: map[int]int64{}, completedStatus: map[int]int64{}, errKinds: map[string]int64{},
		lat: newHist(), ok: newHist(), svc: newHist(), lag: newHist()}
}

func clampUS(d time.Duration) int64 {
	us := d.Microseconds()
	if us < histMinUS {
		return histMinUS
	}
	if us > histMaxUS {
		return histMaxUS
	}
	return us
}

// record tallies a measured request: lat is timed from the intended send
// (open loop) or the actual one, svc from the actual one.
func (t *tally) record(status int, err error, lat, svc time.Duration) {
	t.requests++
	if err != nil {
		t.errors++
		msg := err.Error()
		if _, seen := t.errKinds[msg]; seen || len(t.errKinds) < maxErrorKinds {
			t.errKinds[msg]++
		}
		return
	}
	t.status[status]++
	us := clampUS(lat)
	_ = t.lat.RecordValue(us) // in range by construction
	_ = t.svc.RecordValue(clampUS(svc))
	if status >= 200 && status <= 299 {
		_ = t.ok.RecordValue(us)
	}
}

// run is one Run's shared state.
type run struct {
	o                       *Options
	targets                 []target
	tallies                 [statShards]*tally
	start, measureFrom, end time.Time
	wg                      sync.WaitGroup
	workers                 int          // open loop: started so far (the dispatcher's alone)
	opening                 atomic.Int64 // open loop: workers started on demand, not answered yet
	used                    atomic.Int64 // open loop: workers that sent at least one request

	// The open loop's hand-off, under mu: the idle workers, the one idle
	// last on top, and the due slots that found none (oldest first).
	mu      sync.Mutex
	idle    []*worker
	pending []int64
	head    int  // pending[head:] are waiting
	closed  bool // the dispatcher is done: idle workers end
}

// measured says whether a request sent (or due) at t belongs to the window.
func (r *run) measured(t time.Time) bool { return !t.Before(r.measureFrom) && t.Before(r.end) }

// intended is the open-loop schedule: slot n falls due n/Rate after start.
func (r *run) intended(slot int64) time.Time {
	return r.start.Add(time.Duration(float64(slot) * float64(time.Second) / r.o.Rate))
}

// Run executes one bounded run and returns its measurements. It returns early
// (with what was measured so far) when ctx is cancelled.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	targets, err := buildTargets(&o)
	if err != nil {
		return nil, err
	}
	r := &run{o: &o, targets: targets, start: time.Now()}
	for i := range r.tallies {
		r.tallies[i] = newTally()
	}
	r.measureFrom = r.start.Add(o.Warmup)
	r.end = r.measureFrom.Add(o.Duration)
	// The hard stop also covers requests still in flight at the end.
	ctx, cancel := context.WithDeadline(ctx, r.end.Add(o.Timeout+time.Second))
	defer cancel()

	var cpuFrom, cpuTo time.Duration
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		callWindow(ctx, func(open bool) {
			if open {
				cpuFrom = processCPU()
			} else {
				cpuTo = processCPU()
			}
			if o.OnWindow != nil {
				o.OnWindow(open)
			}
		}, r.measureFrom, r.end)
	}()
	if o.Rate > 0 {
		r.openLoop(ctx)
	} else {
		for i := 0; i < o.Connections; i++ {
			r.wg.Add(1)
			go func(id int) {
				defer r.wg.Done()
				w := r.newWorker(id)
				defer w.release()
				w.closedLoop(ctx)
			}(i)
		}
		r.workers = o.Connections
	}
	r.wg.Wait()
	// Close what this run opened: the next run (a sweep's next point) must
	// start from its own connections, and neither side may run out of files.
	for _, t := range targets {
		t.client.CloseIdleConnections()
	}

	res := &Result{Status: map[int]int64{}, CompletedStatus: map[int]int64{}, ErrorKinds: map[string]int64{}, Window: o.Duration,
		Offered: o.Rate, Latency: newHist(), Admitted: newHist(), Service: newHist(),
		PeakConnections: r.workers, MaxConnections: o.MaxConnections, CPU: max(0, cpuTo-cpuFrom)}
	if o.Rate > 0 {
		res.SendLag = newHist()
		res.PeakConnections = int(r.used.Load())
	}
	for _, s := range r.tallies {
		res.Requests += s.requests
		res.Errors += s.errors
		res.Unsent += s.unsent
		res.Late += s.late
		res.Completed += s.completed
		for k, v := range s.completedStatus {
			res.CompletedStatus[k] += v
		}
		for k, v := range s.status {
			res.Status[k] += v
		}
		for k, v := range s.errKinds {
			if _, seen := res.ErrorKinds[k]; seen || len(res.ErrorKinds) < maxErrorKinds {
				res.ErrorKinds[k] += v
			}
		}
		res.Latency.Merge(s.lat)
		res.Admitted.Merge(s.ok)
		res.Service.Merge(s.svc)
		if res.SendLag != nil {
			res.SendLag.Merge(s.lag)
		}
	}
	if err := ctx.Err(); err != nil && time.Now().Before(r.end) {
		// Cancelled by the caller before the window closed: shorten it so
		// RPS stays honest.
		if w := time.Since(r.measureFrom); w > 0 && w < res.Window {
			res.Window = w
		}
	}
	return res, nil
}

// openLoop is the dispatcher: it releases every slot of the schedule at its
// intended time to the idle worker (one connection each) that went idle
// last, and starts another worker whenever a slot finds none idle (up to
// MaxConnections, maxOpening at once); a slot that cannot get one waits,
// in order, for the next worker to finish. It returns once every slot
// before the end was released or counted, and the workers have finished.
func (r *run) openLoop(ctx context.Context) {
	for range r.o.Connections {
		r.spawn(ctx, false, -1)
	}
	dropped := r.tallies[0] // the dispatcher's own tally: only unsent, under its mutex
	unsent := func(n int64) {
		dropped.mu.Lock()
		dropped.unsent += n
		dropped.mu.Unlock()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	slot := int64(0)
	for ctx.Err() == nil {
		now := time.Now()
		at := r.intended(slot)
		for ; !at.After(now) && at.Before(r.end); at = r.intended(slot) {
			if !r.dispatch(ctx, slot, now.Sub(at) <= busyLag) && r.measured(at) {
				unsent(1)
			}
			slot++
		}
		if !at.Before(r.end) {
			break
		}
		timer.Reset(at.Sub(now))
		select {
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	// Cancelled: whatever the window still held was never sent.
	var never int64
	for at := r.intended(slot); at.Before(r.end); at = r.intended(slot) {
		if r.measured(at) {
			never++
		}
		slot++
	}
	unsent(never)
	r.mu.Lock()
	r.closed = true
	idle := r.idle
	r.idle = nil
	r.mu.Unlock()
	for _, w := range idle {
		close(w.in)
	}
}

// dispatch hands slot to the idle worker on top, a new worker (when
// mayOpen), or the pending queue; false when the queue is full (the slot
// is dropped).
func (r *run) dispatch(ctx context.Context, slot int64, mayOpen bool) bool {
	r.mu.Lock()
	if n := len(r.idle); n > 0 {
		w := r.idle[n-1]
		r.idle = r.idle[:n-1]
		r.mu.Unlock()
		w.in <- slot // an idle worker's channel is empty: this never blocks
		return true
	}
	if mayOpen && r.workers < r.o.MaxConnections && r.opening.Load() < maxOpening {
		r.mu.Unlock()
		r.spawn(ctx, true, slot)
		return true
	}
	defer r.mu.Unlock()
	if len(r.pending)-r.head >= queueCap {
		return false
	}
	if r.head > 0 && r.head == len(r.pending) {
		r.pending, r.head = r.pending[:0], 0
	}
	r.pending = append(r.pending, slot)
	return true
}

// spawn starts a worker (from the dispatcher's goroutine only): opening
// when started for want of an idle one, with its first slot; idle when
// first < 0.
func (r *run) spawn(ctx context.Context, opening bool, first int64) {
	id := r.workers
	r.workers++
	w := r.newWorker(id)
	w.in = make(chan int64, 1)
	w.opening = opening
	if opening {
		r.opening.Add(1)
	}
	if first >= 0 {
		w.in <- first
	} else {
		r.mu.Lock()
		r.idle = append(r.idle, w)
		r.mu.Unlock()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer w.release()
		w.openLoop(ctx)
	}()
}

// next is a worker's next slot: the oldest pending one, or else the one
// the dispatcher hands it once idle; false when the run is over.
func (r *run) next(w *worker) (int64, bool) {
	r.mu.Lock()
	if r.head < len(r.pending) {
		slot := r.pending[r.head]
		r.head++
		r.mu.Unlock()
		return slot, true
	}
	if r.closed {
		r.mu.Unlock()
		return 0, false
	}
	r.idle = append(r.idle, w)
	r.mu.Unlock()
	slot, ok := <-w.in
	return slot, ok
}

type worker struct {
	r       *run
	st      *tally
	id      int
	req     *fasthttp.Request
	resp    *fasthttp.Response
	opening bool       // started on demand, its first answer not in yet (run.opening)
	in      chan int64 // open loop: the slot the dispatcher hands this worker
	used    bool       // open loop: has sent a request
}

func (r *run) newWorker(id int) *worker {
	return &worker{r: r, st: r.tallies[id%statShards], id: id, req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
}

func (w *worker) release() {
	fasthttp.ReleaseRequest(w.req)
	fasthttp.ReleaseResponse(w.resp)
}

// do sends one request to the n-th target (round-robin) and reports its
// status (or error).
func (w *worker) do(n int64) (int, error) {
	o, req, resp := w.r.o, w.req, w.resp
	t := &w.r.targets[n%int64(len(w.r.targets))]
	req.Reset()
	req.Header.SetMethod(o.Method)
	req.SetRequestURI(t.uri)
	req.Header.SetHost(t.host)
	if o.Body != nil {
		req.Header.SetContentType(o.ContentType)
		req.SetBody(o.Body)
	}
	resp.Reset()
	if err := t.client.Do(req, resp); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

func (w *worker) closedLoop(ctx context.Context) {
	for seq := int64(w.id); ctx.Err() == nil; seq++ {
		sent := time.Now()
		if !sent.Before(w.r.end) {
			return
		}
		status, err := w.do(seq)
		done := time.Now()
		w.st.mu.Lock()
		w.countCompleted(status, err, done)
		if !sent.Before(w.r.measureFrom) {
			d := done.Sub(sent)
			w.st.record(status, err, d, d)
		}
		w.st.mu.Unlock()
	}
}

// openLoop sends the slots handed to this worker, each timed from its
// intended send: a slot that waited for a worker (none idle, none left to
// start) is charged the wait. Slots due at the end, or after a cancel, are
// counted unsent.
func (w *worker) openLoop(ctx context.Context) {
	slot, ok := <-w.in
	for ; ok; slot, ok = w.r.next(w) {
		intended := w.r.intended(slot)
		sent := time.Now()
		if ctx.Err() != nil || !sent.Before(w.r.end) {
			if w.r.measured(intended) {
				w.st.mu.Lock()
				w.st.unsent++
				w.st.mu.Unlock()
			}
			continue
		}
		if !w.used {
			w.used = true
			w.r.used.Add(1)
		}
		status, err := w.do(slot)
		done := time.Now()
		if w.opening {
			w.opening = false
			w.r.opening.Add(-1)
		}
		w.st.mu.Lock()
		w.countCompleted(status, err, done)
		if w.r.measured(intended) {
			w.st.record(status, err, done.Sub(intended), done.Sub(sent))
			lag := sent.Sub(intended)
			_ = w.st.lag.RecordValue(clampUS(lag))
			if lag > LateAfter {
				w.st.late++
			}
		}
		w.st.mu.Unlock()
	}
}

// countCompleted counts a response that arrived inside the window; the
// caller holds the tally's mutex.
func (w *worker) countCompleted(status int, err error, done time.Time) {
	if err == nil && w.r.measured(done) {
		w.st.completed++
		w.st.completedStatus[status]++
	}
}

// callWindow calls f(true) at from and f(false) at end, or at once when
// ctx ends first (and then f(true) too if it was not called yet, so the
// caller always gets the pair).
func callWindow(ctx context.Context, f func(open bool), from, end time.Time) {
	for i, at := range []time.Time{from, end} {
		t := time.NewTimer(time.Until(at))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		f(i == 0)
	}
}
