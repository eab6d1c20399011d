package role

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// The console: the admin page's live view. The process keeps a short
// history of each part's numbers (a sample a second, the last five
// minutes), taken from the snapshots the status page reads, so the
// request path pays nothing for it; the page draws them and the fleet,
// rollouts, flags, ghost differences and the hospital from two JSON
// endpoints it polls.

const (
	sampleEvery = time.Second
	samplesKept = 300 // five minutes
	// consoleWait bounds what the console asks etcd and the hospital for.
	consoleWait = 2 * time.Second
	// maxShown bounds the rows the console sends of each list.
	maxShown = 200
)

// probe is a part's numbers since it started: requests, 5xx (or bus
// errors), their latencies, and its admission limit now (0 without one).
type probe struct {
	requests, errors uint64
	latency          histogram.Histogram
	limit            int
}

// series is one part's history: a ring of samples, and the probe of the
// last tick the next sample is the difference from.
type series struct {
	name   string
	read   func() probe
	ring   [samplesKept]sample
	n      int // samples in ring
	next   int // where the next goes
	last   probe
	lastAt time.Time
	init   bool
}

// sample is one second of a part: requests and errors per second, p50
// and p99 in milliseconds of what it answered in that second, its limit.
type sample struct {
	At     int64   // unix milliseconds
	Rate   float64 // requests per second
	Errors float64 // errors per second
	P50    float64 // ms
	P99    float64 // ms
	Limit  int
}

// MarshalJSON writes a sample as an array: [at, rate, errors, p50, p99,
// limit]; five minutes of a part stay small.
func (s sample) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "[%d,%g,%g,%.3f,%.3f,%d]", s.At, s.Rate, s.Errors, s.P50, s.P99, s.Limit), nil
}

// tick takes a sample: the difference from the last probe, over the
// time since it (the first probe is only the baseline).
func (s *series) tick(now time.Time) {
	p := s.read()
	if !s.init {
		s.last, s.lastAt, s.init = p, now, true
		return
	}
	secs := now.Sub(s.lastAt).Seconds()
	smp := sample{At: now.UnixMilli(), Limit: p.limit}
	if p.requests >= s.last.requests && secs > 0 {
		smp.Rate = float64(p.requests-s.last.requests) / secs
	}
	if p.errors >= s.last.errors && secs > 0 {
		smp.Errors = float64(p.errors-s.last.errors) / secs
	}
	if w := p.latency.Sub(s.last.latency); w.Count() > 0 {
		smp.P50 = float64(w.Quantile(0.5)) / 1e6
		smp.P99 = float64(w.Quantile(0.99)) / 1e6
	}
	s.last, s.lastAt = p, now
	s.ring[s.next] = smp
	s.next = (s.next + 1) % samplesKept
	s.n = min(s.n+1, samplesKept)
}

func (s *series) samples() []sample {
	out := make([]sample, 0, s.n)
	for i := range s.n {
		out = append(out, s.ring[(s.next-s.n+i+samplesKept)%samplesKept])
	}
	return out
}

// console is what the console shows beyond the status sections: the
// sampled series, and where to read the fleet (etcd), the ghost
// comparisons (the process's bus nodes) and the hospital (its services'
// event buses).
type console struct {
	mu     sync.Mutex
	series []*series
	cli    *clientv3.Client
	nodes  []*nanobus.Node
	buses  []*events.Bus
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

func newConsole() *console {
	return &console{stop: make(chan struct{}), done: make(chan struct{})}
}

// add records a part's numbers from now on, every sampleEvery.
func (c *console) add(name string, read func() probe) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &series{name: name, read: read}
	s.tick(time.Now()) // the baseline the first sample is taken from
	c.series = append(c.series, s)
}

