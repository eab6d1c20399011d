package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/bench/cputime"
	"github.com/terminator-gw/terminator/bench/loadgen"
)

// caseDef is one system under test and how it is loaded.
type caseDef struct {
	id, name string
	path     string // "" spreads over the page paths
	big      bool   // -big-c connections instead of -c
	page     bool   // answers the page: checked byte for byte first
	start    func(s *system) (base string, err error)
}

// The cases, in their default order. Names are what the tables show.
var caseDefs = []caseDef{
	{id: "hello", name: "fasthttp hello", path: "/", start: func(s *system) (string, error) { return s.startHello() }},
	{id: "nginx", name: "nginx return 200", path: "/", start: func(s *system) (string, error) { return s.startNginx("") }},
	{id: "nginx-proxy", name: "nginx -> fasthttp hello", path: "/", start: func(s *system) (string, error) {
		hello, err := s.startHello()
		if err != nil {
			return "", err
		}
		return s.startNginx(hello)
	}},
	{id: "go-proxy", name: "Go ReverseProxy -> fasthttp hello", path: "/", start: func(s *system) (string, error) {
		hello, err := s.startHello()
		if err != nil {
			return "", err
		}
		return s.startGoProxy(hello)
	}},
	{id: "echo", name: "terminator -> echo (1 bus hop)", path: "/echo", start: startAll},
	{id: "page", name: "page: terminator all", page: true, start: startAll},
	{id: "page-split", name: "page: terminator split", page: true, start: func(s *system) (string, error) {
		public, _, err := s.startTerminatorSplit()
		return public, err
	}},
	{id: "page-nats", name: "page: NATS micro", page: true, start: func(s *system) (string, error) { return s.startPageNATS(false) }},
	{id: "page-http", name: "page: HTTP fasthttp", page: true, start: func(s *system) (string, error) { return s.startPageHTTP(false) }},
	{id: "nginx-page", name: "page: nginx -> terminator all", page: true, start: func(s *system) (string, error) { return startNginxPage(s, true) }},
	{id: "page-c1024", name: "page: terminator all, big c", big: true, page: true, start: startAll},
	// Not run by default: -cases adds them.
	{id: "page-nats-one", name: "page: NATS micro, one process", page: true, start: func(s *system) (string, error) { return s.startPageNATS(true) }},
	{id: "page-http-one", name: "page: HTTP fasthttp, one process", page: true, start: func(s *system) (string, error) { return s.startPageHTTP(true) }},
	{id: "page-nats-c1024", name: "page: NATS micro, big c", big: true, page: true, start: func(s *system) (string, error) { return s.startPageNATS(false) }},
	{id: "page-http-c1024", name: "page: HTTP fasthttp, big c", big: true, page: true, start: func(s *system) (string, error) { return s.startPageHTTP(false) }},
	{id: "nginx-page-tcp", name: "page: nginx -> terminator all, TCP", page: true, start: func(s *system) (string, error) { return startNginxPage(s, false) }},
}

// sweepCase is the open-loop overload sweep, run after the rounds.
const sweepCase = "sweep"

var (
	defaultCases = []string{"hello", "nginx", "nginx-proxy", "go-proxy", "echo", "page", "page-split", "page-nats", "page-http", "nginx-page", "page-c1024", sweepCase}
	extraCases   = []string{"page-nats-one", "page-http-one", "page-nats-c1024", "page-http-c1024", "nginx-page-tcp"}
)

func startAll(s *system) (string, error) {
	public, _, err := s.startTerminatorAll()
	return public, err
}

func findCase(id string) (caseDef, bool) {
	for _, c := range caseDefs {
		if c.id == id {
			return c, true
		}
	}
	return caseDef{}, false
}

// sample is one case measured once by one tool.
type sample struct {
	Round          int
	RPS            float64
	P50, P99, P999 time.Duration
	Errors, Non2xx int64
	Requests       int64         // answers inside the window: what CPU is divided by
	Window         time.Duration // wall time between the two CPU readings
	CPU            time.Duration // every server process of the case
	GenCPU         time.Duration // the generator's own CPU time
	Foreign        time.Duration // busy time on the SUT CPUs that was not the case's (pinned runs)
	Procs          string        // the processes charged, e.g. "nginx x2, hello"
	Err            string        // set when the case could not run
}

