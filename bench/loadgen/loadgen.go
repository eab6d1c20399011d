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
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

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
	Connections int
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
				MaxConns:     o.Connections,
				ReadTimeout:  o.Timeout,
				WriteTimeout: o.Timeout,
				// No silent retries: each attempt must be counted exactly once.
				MaxIdemponentCallAttempts: 1,
				// Waiting for a free connection would hide queueing inside the
				// client; we have exactly one worker per connection anyway.
				MaxConnWaitTimeout:            0,
				DisableHeaderNamesNormalizing: true,
				NoDefaultUserAgentHeader:      true,
			}
			clients[host] = c
		}
		uri := u.RequestURI()
		targets = append(targets, target{host: u.Host, uri: uri, client: c})
	}
	return targets, nil
}

// workerStats is one worker's private tally, merged at the end so the hot
// path takes no locks.
type workerStats struct {
	requests, errors, unsent int64
	completed                int64
	completedStatus          map[int]int64
	status                   map[int]int64
	errKinds                 map[string]int64
	lat, ok, svc             *hdrhistogram.Histogram
}

func newWorkerStats() *workerStats {
	return &workerStats{status: map[int]int64{}, completedStatus: map[int]int64{}, errKinds: map[string]int64{}, lat: newHist(), ok: newHist(), svc: newHist()}
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

func (w *workerStats) record(status int, err error, lat, svc time.Duration) {
	w.requests++
	if err != nil {
		w.errors++
		msg := err.Error()
		if _, seen := w.errKinds[msg]; seen || len(w.errKinds) < maxErrorKinds {
			w.errKinds[msg]++
		}
		return
	}
	w.status[status]++
	us := clampUS(lat)
	_ = w.lat.RecordValue(us) // in range by construction
	_ = w.svc.RecordValue(clampUS(svc))
	if status >= 200 && status <= 299 {
		_ = w.ok.RecordValue(us)
	}
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
	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	end := measureFrom.Add(o.Duration)
	// The hard stop also covers requests still in flight at the end.
	ctx, cancel := context.WithDeadline(ctx, end.Add(o.Timeout+time.Second))
	defer cancel()

	stats := make([]*workerStats, o.Connections)
	var wg sync.WaitGroup
	if o.OnWindow != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			callWindow(ctx, o.OnWindow, measureFrom, end)
		}()
	}
	for i := 0; i < o.Connections; i++ {
		stats[i] = newWorkerStats()
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			w := worker{o: &o, targets: targets, st: stats[id], id: id, start: start, measureFrom: measureFrom, end: end}
			if o.Rate > 0 {
				w.openLoop(ctx)
			} else {
				w.closedLoop(ctx)
			}
		}(i)
	}
	wg.Wait()

	res := &Result{Status: map[int]int64{}, CompletedStatus: map[int]int64{}, ErrorKinds: map[string]int64{}, Window: o.Duration,
		Offered: o.Rate, Latency: newHist(), Admitted: newHist(), Service: newHist()}
	for _, s := range stats {
		res.Requests += s.requests
		res.Errors += s.errors
		res.Unsent += s.unsent
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
	}
	if err := ctx.Err(); err != nil && time.Now().Before(end) {
		// Cancelled by the caller before the window closed: shorten it so
		// RPS stays honest.
		if w := time.Since(measureFrom); w > 0 && w < res.Window {
			res.Window = w
		}
	}
	return res, nil
}

type worker struct {
	o                       *Options
	targets                 []target
	st                      *workerStats
	id                      int
	start, measureFrom, end time.Time
}

// do sends one request and reports its status (or error).
func (w *worker) do(req *fasthttp.Request, resp *fasthttp.Response, seq int) (int, error) {
	t := &w.targets[(w.id+seq)%len(w.targets)]
	req.Reset()
	req.Header.SetMethod(w.o.Method)
	req.SetRequestURI(t.uri)
	req.Header.SetHost(t.host)
	if w.o.Body != nil {
		req.Header.SetContentType(w.o.ContentType)
		req.SetBody(w.o.Body)
	}
	resp.Reset()
	if err := t.client.Do(req, resp); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

func (w *worker) closedLoop(ctx context.Context) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for seq := 0; ctx.Err() == nil; seq++ {
		sent := time.Now()
		if !sent.Before(w.end) {
			return
		}
		status, err := w.do(req, resp, seq)
		done := time.Now()
		w.countCompleted(status, err, done)
		if !sent.Before(w.measureFrom) {
			d := done.Sub(sent)
			w.st.record(status, err, d, d)
		}
	}
}

func (w *worker) openLoop(ctx context.Context) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	// Each worker owns every Connections-th slot of the global schedule, so
	// the total is Rate/s and the workers' sends interleave evenly.
	interval := time.Duration(float64(time.Second) * float64(w.o.Connections) / w.o.Rate)
	if interval <= 0 {
		interval = 1
	}
	offset := time.Duration(float64(time.Second) * float64(w.id) / w.o.Rate)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for seq := 0; ; seq++ {
		intended := w.start.Add(offset + time.Duration(seq)*interval)
		if !intended.Before(w.end) {
			return
		}
		// Behind schedule at the end (overload): stop rather than drain the
		// backlog past the window, and report what was left.
		if ctx.Err() != nil || !time.Now().Before(w.end) {
			w.countUnsent(intended, interval)
			return
		}
		// from is where this request's latency starts. When the worker is
		// behind schedule (the previous answer came late) it is the intended
		// time: the target is charged for the wait it caused (no coordinated
		// omission). When the worker is early it sleeps, and the runtime's
		// timer slack (up to ~1ms when idle) is the generator's fault, not
		// the target's, so the clock starts at the actual send.
		from := intended
		if d := time.Until(intended); d > 0 {
			if d > 50*time.Microsecond {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					w.countUnsent(intended, interval)
					return
				}
			}
			from = time.Now()
		}
		sent := time.Now()
		status, err := w.do(req, resp, seq)
		done := time.Now()
		w.countCompleted(status, err, done)
		if !intended.Before(w.measureFrom) {
			w.st.record(status, err, done.Sub(from), done.Sub(sent))
		}
	}
}

// countCompleted counts a response that arrived inside the window.
func (w *worker) countCompleted(status int, err error, done time.Time) {
	if err == nil && !done.Before(w.measureFrom) && done.Before(w.end) {
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

// countUnsent tallies the measured slots from intended to the end that this
// worker will never send (the run was cut short).
func (w *worker) countUnsent(intended time.Time, interval time.Duration) {
	for t := intended; t.Before(w.end); t = t.Add(interval) {
		if !t.Before(w.measureFrom) {
			w.st.unsent++
		}
	}
}
