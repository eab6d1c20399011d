// Command harness benchmarks terminator side by side with its ceilings
// (fasthttp hello world, nginx) and alternatives (nginx and Go reverse
// proxies), all on loopback, one case after another, each bounded in time.
//
//	go run ./bench/cmd/harness [-quick] [-cases hello,echo,...] [-wrk=false]
//
// It prints one markdown table, writes it to bench/results/<timestamp>.md and
// draws bench/results/latency.png and bench/results/sweep.png.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/terminator-gw/terminator/bench/loadgen"
)

// config is everything a run needs; flags fill it in main, tests directly.
type config struct {
	dur, warm     time.Duration // per closed-loop case
	sweepDur      time.Duration // per sweep point (warm-up is warm)
	conns         int
	out           string // results directory
	bin           string // terminator binary
	wrk           bool   // also run wrk when installed
	cases         map[string]bool
	rate          float64 // constant rate case, rps
	log           io.Writer
	plots         bool
	stamp         string
	maxSweepSteps int
}

// caseResult is one row of the table.
type caseResult struct {
	Case, Tool               string
	RPS                      float64
	P50, P90, P99, P999, Max time.Duration
	Errors, Non2xx           int64
	Ratio                    float64 // RPS / the same tool's fasthttp hello RPS
	Err                      string  // set when the case could not run
}

// sweepPoint is one open-loop rate in the sweep.
type sweepPoint struct {
	Offered, Achieved, AdmittedRPS float64
	P50, P99, SvcP99               time.Duration
	Share503                       float64
	Errors, Unsent                 int64
}

// Case ids, in run order. The -cases flag selects a subset.
var allCases = []string{"hello", "nginx", "nginx-proxy", "go-proxy", "echo", "profiles", "nginx-terminator", "rate", "sweep"}