// Goodput is the 2xx answers per second: rps scaled by the share of the
// answers in the window that were neither refused nor failed.
func (s sample) Goodput() float64 {
	if s.Requests <= 0 {
		return 0
	}
	good := max(s.Requests-s.Non2xx-s.Errors, 0)
	return s.RPS * float64(good) / float64(s.Requests)
}

// CPUPerReq is the case's CPU µs per answered request.
func (s sample) CPUPerReq() float64 {
	if s.Requests <= 0 {
		return 0
	}
	return float64(s.CPU.Microseconds()) / float64(s.Requests)
}

// key names a case measured by a tool.
type key struct{ id, tool string }

type runner struct {
	cfg     config
	ctx     context.Context
	tmp     string // scratch for this run
	sutList []int
	seedDir string
	ref     map[string][]byte // the terminator's answers, the reference
	samples map[key][]sample
	order   []key // first-seen order, for the tables
	sweeps  []*sweepResult
	refusal *refusalPrice // the dedicated refusal point, nil when not run
	notes   []string
	began   time.Time
}

func (r *runner) logf(format string, args ...any) { fmt.Fprintf(r.cfg.log, format+"\n", args...) }

func (r *runner) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.logf("note: "+format, args...)
}

// sutCPUs is the taskset list for the systems under test, "" unpinned.
func (r *runner) sutCPUs() string {
	if !r.cfg.pin {
		return ""
	}
	return r.cfg.sutCPUs
}

func (r *runner) record(id, tool string, s sample) {
	k := key{id, tool}
	if _, ok := r.samples[k]; !ok {
		r.order = append(r.order, k)
	}
	r.samples[k] = append(r.samples[k], s)
}

// run executes the configured cases and writes the reports.
func run(ctx context.Context, cfg config) (err error) {
	if cfg.log == nil {
		cfg.log = os.Stderr
	}
	if err := checkPinning(cfg); err != nil {
		return err
	}
	r := &runner{cfg: cfg, ctx: ctx, samples: map[key][]sample{}, began: time.Now()}
	if cfg.pin {
		r.sutList, _ = cputime.ParseList(cfg.sutCPUs)
	}
	var want []caseDef
	sweep := false
	for _, id := range cfg.cases {
		if id == sweepCase {
			sweep = true
			continue
		}
		c, ok := findCase(id)
		if !ok {
			return fmt.Errorf("unknown case %q (cases: %s, %s)", id, strings.Join(defaultCases, ","), strings.Join(extraCases, ","))
		}
		want = append(want, c)
	}
	if err := r.checkTools(want, sweep); err != nil {
		return err
	}
	if r.tmp, err = os.MkdirTemp("", "bench-harness-"); err != nil {
		return err
	}
	defer func() {
		// Whatever happened, every process goes first, then its files.
		procs.stopAll()
		if cfg.keep {
			r.logf("scratch (kept): %s", r.tmp)
		} else {
			os.RemoveAll(r.tmp)
		}
	}()
	sweeps := 0
	if sweep {
		sweeps = len(cfg.sweeps)
	}
	r.logf("about %v: %d cases x %d rounds, then %d sweep(s)", r.estimate(len(want), sweep).Round(time.Second), len(want), cfg.rounds, sweeps)

	if needsSeed(want) || sweep {
		r.seedDir = filepath.Join(r.tmp, "seed")
		r.logf("seeding %d profiles with %s ...", cfg.seed, cfg.bin)
		if r.ref, err = r.seed(r.seedDir); err != nil {
			return err
		}
	}
	for round := 1; round <= cfg.rounds && ctx.Err() == nil; round++ {
		// Each round starts one case further along, so no case always
		// runs first, on a box fresh from seeding.
		k := (round - 1) % max(1, len(want))
		for _, c := range append(want[k:len(want):len(want)], want[:k]...) {
			if ctx.Err() != nil {
				break
			}
			r.runCase(c, round)
		}
	}
	for _, flags := range cfg.sweeps {
		if sweep && ctx.Err() == nil {
			r.runSweep(flags)
		}
	}
	if sweep && ctx.Err() == nil {
		r.priceRefusal(r.summaries())
	}
	if ctx.Err() != nil {
		r.note("interrupted after %v: the tables show what was measured", time.Since(r.began).Round(time.Second))
	}
	werr := r.write()
	r.logf("done in %v", time.Since(r.began).Round(time.Second))
	return errors.Join(werr, ctx.Err())
}