// watch shows a part of the process: its series (the front first), its
// node's ghost comparisons and peers, its hospital (ev, nil without).
func (c *console) watch(name string, node *nanobus.Node, ev *events.Bus, read func() probe) {
	c.add(name, read)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes = append(c.nodes, node)
	if ev != nil && len(ev.Declaration().Subscribes) > 0 {
		c.buses = append(c.buses, ev)
	}
	// The front's chart line comes first, whenever it started.
	slices.SortStableFunc(c.series, func(a, b *series) int { return frontRank(a.name) - frontRank(b.name) })
}

// limitOf reads a limiter's limit, nil without one.
func limitOf(lim *limit.Limiter) func() int {
	if lim == nil {
		return nil
	}
	return lim.Limit
}

func (c *console) run() {
	defer close(c.done)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.mu.Lock()
			for _, s := range c.series {
				s.tick(now)
			}
			c.mu.Unlock()
		}
	}
}

func (c *console) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.done
}

// seriesOut is /status/series.json.
type seriesOut struct {
	Every   string            `json:"every"`
	Columns []string          `json:"columns"`
	Series  []seriesSamplesJS `json:"series"`
}

type seriesSamplesJS struct {
	Name    string   `json:"name"`
	Samples []sample `json:"samples"`
}

// seriesJSON is /status/series.json: every part's samples, or with
// ?since=UNIX_MS only those taken after it (the console asks for what it
// lacks, not for five minutes every two seconds).
func (a *Admin) seriesJSON(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			http.Error(w, fmt.Sprintf("since=%q: want unix milliseconds", v), http.StatusBadRequest)
			return
		}
		since = n
	}
	out := seriesOut{Every: sampleEvery.String(), Columns: []string{"at_ms", "rate", "errors", "p50_ms", "p99_ms", "limit"}}
	c := a.console
	c.mu.Lock()
	for _, s := range c.series {
		smp := s.samples()
		i := 0
		for i < len(smp) && smp[i].At <= since {
			i++
		}
		out.Series = append(out.Series, seriesSamplesJS{Name: s.name, Samples: smp[i:]})
	}
	c.mu.Unlock()
	writeJSON(w, out)
}

// consoleOut is /status/console.json: what the console shows beside the
// charts. Each part says why it is missing when it cannot be read.
type consoleOut struct {
	Ready     bool           `json:"ready"`
	Reason    string         `json:"reason,omitempty"`
	Fleet     []fleetRow     `json:"fleet"`
	FleetErr  string         `json:"fleet_error,omitempty"`
	Rollouts  []rolloutRow   `json:"rollouts"`
	Flags     []flagRow      `json:"flags"`
	Ghosts    []ghostGroup   `json:"ghosts"`
	Hospital  *hospitalOut   `json:"hospital,omitempty"`
	Truncated map[string]int `json:"truncated,omitempty"` // rows left out, per list
	Sections  []string       `json:"sections"`
}

// fleetRow is one registered instance.
type fleetRow struct {
	Service  string    `json:"service"`
	Version  string    `json:"version"`
	Weight   int       `json:"weight"` // the rollout policy's weight for its version; -1: no policy
	State    string    `json:"state"`  // "registered", or "connected"/"down" as this process sees it
	Bus      string    `json:"bus"`
	Admin    string    `json:"admin,omitempty"`
	Node     string    `json:"node"`
	Started  time.Time `json:"started"`
	Protocol int       `json:"protocol"`
}

type rolloutRow struct {
	Service string         `json:"service"`
	Weights map[string]int `json:"weights,omitempty"`
	Ghost   string         `json:"ghost,omitempty"`
	AB      bool           `json:"ab,omitempty"`
	Ramp    *rampRow       `json:"ramp,omitempty"`
}

