package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The noise rule. A round of a case is too noisy to trust when
//
//   - something else ran on the CPUs of the system under test: their busy
//     time (/proc/stat) exceeds the case's own processes' CPU time by more
//     than the threshold (-noise, 10% by default) of the window (pinned
//     runs only; unpinned, the generator shares the CPUs by design). Such
//     a round is left out of the case's medians whenever the case has a
//     round without it: on a shared box another process's bursts both
//     steal the CPU and make every request dearer (cold caches, more
//     switches), so its numbers are not the system's;
//   - or its rps or CPU µs per request is more than the threshold away
//     from the median of the rounds that count.
//
// A case's spread is (max - min) / median over the rounds that count, for
// rps and for CPU per request. The flags column names every noisy round and
// why, and says when no round was clean (then the medians are over all of
// them, and the numbers are not to be quoted).

// summary is one case and tool over all its rounds.
type summary struct {
	key
	name           string
	rounds         int  // rounds measured without error
	counted        int  // rounds the medians are over
	clean          bool // they had no foreign load (always, unpinned)
	rps            float64
	goodput        float64 // 2xx answers per second: rps less the refused and failed
	p50, p99, p999 time.Duration
	cpuPerReq      float64 // µs
	sutPct, genPct float64 // % of one CPU over the window
	errors, non2xx int64   // summed over rounds
	rpsSpread      float64
	cpuSpread      float64
	rpsRatio       float64 // to the same tool's fasthttp hello
	cpuRatio       float64
	flags          []string // noisy rounds and why
	failed         []string // rounds that could not run
	procs          string
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// spread is (max - min) / median.
func spread(xs []float64) float64 {
	m := median(xs)
	if len(xs) < 2 || m == 0 {
		return 0
	}
	return (slices.Max(xs) - slices.Min(xs)) / m
}

func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// summarize applies the noise rule to one case's samples.
func summarize(k key, name string, samples []sample, threshold float64, pinned bool) summary {
	s := summary{key: k, name: name}
	foreign := func(x sample) bool { return foreignLoad(x.Foreign, x.Window, threshold, pinned) }
	var ok, clean []sample
	for _, x := range samples {
		if x.Err != "" {
			s.failed = append(s.failed, fmt.Sprintf("round %d: %s", x.Round, x.Err))
			continue
		}
		ok = append(ok, x)
		if !foreign(x) {
			clean = append(clean, x)
		}
	}
	s.rounds = len(ok)
	if s.rounds == 0 {
		return s
	}
	use := clean
	s.clean = len(clean) > 0
	if len(clean) == 0 {
		use = ok
		s.flags = append(s.flags, "no clean round: medians over noisy ones")
	}
	s.counted = len(use)
	var rps, good, cpu, sut, gen []float64
	var p50, p99, p999 []time.Duration
	for _, x := range use {
		rps = append(rps, x.RPS)
		good = append(good, x.Goodput())
		cpu = append(cpu, x.CPUPerReq())
		sut = append(sut, pct(x.CPU, x.Window))
		gen = append(gen, pct(x.GenCPU, x.Window))
		p50, p99, p999 = append(p50, x.P50), append(p99, x.P99), append(p999, x.P999)
		s.errors += x.Errors
		s.non2xx += x.Non2xx
		s.procs = x.Procs
	}
	s.rps, s.goodput, s.cpuPerReq, s.sutPct, s.genPct = median(rps), median(good), median(cpu), median(sut), median(gen)
	s.p50, s.p99, s.p999 = medianDur(p50), medianDur(p99), medianDur(p999)
	s.rpsSpread, s.cpuSpread = spread(rps), spread(cpu)
	for _, x := range ok {
		var why []string
		if foreign(x) {
			why = append(why, fmt.Sprintf("%.0f%% foreign load on the SUT CPUs", pct(x.Foreign, x.Window)))
			if len(clean) > 0 {
				why[0] += " (left out)"
				s.flags = append(s.flags, fmt.Sprintf("r%d: %s", x.Round, why[0]))
				continue
			}
		}
		if off(x.RPS, s.rps) > threshold {
			why = append(why, fmt.Sprintf("rps %+.0f%%", 100*(x.RPS/s.rps-1)))
		}
		if off(x.CPUPerReq(), s.cpuPerReq) > threshold {
			why = append(why, fmt.Sprintf("CPU/req %+.0f%%", 100*(x.CPUPerReq()/s.cpuPerReq-1)))
		}
		if len(why) > 0 {
			s.flags = append(s.flags, fmt.Sprintf("r%d: %s", x.Round, strings.Join(why, ", ")))
		}
	}
	return s
}

// foreignLoad is the first half of the noise rule: the SUT CPUs spent more
// than threshold of the window on work that was not the case's.
func foreignLoad(foreign, window time.Duration, threshold float64, pinned bool) bool {
	return pinned && window > 0 && float64(foreign) > threshold*float64(window)
}

func (r *runner) foreign(foreign, window time.Duration) bool {
	return foreignLoad(foreign, window, r.cfg.noise, r.cfg.pin)
}

// off is how far x is from m, as a fraction of m.
func off(x, m float64) float64 {
	if m == 0 {
		return 0
	}
	return math.Abs(x/m - 1)
}

// summaries summarizes every case and relates it to the same tool's
// fasthttp hello.
func (r *runner) summaries() []summary {
	var out []summary
	hello := map[string]summary{}
	for _, k := range r.order {
		c, _ := findCase(k.id)
		s := summarize(k, c.name, r.samples[k], r.cfg.noise, r.cfg.pin)
		if c.big {
			s.name = strings.Replace(s.name, "big c", fmt.Sprintf("c=%d", r.cfg.bigConns), 1)
		}
		if k.id == "hello" && s.rounds > 0 {
			hello[k.tool] = s
		}
		out = append(out, s)
	}
	for i := range out {
		if h, ok := hello[out[i].tool]; ok && out[i].rounds > 0 {
			out[i].rpsRatio = out[i].rps / h.rps
			if h.cpuPerReq > 0 {
				out[i].cpuRatio = out[i].cpuPerReq / h.cpuPerReq
			}
		}
	}
	return out
}