// checkTools fails early, with what to do, when a binary is missing.
func (r *runner) checkTools(want []caseDef, sweep bool) error {
	need := map[string]string{}
	for _, c := range want {
		switch {
		case strings.HasPrefix(c.id, "page-nats"):
			need[r.cfg.natsBin] = "make bench-build"
			need[r.cfg.peersBin] = "make bench-build"
		case strings.HasPrefix(c.id, "page-http"), c.id == "hello", strings.HasSuffix(c.id, "-proxy"), c.id == "page-split":
			need[r.cfg.peersBin] = "make bench-build"
		}
	}
	if needsSeed(want) || sweep {
		need[r.cfg.bin] = "make build"
	}
	for bin, how := range need {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s is missing (run %s): %w", bin, how, err)
		}
	}
	return nil
}

func needsSeed(cases []caseDef) bool {
	return slices.ContainsFunc(cases, func(c caseDef) bool {
		return c.page || c.id == "echo" || c.id == "page-split"
	})
}

// estimate is how long the run should take, for the log.
func (r *runner) estimate(cases int, sweep bool) time.Duration {
	per := r.cfg.warm + r.cfg.dur + 2*time.Second // start, check, stop
	if r.cfg.wrk {
		per += r.cfg.wrkDur
	}
	d := 15*time.Second + time.Duration(cases*r.cfg.rounds)*per
	if sweep {
		d += time.Duration(len(r.cfg.sweeps)) * (time.Duration(len(sweepFractions)+1)*(r.cfg.warm+r.cfg.sweepDur) + 5*time.Second)
		d += r.cfg.warm + r.cfg.sweepDur + 5*time.Second // the refusal price
	}
	return d
}

// runCase starts the case's system, checks it, measures it with each tool
// and stops it.
func (r *runner) runCase(c caseDef, round int) {
	s, err := r.newSystem(c.id)
	if err != nil {
		r.record(c.id, "loadgen", sample{Round: round, Err: err.Error()})
		return
	}
	base, err := c.start(s)
	if err == nil && c.page {
		err = verifyPages("http://"+base, r.ref, r.cfg.seed)
	}
	if err != nil {
		r.logf("%-34s round %d: %v", c.name, round, err)
		r.record(c.id, "loadgen", sample{Round: round, Err: err.Error()})
		if serr := s.stop(); serr != nil {
			r.logf("stop %s: %v", c.id, serr)
		}
		return
	}
	var urls []string
	for _, p := range r.paths(c) {
		urls = append(urls, "http://"+base+p)
	}
	conns := r.cfg.conns
	if c.big {
		conns = r.cfg.bigConns
	}
	smp := r.measureLoadgen(s, loadgen.Options{URLs: urls, Connections: conns, Duration: r.cfg.dur, Warmup: r.cfg.warm})
	smp.Round = round
	r.logf("%-34s round %d loadgen %s", c.name, round, smp.line())
	r.record(c.id, "loadgen", smp)
	if r.cfg.wrk && r.ctx.Err() == nil {
		smp := r.measureWrk(s, base, r.paths(c), conns)
		smp.Round = round
		r.logf("%-34s round %d wrk     %s", c.name, round, smp.line())
		r.record(c.id, "wrk", smp)
	}
	if err := s.stop(); err != nil {
		r.note("round %d, %s: %v", round, c.id, err)
	}
}

func (r *runner) paths(c caseDef) []string {
	if c.path != "" {
		return []string{c.path}
	}
	return pagePaths(r.cfg.seed)
}