type rampRow struct {
	From, To string
	Percent  int    `json:"percent"`
	Step     int    `json:"step"`
	Steps    []int  `json:"steps"`
	State    string `json:"state"`
	Note     string `json:"note,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Since    string `json:"since"`
}

type flagRow struct {
	Name    string `json:"name"`
	Percent int    `json:"percent"`
	By      string `json:"by,omitempty"`
}

// ghostGroup is differing ghost replies that differ alike: the same
// route, the same difference, the same two statuses; Count of them, the
// newest at Last, and its replies as the example (replies that differ
// only in the ID they carry are one group, not one row each).
type ghostGroup struct {
	Service string    `json:"service"`
	Route   string    `json:"route"`
	What    string    `json:"what"`
	Live    string    `json:"live"`
	Ghost   string    `json:"ghost"`
	Count   int       `json:"count"`
	Last    time.Time `json:"last"`
	// Totals of the route, from the node that ghosted it.
	Ghosted, Matched, Differing uint64
}

type hospitalOut struct {
	Parked   int64          `json:"parked"`   // sent to the hospital since start
	Patients []patientRow   `json:"patients"` // in it now
	Errors   []string       `json:"errors,omitempty"`
	ByState  map[string]int `json:"by_state"`
}

type patientRow struct {
	ID        string    `json:"id"`
	Handler   string    `json:"handler"`
	Topic     string    `json:"topic"`
	State     string    `json:"state"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	Parked    time.Time `json:"parked"`
	Waiting   int       `json:"waiting"`
}

func (a *Admin) consoleJSON(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), consoleWait)
	defer cancel()
	out := consoleOut{Ready: true, Truncated: map[string]int{}, Fleet: []fleetRow{}, Rollouts: []rolloutRow{}, Flags: []flagRow{}, Ghosts: []ghostGroup{}}
	if err := a.Ready(ctx); err != nil {
		out.Ready, out.Reason = false, err.Error()
	}
	c := a.console
	c.mu.Lock()
	cli, nodes, buses := c.cli, slices.Clone(c.nodes), slices.Clone(c.buses)
	c.mu.Unlock()
	a.mu.Lock()
	for _, s := range a.sections {
		out.Sections = append(out.Sections, s.Name)
	}
	a.mu.Unlock()
	if cli != nil {
		if err := fleet(ctx, cli, nodes, &out); err != nil {
			out.FleetErr = err.Error()
		}
	} else {
		out.FleetErr = "no etcd client yet"
	}
	var ghosts []report.GhostStats
	for _, n := range nodes {
		ghosts = append(ghosts, n.GhostStats()...)
	}
	out.Ghosts = append(out.Ghosts, groupGhosts(ghosts)...)
	if len(buses) > 0 {
		out.Hospital = hospital(ctx, buses)
	}
	cut := func(name string, n int) int {
		if n > maxShown {
			out.Truncated[name] = n - maxShown
			return maxShown
		}
		return n
	}
	out.Fleet = out.Fleet[:cut("fleet", len(out.Fleet))]
	out.Ghosts = out.Ghosts[:cut("ghosts", len(out.Ghosts))]
	if out.Hospital != nil {
		out.Hospital.Patients = out.Hospital.Patients[:cut("patients", len(out.Hospital.Patients))]
	}
	writeJSON(w, out)
}

