package main

import (
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/bench/loadgen"
)

// sweepFractions are the sweep's offered rates, as fractions of the
// saturating rate (the page's closed-loop rps at -c).
var sweepFractions = []float64{0.5, 0.75, 1, 1.25, 1.5, 1.75, 2}

// sweepPoint is one offered rate, open loop: -big-c connections to start
// with, up to -max-c as answers keep them busy.
type sweepPoint struct {
	Fraction          float64       // of the saturating rate
	Offered, Achieved float64       // requests/s offered, answers/s in the window
	Goodput           float64       // 2xx answers/s in the window
	P50, P99          time.Duration // admitted (2xx) answers, from the intended send
	P50All, P99All    time.Duration // every answer (2xx, 503, ...), from the intended send
	SvcP99            time.Duration // every answer, from the actual send: the target's own time
	RefusedShare      float64       // 503s among the requests scheduled in the window
	Served, Refused   int64         // 2xx and 503 answers inside the window
	Other             int64         // other answers inside the window
	Errors, Unsent    int64
	Late              int64         // sent more than loadgen.LateAfter after the intended time
	LagP99            time.Duration // the generator's send lag, p99
	Conns             int           // the most connections the generator had open
	ErrorKinds        string        // the errors' messages and counts, for the log
	CPU, Window       time.Duration
	GenCPU            time.Duration
	Foreign           time.Duration
}

// RefusedPerSec is the 503s answered per second inside the window.
func (p sweepPoint) RefusedPerSec() float64 {
	if p.Window <= 0 {
		return 0
	}
	return float64(p.Refused) / p.Window.Seconds()
}

// CPUPerAnswer is the SUT's CPU µs per answer inside the window, 0 if none.
func (p sweepPoint) CPUPerAnswer() float64 {
	if n := p.Served + p.Refused + p.Other; n > 0 {
		return float64(p.CPU.Microseconds()) / float64(n)
	}
	return 0
}

// sweepResult is the overload sweep against `terminator all`.
type sweepResult struct {
	flags      []string // the terminator's extra flags
	asked      []string // the flags asked for, when the binary lacked some
	sat        float64  // the saturating rate
	satFrom    string   // where sat came from
	points     []sweepPoint
	pageCPU    float64 // µs per served page, fitted
	refusalCPU float64 // µs per refusal, fitted; 0 when too few refusals
	fitNote    string
	err        string
}

// at returns the sweep's point at fraction f of the saturating rate.
func (sw *sweepResult) at(f float64) (sweepPoint, bool) {
	for _, p := range sw.points {
		if math.Abs(p.Fraction-f) < 1e-9 {
			return p, true
		}
	}
	return sweepPoint{}, false
}

// admissionFlag is the front's admission policy flag (codel or fifo); a
// binary from before it runs the fifo policy without being asked.
const admissionFlag = "-admission"

// supportedFlags drops from flags the -admission flag (and its value) when
// the terminator binary does not know it, as `terminator all -h` says, and
// says so: the sweep then runs that binary's only policy.
func (r *runner) supportedFlags(flags []string) ([]string, string) {
	i := slices.IndexFunc(flags, func(f string) bool {
		return f == admissionFlag || f == "-"+admissionFlag || strings.HasPrefix(f, admissionFlag+"=") || strings.HasPrefix(f, "-"+admissionFlag+"=")
	})
	if i < 0 {
		return flags, ""
	}
	// -h exits 0 or 2 by how the binary parses: only the text counts.
	out, _ := exec.Command(r.cfg.bin, "all", "-h").CombinedOutput()
	if knowsFlag(string(out), admissionFlag) {
		return flags, ""
	}
	n := 1
	if !strings.Contains(flags[i], "=") && i+1 < len(flags) && !strings.HasPrefix(flags[i+1], "-") {
		n = 2
	}
	kept := append(append([]string(nil), flags[:i]...), flags[i+n:]...)
	return kept, fmt.Sprintf("%s has no %s flag (`%s all -h`): the sweep asked for %q ran without it, on the binary's only policy (adaptive limit and a first-come queue, what %s fifo names)",
		r.cfg.bin, admissionFlag, r.cfg.bin, strings.Join(flags[i:i+n], " "), admissionFlag)
}