func (s sample) line() string {
	if s.Err != "" {
		return "failed: " + s.Err
	}
	return fmt.Sprintf("rps=%.0f p50=%v p99=%v p99.9=%v errors=%d non2xx=%d cpu=%.1fµs/req sut=%.0f%% gen=%.0f%% foreign=%.0f%% [%s]",
		s.RPS, s.P50, s.P99, s.P999, s.Errors, s.Non2xx, s.CPUPerReq(), pct(s.CPU, s.Window), pct(s.GenCPU, s.Window), pct(s.Foreign, s.Window), s.Procs)
}

// pct is a as a percentage of one CPU over window.
func pct(a, window time.Duration) float64 {
	if window <= 0 {
		return 0
	}
	return 100 * float64(a) / float64(window)
}

// reading is the CPU counters at one instant.
type reading struct {
	at   time.Time
	tree []cputime.Process // the system's processes
	sut  cputime.CPUTimes  // the SUT CPUs (pinned runs)
	self cputime.Process   // the harness: the built-in generator
	err  error
}

func (r *runner) read(s *system) reading {
	rd := reading{at: time.Now()}
	var e1, e2, e3 error
	rd.tree, e1 = cputime.Tree(s.pids()...)
	for _, p := range s.roots {
		// A server that died would silently stop costing anything.
		if e1 == nil && !slices.ContainsFunc(rd.tree, func(x cputime.Process) bool { return x.PID == p.pid() }) {
			e1 = fmt.Errorf("%s (pid %d) is gone", p.name, p.pid())
		}
	}
	rd.self, e2 = cputime.ReadProcess(os.Getpid())
	if r.cfg.pin {
		rd.sut, e3 = cputime.ReadCPUs(r.sutList)
	}
	rd.err = errors.Join(e1, e2, e3)
	return rd
}

// charge fills in the CPU columns of smp from two readings.
func (r *runner) charge(smp *sample, before, after reading) {
	if err := errors.Join(before.err, after.err); err != nil {
		smp.Err = "reading CPU time: " + err.Error()
		return
	}
	smp.Window = after.at.Sub(before.at)
	smp.CPU = cputime.Delta(before.tree, after.tree)
	if smp.GenCPU == 0 {
		smp.GenCPU = time.Duration(after.self.Ticks-before.self.Ticks) * cputime.TickDuration
	}
	if r.cfg.pin {
		smp.Foreign = max(0, after.sut.Sub(before.sut).BusyTime()-smp.CPU)
	}
	smp.Procs = procNames(after.tree)
}

// procNames lists the processes charged, by command name.
func procNames(tree []cputime.Process) string {
	count := map[string]int{}
	var names []string
	for _, p := range tree {
		if count[p.Comm] == 0 {
			names = append(names, p.Comm)
		}
		count[p.Comm]++
	}
	for i, n := range names {
		if count[n] > 1 {
			names[i] = fmt.Sprintf("%s x%d", n, count[n])
		}
	}
	return strings.Join(names, ", ")
}

// measureLoadgen runs the built-in generator, reading the CPU counters
// as its measured window opens and closes.
func (r *runner) measureLoadgen(s *system, o loadgen.Options) sample {
	var before, after reading
	o.OnWindow = func(open bool) {
		if open {
			before = r.read(s)
		} else {
			after = r.read(s)
		}
	}
	res, err := loadgen.Run(r.ctx, o)
	if err != nil {
		return sample{Err: err.Error()}
	}
	smp := sample{RPS: res.RPS(), P50: res.Percentile(50), P99: res.Percentile(99), P999: res.Percentile(99.9),
		Errors: res.Errors, Non2xx: res.Non2xx(), Requests: res.Completed}
	r.charge(&smp, before, after)
	return smp
}

// measureWrk runs wrk (it inherits the harness's CPUs), reading the CPU
// counters just before it starts and just after it exits.
func (r *runner) measureWrk(s *system, base string, paths []string, conns int) sample {
	before := r.read(s)
	smp, err := runWrk(r.ctx, "http://"+base, paths, conns, r.cfg.wrkDur)
	after := r.read(s)
	if err != nil {
		return sample{Err: err.Error()}
	}
	r.charge(&smp, before, after)
	return smp
}
