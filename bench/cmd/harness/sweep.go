package main

import (
	"fmt"
	"math"
	"time"

	"github.com/terminator-gw/terminator/bench/loadgen"
)

// sweepFractions are the sweep's offered rates, as fractions of the
// saturating rate (the page's closed-loop rps at -c).
var sweepFractions = []float64{0.25, 0.5, 0.75, 1, 1.25, 1.5, 2}

// sweepPoint is one offered rate, open loop, with -big-c connections.
type sweepPoint struct {
	Offered, Achieved float64 // requests/s offered, answers/s in the window
	Goodput           float64 // 2xx answers/s in the window
	P50, P99          time.Duration
	SvcP99            time.Duration // from the actual send: the target's own time
	RefusedShare      float64       // 503s among the requests scheduled in the window
	Served, Refused   int64         // 2xx and 503 answers inside the window
	Other             int64         // other answers inside the window
	Errors, Unsent    int64
	CPU, Window       time.Duration
	GenCPU            time.Duration
	Foreign           time.Duration
}

// sweepResult is the overload sweep against `terminator all`.
type sweepResult struct {
	flags      []string // the terminator's extra flags
	sat        float64  // the saturating rate
	satFrom    string   // where sat came from
	points     []sweepPoint
	pageCPU    float64 // µs per served page, fitted
	refusalCPU float64 // µs per refusal, fitted; 0 when too few refusals
	fitNote    string
	err        string
}

// runSweep offers the page open loop at fractions of the saturating rate,
// with many connections so that the excess can be refused rather than
// queued in the generator, and charges the terminator's CPU per point.
func (r *runner) runSweep(flags []string) {
	res := &sweepResult{flags: append(append([]string(nil), r.cfg.termFlags...), flags...)}
	r.sweeps = append(r.sweeps, res)
	s, err := r.newSystem("sweep")
	if err == nil {
		var public string
		if public, _, err = s.startTerminatorAll(flags...); err == nil {
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

func (r *runner) sweepOn(s *system, public string, res *sweepResult) error {
	var urls []string
	for _, p := range pagePaths(r.cfg.seed) {
		urls = append(urls, "http://"+public+p)
	}
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
		rate := math.Round(f * res.sat)
		var before, after reading
		lr, err := loadgen.Run(r.ctx, loadgen.Options{URLs: urls, Connections: r.cfg.bigConns, Rate: rate,
			Duration: r.cfg.sweepDur, Warmup: r.cfg.warm,
			OnWindow: func(open bool) {
				if open {
					before = r.read(s)
				} else {
					after = r.read(s)
				}
			}})
		if err != nil {
			return fmt.Errorf("sweep at %.0f rps: %w", rate, err)
		}
		var smp sample
		r.charge(&smp, before, after)
		if smp.Err != "" {
			return fmt.Errorf("sweep at %.0f rps: %s", rate, smp.Err)
		}
		p := sweepPoint{Offered: rate, Achieved: lr.RPS(), Errors: lr.Errors, Unsent: lr.Unsent,
			P50: usDur(lr.Admitted.ValueAtQuantile(50)), P99: usDur(lr.Admitted.ValueAtQuantile(99)),
			SvcP99: usDur(lr.Service.ValueAtQuantile(99)), CPU: smp.CPU, Window: smp.Window, GenCPU: smp.GenCPU, Foreign: smp.Foreign}
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
		r.logf("sweep %6.0f rps (%.2fx): goodput=%.0f p99=%v svc_p99=%v refused=%.1f%% errors=%d unsent=%d sut=%.0f%% gen=%.0f%% foreign=%.0f%%",
			rate, f, p.Goodput, p.P99, p.SvcP99, 100*p.RefusedShare, p.Errors, p.Unsent, pct(p.CPU, p.Window), pct(p.GenCPU, p.Window), pct(p.Foreign, p.Window))
		res.points = append(res.points, p)
	}
	res.pageCPU, res.refusalCPU, res.fitNote = fitCosts(res.points)
	return nil
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