func main() {
	quick := flag.Bool("quick", false, "short cases: 2s + 0.5s warm-up")
	cases := flag.String("cases", strings.Join(allCases, ","), "comma-separated cases to run")
	conns := flag.Int("c", 64, "connections")
	out := flag.String("out", "bench/results", "results directory")
	bin := flag.String("bin", "bin/terminator", "terminator binary (make build)")
	useWrk := flag.Bool("wrk", true, "also run wrk when installed")
	rate := flag.Float64("rate", 50000, "constant-rate case, requests/second")
	flag.Parse()

	cfg := config{dur: 5 * time.Second, warm: time.Second, sweepDur: 3 * time.Second, conns: *conns, out: *out,
		bin: *bin, wrk: *useWrk, rate: *rate, log: os.Stderr, plots: true, maxSweepSteps: 10,
		stamp: time.Now().UTC().Format("20060102-150405")}
	if *quick {
		cfg.dur, cfg.warm, cfg.sweepDur = 2*time.Second, 500*time.Millisecond, time.Second
	}
	cfg.cases = map[string]bool{}
	for _, c := range strings.Split(*cases, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cfg.cases[c] = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	table, err := run(ctx, cfg)
	fmt.Print(table)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// run executes the selected cases and writes the report; it returns the
// markdown it wrote.
func run(ctx context.Context, cfg config) (string, error) {
	if cfg.log == nil {
		cfg.log = io.Discard
	}
	if cfg.wrk {
		if _, err := exec.LookPath("wrk"); err != nil {
			fmt.Fprintln(cfg.log, "wrk not installed; built-in generator only")
			cfg.wrk = false
		}
	}
	r := &runner{cfg: cfg, ctx: ctx}
	r.all()
	md := r.markdown()
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return md, fmt.Errorf("results dir: %w", err)
	}
	path := filepath.Join(cfg.out, cfg.stamp+".md")
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return md, fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Fprintln(cfg.log, "wrote", path)
	if cfg.plots {
		if err := r.plots(); err != nil {
			return md, err
		}
	}
	return md, ctx.Err()
}

type runner struct {
	cfg     config
	ctx     context.Context
	rows    []caseResult
	sweep   []sweepPoint
	rateRow *sweepPoint
	sat     float64 // closed-loop two-hop rps: the saturating rate
	notes   []string
}

func (r *runner) want(c string) bool { return r.cfg.cases[c] && r.ctx.Err() == nil }

func (r *runner) logf(format string, args ...any) { fmt.Fprintf(r.cfg.log, format+"\n", args...) }

// fail records a case that could not run, so the table shows the gap.
func (r *runner) fail(name string, err error) {
	r.logf("%s: %v", name, err)
	r.rows = append(r.rows, caseResult{Case: name, Tool: "-", Err: err.Error()})
}

// measure runs the built-in generator closed loop (and wrk) on base+paths.
func (r *runner) measure(name, base string, paths []string) {
	urls := make([]string, len(paths))
	for i, p := range paths {
		urls[i] = base + p
	}
	res, err := loadgen.Run(r.ctx, loadgen.Options{URLs: urls, Connections: r.cfg.conns, Duration: r.cfg.dur, Warmup: r.cfg.warm})
	if err != nil {
		r.fail(name, err)
		return
	}
	r.logf("%-28s loadgen %s", name, res.Summary())
	r.rows = append(r.rows, fromLoadgen(name, res))
	if r.cfg.wrk && r.ctx.Err() == nil {
		wr, err := runWrk(r.ctx, base, paths, r.cfg.conns, r.cfg.dur)
		if err != nil {
			r.logf("%s: wrk: %v", name, err)
			return
		}
		wr.Case = name
		r.logf("%-28s wrk     rps=%.0f p50=%v p99=%v p99.9=%v", name, wr.RPS, wr.P50, wr.P99, wr.P999)
		r.rows = append(r.rows, wr)
	}
}

func fromLoadgen(name string, res *loadgen.Result) caseResult {
	return caseResult{Case: name, Tool: "loadgen", RPS: res.RPS(), P50: res.Percentile(50), P90: res.Percentile(90),
		P99: res.Percentile(99), P999: res.Percentile(99.9), Max: res.Max(), Errors: res.Errors, Non2xx: res.Non2xx()}
}

func profilePaths() []string {
	p := make([]string, 300)
	for i := range p {
		p[i] = fmt.Sprintf("/profiles/%d", i+1)
	}
	return p
}

// Case names as they appear in the table.
const (
	nameHello      = "fasthttp hello (ceiling)"
	nameNginx      = "nginx return 200"
	nameNginxProxy = "nginx -> fasthttp"
	nameGoProxy    = "Go ReverseProxy -> fasthttp"
	nameEcho       = "terminator -> echo (1 hop)"
	nameProfiles   = "terminator -> web -> services (2 hops)"
	nameNginxTerm  = "nginx -> terminator (2 hops)"
)

func (r *runner) all() {
	root := []string{"/"}
	needHello := r.want("hello") || r.want("nginx-proxy") || r.want("go-proxy")
	if needHello {
		addr, stop, err := startHello()
		if err != nil {
			r.fail(nameHello, err)
		} else {
			if r.want("hello") {
				r.measure(nameHello, "http://"+addr, root)
			}
			if r.want("nginx") {
				r.withNginx(nameNginx, "", root)
			}
			if r.want("nginx-proxy") {
				r.withNginx(nameNginxProxy, addr, root)
			}
			if r.want("go-proxy") {
				paddr, pstop, err := startGoProxy(addr)
				if err != nil {
					r.fail(nameGoProxy, err)
				} else {
					r.measure(nameGoProxy, "http://"+paddr, root)
					pstop()
				}
			}
			stop()
		}
	} else if r.want("nginx") {
		r.withNginx(nameNginx, "", root)
	}

	if r.want("echo") || r.want("profiles") || r.want("nginx-terminator") || r.want("rate") || r.want("sweep") {
		r.logf("starting %s ...", r.cfg.bin)
		t, err := startTerminator(r.cfg.bin)
		if err != nil {
			r.fail("terminator", err)
			return
		}
		base := "http://" + t.public
		if r.want("echo") {
			r.measure(nameEcho, base, []string{"/echo"})
		}
		if r.want("profiles") {
			r.measure(nameProfiles, base, profilePaths())
		}
		if r.want("nginx-terminator") {
			r.withNginx(nameNginxTerm, t.public, profilePaths())
		}
		if r.want("rate") {
			if p, err := r.openLoop(base, r.cfg.rate, r.cfg.dur); err != nil {
				r.fail("constant rate", err)
			} else {
				r.rateRow = &p
			}
		}
		if err := t.stop(); err != nil {
			r.notes = append(r.notes, "terminator stop: "+err.Error())
			r.logf("terminator stop: %v", err)
		}
	}
	if r.want("sweep") {
		// The sweep runs against an instance whose admission bound fits
		// the chain (Little's law: ~25k rps x ~5 ms), with many more
		// connections than that bound, so that past saturation the excess
		// is refused with 503 instead of queueing in the generator.
		t, err := startTerminator(r.cfg.bin, "-max-waiting", strconv.Itoa(sweepMaxWaiting))
		if err != nil {
			r.fail("terminator for the sweep", err)
			return
		}
		r.logf("sweep terminator on %s (-max-waiting %d, c=%d)", t.public, sweepMaxWaiting, sweepConns)
		r.runSweep("http://" + t.public)
		if err := t.stop(); err != nil {
			r.logf("terminator stop: %v", err)
		}
	}
	r.ratios()
}

func (r *runner) withNginx(name, upstream string, paths []string) {
	addr, stop, err := startNginx(upstream)
	if err != nil {
		r.fail(name, err)
		return
	}
	r.measure(name, "http://"+addr, paths)
	if err := stop(); err != nil {
		r.logf("nginx stop: %v", err)
	}
}

// The sweep's admission bound and connection count.
const (
	sweepMaxWaiting = 128
	sweepConns      = 1024
)

// openLoop offers rate rps to the two-hop chain for d (plus warm-up).
func (r *runner) openLoop(base string, rate float64, d time.Duration) (sweepPoint, error) {
	return r.openLoopConns(base, rate, d, r.cfg.conns)
}

func (r *runner) openLoopConns(base string, rate float64, d time.Duration, conns int) (sweepPoint, error) {
	urls := make([]string, 0, 300)
	for _, p := range profilePaths() {
		urls = append(urls, base+p)
	}
	res, err := loadgen.Run(r.ctx, loadgen.Options{URLs: urls, Connections: conns, Rate: rate, Duration: d, Warmup: r.cfg.warm})
	if err != nil {
		return sweepPoint{}, err
	}
	r.logf("open loop %6.0f rps: %s svc_p99=%v errors=%v", rate, res.Summary(), time.Duration(res.Service.ValueAtQuantile(99))*time.Microsecond, res.ErrorKinds)
	p := sweepPoint{Offered: rate, Achieved: res.RPS(), Errors: res.Errors, Unsent: res.Unsent,
		// Delivered 2xx throughput: the window's completions times the 2xx share.
		AdmittedRPS: res.RPS() * float64(res.Admitted.TotalCount()) / math.Max(1, float64(res.Latency.TotalCount())),
		P50:         time.Duration(res.Admitted.ValueAtQuantile(50)) * time.Microsecond,
		P99:         time.Duration(res.Admitted.ValueAtQuantile(99)) * time.Microsecond,
		SvcP99:      time.Duration(res.Service.ValueAtQuantile(99)) * time.Microsecond}
	if n := res.Requests + res.Unsent; n > 0 {
		p.Share503 = float64(res.Status[503]) / float64(n)
	}
	return p, nil
}

// runSweep offers 10k, 20k, 40k, 60k, ... up to twice the saturating rate
// (the closed-loop two-hop throughput, or the first rate the chain cannot
// keep up with), then twice saturation itself.
func (r *runner) runSweep(base string) {
	for _, row := range r.rows {
		if row.Case == nameProfiles && row.Tool == "loadgen" {
			r.sat = row.RPS
		}
	}
	rates := []float64{10000, 20000}
	for x := 40000.0; len(rates) < r.cfg.maxSweepSteps; x += 20000 {
		rates = append(rates, x)
	}
	var limit float64
	if r.sat > 0 {
		limit = 2 * r.sat
		// Include the saturating rate itself among the steps.
		for i, x := range rates {
			if x >= r.sat {
				rates = append(rates[:i], append([]float64{math.Round(r.sat)}, rates[i:]...)...)
				break
			}
		}
	}
	for _, rate := range rates {
		if r.ctx.Err() != nil || (limit > 0 && rate >= limit) {
			break
		}
		p, err := r.openLoopConns(base, rate, r.cfg.sweepDur, sweepConns)
		if err != nil {
			r.fail(fmt.Sprintf("sweep %.0f", rate), err)
			return
		}
		r.sweep = append(r.sweep, p)
		if r.sat == 0 && p.Achieved < 0.9*rate {
			r.sat = p.Achieved // first point that could not keep up
			limit = 2 * r.sat
		}
	}
	if limit > 0 && r.ctx.Err() == nil {
		if p, err := r.openLoopConns(base, limit, r.cfg.sweepDur, sweepConns); err == nil {
			r.sweep = append(r.sweep, p)
		}
	}
}

// ratios relates each row to the same tool's fasthttp hello ceiling.
func (r *runner) ratios() {
	ceil := map[string]float64{}
	for _, row := range r.rows {
		if row.Case == nameHello {
			ceil[row.Tool] = row.RPS
		}
	}
	for i := range r.rows {
		if c := ceil[r.rows[i].Tool]; c > 0 {
			r.rows[i].Ratio = r.rows[i].RPS / c
		}
	}
}