// knowsFlag says whether a Go flag package usage text lists name
// ("  -name" at the start of a line, then its type or the line's end).
func knowsFlag(usage, name string) bool {
	return regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(name) + `(\s|$)`).MatchString(usage)
}

// runSweep offers the page open loop at fractions of the saturating rate,
// with a generator that opens connections as answers keep them busy, so
// that requests go out when they are due, and charges the terminator's
// CPU per point.
func (r *runner) runSweep(flags []string) {
	kept, why := r.supportedFlags(flags)
	res := &sweepResult{flags: append(append([]string(nil), r.cfg.termFlags...), kept...)}
	if why != "" {
		res.asked = append(append([]string(nil), r.cfg.termFlags...), flags...)
		r.note("%s", why)
	}
	r.sweeps = append(r.sweeps, res)
	s, err := r.newSystem("sweep")
	if err == nil {
		var public string
		if public, _, err = s.startTerminatorAll(kept...); err == nil {
			err = r.sweepOn(s, public, res)
		}
	}
	if serr := s.stop(); serr != nil {
		r.note("sweep: %v", serr)
	}
	if err != nil {
		res.err = err.Error()
		r.logf("sweep: %v", err)
	}
}

func (r *runner) pageURLs(public string) []string {
	var urls []string
	for _, p := range pagePaths(r.cfg.seed) {
		urls = append(urls, "http://"+public+p)
	}
	return urls
}

func (r *runner) sweepOn(s *system, public string, res *sweepResult) error {
	urls := r.pageURLs(public)
	for _, sm := range r.summaries() {
		if sm.key == (key{"page", "loadgen"}) && sm.rounds > 0 {
			res.sat, res.satFrom = sm.rps, fmt.Sprintf("the median closed-loop rps of \"page: terminator all\" at c=%d", r.cfg.conns)
		}
	}
	if res.sat == 0 {
		smp := r.measureLoadgen(s, loadgen.Options{URLs: urls, Connections: r.cfg.conns, Duration: r.cfg.sweepDur, Warmup: r.cfg.warm})
		if smp.Err != "" {
			return fmt.Errorf("saturating rate: %s", smp.Err)
		}
		res.sat, res.satFrom = smp.RPS, fmt.Sprintf("a closed-loop run at c=%d on the sweep's instance", r.cfg.conns)
	}
	for _, f := range sweepFractions {
		if r.ctx.Err() != nil {
			break
		}
		p, err := r.openLoopPoint(s, urls, math.Round(f*res.sat))
		if err != nil {
			return err
		}
		p.Fraction = f
		r.logf("sweep %6.0f rps (%.2fx): goodput=%.0f refused=%.0f/s (%.1f%%) p99=%v p99_all=%v svc_p99=%v errors=%d late=%d lag_p99=%v unsent=%d conns=%d sut=%.0f%% gen=%.0f%% foreign=%.0f%% %s",
			p.Offered, f, p.Goodput, p.RefusedPerSec(), 100*p.RefusedShare, p.P99, p.P99All, p.SvcP99, p.Errors, p.Late, p.LagP99, p.Unsent, p.Conns,
			pct(p.CPU, p.Window), pct(p.GenCPU, p.Window), pct(p.Foreign, p.Window), p.ErrorKinds)
		res.points = append(res.points, p)
	}
	res.pageCPU, res.refusalCPU, res.fitNote = fitCosts(res.points)
	return nil
}