// fleet reads every registered instance, the rollout policies and the
// flags from etcd.
func fleet(ctx context.Context, cli *clientv3.Client, nodes []*nanobus.Node, out *consoleOut) error {
	st := rollout.NewStore(cli, "")
	inst, err := st.Instances(ctx, "")
	if err != nil {
		return fmt.Errorf("etcd %s: instances: %w", strings.Join(cli.Endpoints(), ","), err)
	}
	policies, err := st.Policies(ctx)
	if err != nil {
		return fmt.Errorf("etcd %s: rollout policies: %w", strings.Join(cli.Endpoints(), ","), err)
	}
	flags, err := st.Flags(ctx)
	if err != nil {
		return fmt.Errorf("etcd %s: flags: %w", strings.Join(cli.Endpoints(), ","), err)
	}
	// How this process's nodes see each instance, by bus address.
	seen := map[string]bool{}
	for _, n := range nodes {
		for _, svc := range n.Services() {
			for _, ps := range n.Instances(svc) {
				seen[ps.Addr] = seen[ps.Addr] || ps.Ready
			}
		}
	}
	for svc, versions := range inst {
		for v, regs := range versions {
			for _, reg := range regs {
				row := fleetRow{Service: svc, Version: v, Weight: -1, State: "registered", Bus: reg.Addr, Admin: reg.Admin,
					Node: reg.Node, Started: reg.Started, Protocol: max(reg.Protocol, 1)}
				if p := policies[svc]; p != nil && len(p.Weights) > 0 {
					row.Weight = p.Weights[v]
				}
				if ready, ok := seen[reg.Addr]; ok {
					row.State = map[bool]string{true: "connected", false: "down"}[ready]
				}
				out.Fleet = append(out.Fleet, row)
			}
		}
	}
	slices.SortFunc(out.Fleet, func(a, b fleetRow) int {
		return strings.Compare(a.Service+" "+a.Version+" "+a.Bus, b.Service+" "+b.Version+" "+b.Bus)
	})
	for svc, p := range policies {
		row := rolloutRow{Service: svc, Weights: p.Weights, AB: p.AB != nil}
		if p.Ghost != nil {
			row.Ghost = fmt.Sprintf("%s (%d%%)", p.Ghost.Version, p.Ghost.Percent)
		}
		if rp := p.Ramp; rp != nil && len(rp.Steps) > 0 {
			since := rp.StepStarted
			if !rp.Ended.IsZero() {
				since = rp.Ended
			}
			row.Ramp = &rampRow{From: rp.From, To: rp.To, Percent: rp.Percent(), Step: rp.Step, Steps: rp.Steps, State: rp.State,
				Note: rp.Note, Reason: rp.Reason, Since: time.Since(since).Round(time.Second).String()}
		}
		out.Rollouts = append(out.Rollouts, row)
	}
	slices.SortFunc(out.Rollouts, func(a, b rolloutRow) int { return strings.Compare(a.Service, b.Service) })
	for _, f := range flags {
		out.Flags = append(out.Flags, flagRow{Name: f.Name, Percent: f.Percent, By: f.By})
	}
	return nil
}

// groupGhosts collapses the ghost differences the nodes keep: pairs alike
// but for their time are one row with a count.
func groupGhosts(stats []report.GhostStats) []ghostGroup {
	idx := map[string]int{}
	var out []ghostGroup
	for _, g := range stats {
		for _, d := range g.Diffs {
			live, ghost := shown(d.Live), shown(d.Ghost)
			k := fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", g.Service, g.Route, d.What, d.Live.Status, d.Ghost.Status)
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, ghostGroup{Service: g.Service, Route: g.Route, What: d.What, Live: live, Ghost: ghost,
					Ghosted: g.Ghosted, Matched: g.Matched, Differing: g.Differing})
			}
			out[i].Count++
			if d.At.After(out[i].Last) {
				out[i].Last, out[i].Live, out[i].Ghost = d.At, live, ghost
			}
		}
	}
	slices.SortStableFunc(out, func(a, b ghostGroup) int { return b.Count - a.Count })
	return out
}

// shown is a reply as one line: its status and the start of its body.
func shown(r report.ShownReply) string {
	body := strings.Join(strings.Fields(r.Body), " ")
	if len(body) > 160 {
		n := 160
		for n > 0 && !utf8.RuneStart(body[n]) {
			n-- // not inside a character
		}
		body = body[:n] + "…"
	}
	return fmt.Sprintf("%d %s", r.Status, body)
}