// openLoopPoint offers rate open loop for one window and charges s's CPU.
func (r *runner) openLoopPoint(s *system, urls []string, rate float64) (sweepPoint, error) {
	var before, after reading
	lr, err := loadgen.Run(r.ctx, loadgen.Options{URLs: urls, Connections: r.cfg.bigConns, MaxConnections: r.cfg.maxConns, Rate: rate,
		Duration: r.cfg.sweepDur, Warmup: r.cfg.warm,
		OnWindow: func(open bool) {
			if open {
				before = r.read(s)
			} else {
				after = r.read(s)
			}
		}})
	if err != nil {
		return sweepPoint{}, fmt.Errorf("open loop at %.0f rps: %w", rate, err)
	}
	// The generator's own CPU from getrusage (µs), not /proc's ticks (10 ms).
	smp := sample{GenCPU: lr.CPU}
	r.charge(&smp, before, after)
	if smp.Err != "" {
		return sweepPoint{}, fmt.Errorf("open loop at %.0f rps: %s", rate, smp.Err)
	}
	p := sweepPoint{Offered: rate, Achieved: lr.RPS(), Errors: lr.Errors, Unsent: lr.Unsent, Late: lr.Late, Conns: lr.PeakConnections,
		P50: usDur(lr.Admitted.ValueAtQuantile(50)), P99: usDur(lr.Admitted.ValueAtQuantile(99)),
		P50All: usDur(lr.Latency.ValueAtQuantile(50)), P99All: usDur(lr.Latency.ValueAtQuantile(99)),
		SvcP99: usDur(lr.Service.ValueAtQuantile(99)), LagP99: usDur(lr.SendLag.ValueAtQuantile(99)),
		CPU: smp.CPU, Window: smp.Window, GenCPU: smp.GenCPU, Foreign: smp.Foreign}
	if len(lr.ErrorKinds) > 0 {
		p.ErrorKinds = fmt.Sprint(lr.ErrorKinds)
	}
	for code, n := range lr.CompletedStatus {
		switch {
		case code/100 == 2:
			p.Served += n
		case code == 503:
			p.Refused += n
		default:
			p.Other += n
		}
	}
	p.Goodput = float64(p.Served) / lr.Window.Seconds()
	if n := lr.Requests + lr.Unsent; n > 0 {
		p.RefusedShare = float64(lr.Status[503]) / float64(n)
	}
	return p, nil
}

func usDur(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// saturatedShare is the SUT CPU above which a sweep point counts as
// saturated for the fit.
const saturatedShare = 0.9

// fitCosts splits the CPU time of the sweep's points into a cost per
// served page and a cost per refusal: the least-squares fit of
// CPU = page·served + refusal·refused. A page costs more at light load
// (nothing to batch, every request wakes the processes), so when two or
// more saturated points (SUT CPU >= 90%) refused something, only the
// saturated points are fitted: that is where refusals happen and where a
// page's price is steady. Refusals must be at least 1% of the answers for
// the second number to mean anything.
func fitCosts(points []sweepPoint) (page, refusal float64, note string) {
	var saturated []sweepPoint
	refusing := 0
	for _, p := range points {
		if p.Window > 0 && float64(p.CPU) >= saturatedShare*float64(p.Window) {
			saturated = append(saturated, p)
			if p.Refused > 0 {
				refusing++
			}
		}
	}
	which := "every point"
	if refusing >= 2 {
		points, which = saturated, "the saturated points"
	}
	var ss, sr, rr, sc, rc, served, refused float64
	for _, p := range points {
		s, r, c := float64(p.Served), float64(p.Refused), float64(p.CPU.Microseconds())
		ss, sr, rr, sc, rc = ss+s*s, sr+s*r, rr+r*r, sc+s*c, rc+r*c
		served, refused = served+s, refused+r
	}
	if served == 0 {
		return 0, 0, "nothing was served"
	}
	if refused < 0.01*(served+refused) {
		return sc / ss, 0, fmt.Sprintf("too few refusals to price one (%.0f of %.0f answers): the terminator queued the excess instead", refused, served+refused)
	}
	det := ss*rr - sr*sr
	if det <= 0 {
		return sc / ss, 0, "refusals and pages rose together: no fit"
	}
	page, refusal = (sc*rr-rc*sr)/det, (ss*rc-sr*sc)/det
	if refusal <= 0 || page <= 0 {
		return sc / ss, 0, fmt.Sprintf("no sensible fit (a refusal at %.1f µs): the refusals (%.0f of %.0f answers) are too few or too uneven to price", refusal, refused, served+refused)
	}
	return page, refusal, fmt.Sprintf("least-squares fit over %s (%d), %.0f pages and %.0f refusals", which, len(points), served, refused)
}

// refuseAllFlags make the front refuse nearly everything: a fixed limit of
// one request waiting for its reply, and the shortest wait for a turn the
// flag takes (1ms; 0 means the default, 50ms). -admission fifo keeps them
// meaningful on a binary with a new default policy; it is dropped on one
// without.
var refuseAllFlags = []string{admissionFlag, "fifo", "-adaptive-limit=false", "-max-waiting", "1", "-queue-wait", "1ms"}

// refusalPrice is the dedicated point that prices a refusal: the page
// offered at the saturating rate to a front that refuses nearly all of it,
// so that the CPU is nearly all refusals and the pages it still serves
// are charged at a known price.
type refusalPrice struct {
	flags     []string
	point     sweepPoint
	pageCPU   float64 // µs per page, charged for the pages it served
	pageFrom  string
	refusal   float64 // µs per refusal
	note, err string
}

// priceRefusal runs the dedicated point after the sweeps.
func (r *runner) priceRefusal(sums []summary) {
	kept, why := r.supportedFlags(refuseAllFlags)
	if why != "" {
		r.logf("refusal price: %s", why)
	}
	rp := &refusalPrice{flags: append(append([]string(nil), r.cfg.termFlags...), kept...)}
	r.refusal = rp
	switch page, ok := find(sums, "page"); {
	case ok:
		rp.pageCPU, rp.pageFrom = page.cpuPerReq, fmt.Sprintf("the page's price at c=%d", r.cfg.conns)
	case len(r.sweeps) > 0 && r.sweeps[0].pageCPU > 0:
		rp.pageCPU, rp.pageFrom = r.sweeps[0].pageCPU, "the page's price fitted over the first sweep"
	}
	sat := 0.0
	if len(r.sweeps) > 0 {
		sat = r.sweeps[0].sat
	}
	if sat == 0 {
		rp.err = "no saturating rate (no sweep ran)"
		return
	}
	s, err := r.newSystem("refusals")
	if err == nil {
		var public string
		if public, _, err = s.startTerminatorAll(kept...); err == nil {
			rp.point, err = r.openLoopPoint(s, r.pageURLs(public), math.Round(sat))
			rp.point.Fraction = 1
		}
	}
	if serr := s.stop(); serr != nil {
		r.note("refusal price: %v", serr)
	}
	if err != nil {
		rp.err = err.Error()
		r.logf("refusal price: %v", err)
		return
	}
	p := rp.point
	if p.Refused == 0 {
		rp.err = fmt.Sprintf("the front refused nothing (%d pages served) with %s", p.Served, strings.Join(rp.flags, " "))
		return
	}
	if r.foreign(p.Foreign, p.Window) {
		rp.err = fmt.Sprintf("%.0f%% foreign load on the SUT CPUs during the point (%.0f%% SUT CPU): no price", pct(p.Foreign, p.Window), pct(p.CPU, p.Window))
		return
	}
	rest := float64(p.CPU.Microseconds()) - rp.pageCPU*float64(p.Served)
	if rest <= 0 {
		rp.err = fmt.Sprintf("the %d pages served (at %.1f µs) account for all the CPU: no price", p.Served, rp.pageCPU)
		return
	}
	rp.refusal = rest / float64(p.Refused)
	rp.note = fmt.Sprintf("%d refusals and %d pages in %v, %.0f%% SUT CPU; the pages charged at %.1f µs (%s)",
		p.Refused, p.Served, p.Window.Round(time.Millisecond), pct(p.CPU, p.Window), rp.pageCPU, rp.pageFrom)
	r.logf("refusal price: %.1f µs (%s)", rp.refusal, rp.note)
}