// hospital lists the patients of the process's event buses.
func hospital(ctx context.Context, buses []*events.Bus) *hospitalOut {
	h := &hospitalOut{Patients: []patientRow{}, ByState: map[string]int{}, Errors: []string{}}
	for _, b := range buses {
		h.Parked += b.Stats().Parked
		ps, err := b.Patients(ctx)
		if err != nil {
			h.Errors = append(h.Errors, err.Error())
			continue
		}
		for _, p := range ps {
			h.ByState[p.State]++
			h.Patients = append(h.Patients, patientRow{ID: p.ID, Handler: p.Handler, Topic: p.Event.Topic, State: p.State,
				Attempts: p.Attempts, LastError: p.LastError, Parked: p.Parked, Waiting: p.Waiting})
		}
	}
	slices.SortFunc(h.Patients, func(a, b patientRow) int { return b.Parked.Compare(a.Parked) })
	return h
}

// stopRamp is the console's action: POST /actions/ramp/stop with
// service=NAME stops the service's running ramp where it stands (the
// weights stay at its step), as `terminator rollout weights` does. It is
// behind the admin token as everything but the probes is, and it wants
// the header X-Terminator-Console: a page of another origin cannot send
// it without a preflight the admin never grants, so a browser that holds
// the token cannot be made to post it from elsewhere.
func (a *Admin) stopRamp(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Terminator-Console") == "" {
		http.Error(w, "console actions need the header X-Terminator-Console", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	service := r.FormValue("service")
	if service == "" || len(service) > 128 || strings.ContainsAny(service, "/ \x00") {
		http.Error(w, fmt.Sprintf("service %q: want a service name", service), http.StatusBadRequest)
		return
	}
	c := a.console
	c.mu.Lock()
	cli := c.cli
	c.mu.Unlock()
	if cli == nil {
		http.Error(w, "no etcd client yet", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	errNoRamp := errors.New("no running ramp")
	p, err := rollout.NewStore(cli, "").UpdatePolicy(ctx, service, func(p *rollout.Policy) (*rollout.Policy, error) {
		if p == nil || !p.Ramp.Stop("stopped from the console of "+a.Addr()) {
			return nil, errNoRamp
		}
		return p, nil
	})
	switch {
	case errors.Is(err, errNoRamp):
		http.Error(w, fmt.Sprintf("%s has no running ramp", service), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, fmt.Sprintf("stop the ramp of %s: %v", service, err), http.StatusBadGateway)
		return
	}
	a.log.Info("ramp stopped from the console", "service", service, "weights", p.Weights, "remote", r.RemoteAddr)
	writeJSON(w, map[string]any{"service": service, "state": p.Ramp.State, "weights": p.Weights})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// adminAdvertised is the admin address to register: the listener's, with
// an unspecified host ("0.0.0.0", "::") replaced by the bus's advertised
// host, which callers reach.
func adminAdvertised(admin, bus string) string {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return admin
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return admin
	}
	if _, rest, ok := strings.Cut(bus, "://"); ok {
		bus = rest
	}
	if bh, _, err := net.SplitHostPort(bus); err == nil {
		return net.JoinHostPort(bh, port)
	}
	return admin
}

// frontProbe reads a front's numbers: its HTTP responses and 5xx, the
// bus time of its calls, its admission limit.
func frontProbe(status func() (requests, errors uint64, limit int), node *nanobus.Node) func() probe {
	return func() probe {
		p := probe{}
		p.requests, p.errors, p.limit = status()
		for _, vs := range node.CallStats() {
			p.latency = p.latency.Add(vs.Latency)
		}
		return p
	}
}

// nodeProbe reads a service node's numbers: its handlers' requests, 5xx
// and times, and its limit on handlers (limit, nil without one). A
// stream's time is how long it lasted (an event subscription's read
// stream lasts many seconds): it is no latency, and left out.
func nodeProbe(node *nanobus.Node, limit func() int) func() probe {
	return func() probe {
		p := probe{}
		for _, rs := range node.RouteStats() {
			p.requests += rs.Requests
			p.errors += rs.Errors
			if !rs.Stream {
				p.latency = p.latency.Add(rs.Latency)
			}
		}
		if limit != nil {
			p.limit = limit()
		}
		return p
	}
}
