package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/terminator-gw/terminator/bench/cputime"
	"github.com/terminator-gw/terminator/bench/loadgen"
)

// notesMarker separates RESULTS.md's generated part from the notes people
// write under it; make bench keeps everything below the marker.
const notesMarker = "<!-- Everything below this line is kept when make bench regenerates this file. -->"

func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func ratio(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", x)
}

func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "/"), "\n", " ") }

// write renders the reports and plots.
func (r *runner) write() error {
	sums := r.summaries()
	if err := os.MkdirAll(r.cfg.out, 0o755); err != nil {
		return fmt.Errorf("results dir: %w", err)
	}
	raw := r.rawReport(sums)
	rawPath := filepath.Join(r.cfg.out, r.cfg.stamp+".md")
	if err := os.WriteFile(rawPath, []byte(raw), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", rawPath, err)
	}
	r.logf("wrote %s", rawPath)
	fmt.Print(r.summaryTable(sums))
	if r.cfg.plots {
		if err := r.plots(sums); err != nil {
			return err
		}
	}
	if r.cfg.resultsMD != "" {
		if err := r.writeResults(sums, rawPath); err != nil {
			return err
		}
		r.logf("wrote %s", r.cfg.resultsMD)
	}
	return nil
}

// onlineCPUs counts the machine's CPUs; runtime.NumCPU counts only those
// the (pinned) harness may use.
func onlineCPUs() int {
	if b, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		if cpus, err := cputime.ParseList(strings.TrimSpace(string(b))); err == nil {
			return len(cpus)
		}
	}
	return runtime.NumCPU()
}

// machine says what ran where.
func (r *runner) machine() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d CPUs, %s/%s, %s", onlineCPUs(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		fmt.Fprintf(&sb, ", Linux %s", strings.TrimSpace(string(b)))
	}
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		fmt.Fprintf(&sb, ", %s", strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
	}
	if out, err := exec.Command(r.cfg.natsBin, "--version").CombinedOutput(); err == nil {
		fmt.Fprintf(&sb, ", %s", strings.TrimSpace(string(out)))
	}
	if r.cfg.pin {
		fmt.Fprintf(&sb, ". Pinned: systems under test on CPU %s, generators (loadgen, wrk) on CPU %s (taskset).", r.cfg.sutCPUs, r.cfg.genCPUs)
	} else {
		sb.WriteString(". Unpinned: systems under test and generators share every CPU.")
	}
	if r.cfg.nice != 0 {
		fmt.Fprintf(&sb, " Every process of the run at nice %d.", r.cfg.nice)
	}
	return sb.String()
}

func (r *runner) method() string {
	wrk := "wrk off"
	if r.cfg.wrk {
		wrk = fmt.Sprintf("wrk -t1, %v", r.cfg.wrkDur)
	}
	return fmt.Sprintf("Closed loop, c=%d (the big-c cases c=%d), %d round(s), cases interleaved; per case and round: "+
		"loadgen %v measured after %v warm-up, then %s. Page cases spread GET /profiles/{1..%d}.",
		r.cfg.conns, r.cfg.bigConns, r.cfg.rounds, r.cfg.dur, r.cfg.warm, wrk, r.cfg.seed)
}

// summaryTable is the medians over rounds, one row per case and tool.
func (r *runner) summaryTable(sums []summary) string {
	var sb strings.Builder
	sb.WriteString("| case | tool | rps | goodput | p50 | p99 | p99.9 | errors + non-2xx | CPU µs/req | SUT CPU | gen CPU | x hello rps | x hello CPU | spread rps / CPU | rounds | noisy rounds |\n")
	sb.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, s := range sums {
		if s.rounds == 0 {
			fmt.Fprintf(&sb, "| %s | %s | failed: %s | | | | | | | | | | | | | |\n", s.name, s.tool, cell(tail(strings.Join(s.failed, "; "), 300)))
			continue
		}
		flags := strings.Join(append(s.flags, s.failed...), "; ")
		if flags == "" {
			flags = "-"
		}
		fmt.Fprintf(&sb, "| %s | %s | %.0f | %.0f | %s | %s | %s | %d | %.1f | %.0f%% | %.0f%% | %s | %s | %.0f%% / %.0f%% | %d/%d | %s |\n",
			s.name, s.tool, s.rps, s.goodput, ms(s.p50), ms(s.p99), ms(s.p999), s.errors+s.non2xx, s.cpuPerReq, s.sutPct, s.genPct,
			ratio(s.rpsRatio), ratio(s.cpuRatio), 100*s.rpsSpread, 100*s.cpuSpread, s.counted, len(s.failed)+s.rounds, cell(flags))
	}
	return sb.String()
}

// procsTable lists the processes whose CPU time each case was charged.
func procsTable(sums []summary) string {
	var sb strings.Builder
	sb.WriteString("| case | processes charged (all descendants of what the harness started) |\n| --- | --- |\n")
	for _, s := range sums {
		if s.tool == "loadgen" && s.procs != "" {
			fmt.Fprintf(&sb, "| %s | %s |\n", s.name, s.procs)
		}
	}
	return sb.String()
}

// sweepSections renders every sweep.
func (r *runner) sweepSections() string {
	var sb strings.Builder
	for _, sw := range r.sweeps {
		fmt.Fprintf(&sb, "\n## Overload sweep, %s\n\n%s", sw.label(), r.sweepSection(sw))
	}
	return sb.String()
}

// label says how the sweep's terminator ran.
func (sw *sweepResult) label() string {
	ran := "default settings"
	if len(sw.flags) > 0 {
		ran = strings.Join(sw.flags, " ")
	}
	if sw.asked != nil {
		return strings.Join(sw.asked, " ") + " (not in this binary: ran " + ran + ")"
	}
	return ran
}

func (r *runner) sweepSection(sw *sweepResult) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Open loop, `terminator all` (%s), GET /profiles/{1..%d}, each point %v after %v warm-up; "+
		"offered rates are fractions of the saturating rate, %.0f rps (%s). The generator starts with %d connections and opens "+
		"more, up to %d, whenever every one is waiting for an answer, so requests leave when they are due: **late** counts those "+
		"it still sent more than %v after their intended time, **unsent** those it never sent, **conns** the most it had open. "+
		"Latency is timed from the intended send (no coordinated omission): **admitted** over the 2xx answers, **all** over every "+
		"answer, refusals included; service p99 from the actual send. Goodput = 2xx answers per second inside the window.\n\n",
		sw.label(), r.cfg.seed, r.cfg.sweepDur, r.cfg.warm, sw.sat, sw.satFrom, r.cfg.bigConns, r.cfg.maxConns, loadgen.LateAfter)
	if sw.err != "" {
		fmt.Fprintf(&sb, "The sweep failed: %s\n\n", cell(sw.err))
	}
	if len(sw.points) == 0 {
		return sb.String()
	}
	sb.WriteString("| offered rps | x sat | goodput (2xx/s) | x sat | refused (503/s) | refused share | admitted p50 | admitted p99 | all p50 | all p99 | service p99 | errors | late | unsent | conns | SUT CPU | gen CPU | SUT CPU µs/answer | noisy |\n")
	sb.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, p := range sw.points {
		per := "-"
		if x := p.CPUPerAnswer(); x > 0 {
			per = fmt.Sprintf("%.1f", x)
		}
		noisy := "-"
		if r.foreign(p.Foreign, p.Window) {
			noisy = fmt.Sprintf("%.0f%% foreign load on the SUT CPUs", pct(p.Foreign, p.Window))
		}
		fmt.Fprintf(&sb, "| %.0f | %.2f | %.0f | %.2f | %.0f | %.1f%% | %s | %s | %s | %s | %s | %d | %d | %d | %d | %.0f%% | %.0f%% | %s | %s |\n",
			p.Offered, p.Offered/sw.sat, p.Goodput, p.Goodput/sw.sat, p.RefusedPerSec(), 100*p.RefusedShare, ms(p.P50), ms(p.P99),
			ms(p.P50All), ms(p.P99All), ms(p.SvcP99), p.Errors, p.Late, p.Unsent, p.Conns, pct(p.CPU, p.Window), pct(p.GenCPU, p.Window), per, noisy)
	}
	fmt.Fprintf(&sb, "\nCPU per served page %.1f µs", sw.pageCPU)
	if sw.refusalCPU != 0 {
		fmt.Fprintf(&sb, ", per refusal %.1f µs (%.2fx a page)", sw.refusalCPU, sw.refusalCPU/sw.pageCPU)
	} else {
		sb.WriteString(", per refusal: not fitted")
	}
	fmt.Fprintf(&sb, ": %s.\n", sw.fitNote)
	return sb.String()
}

// refusalSection renders the dedicated refusal point.
func (r *runner) refusalSection() string {
	rp := r.refusal
	if rp == nil {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n## The price of a refusal\n\nOne open-loop point at the saturating rate against `terminator all %s`, a front that refuses "+
		"nearly everything, so that its CPU is nearly all refusals: a refusal is priced as the point's CPU, less the pages it still "+
		"served at a page's price, over its refusals. (The sweeps' fits split CPU between pages and refusals too, but their "+
		"refusals are a minority of answers whose share rises with the pages' own price under load: the fit can swing either way.)\n\n",
		strings.Join(rp.flags, " "))
	if rp.err != "" {
		fmt.Fprintf(&sb, "Not priced: %s\n", cell(rp.err))
		return sb.String()
	}
	fmt.Fprintf(&sb, "**%.1f µs per refusal** (%.2fx a page at %.1f µs): %s; SUT CPU µs per answer %.1f, gen CPU %.0f%%, late %d, unsent %d.\n",
		rp.refusal, rp.refusal/rp.pageCPU, rp.pageCPU, rp.note, rp.point.CPUPerAnswer(), pct(rp.point.GenCPU, rp.point.Window), rp.point.Late, rp.point.Unsent)
	return sb.String()
}

// sweepNoise is a stand-in summary for the verdicts when a point of sw had
// foreign load: a sweep point runs once, so that is all the noise rule
// can look at.
func (r *runner) sweepNoise(sw *sweepResult) []summary {
	for _, p := range sw.points {
		if r.foreign(p.Foreign, p.Window) {
			return []summary{{name: "sweep " + sw.label() + " had points with foreign load"}}
		}
	}
	return nil
}

// find returns the loadgen summary of a case.
func find(sums []summary, id string) (summary, bool) {
	for _, s := range sums {
		if s.id == id && s.tool == "loadgen" && s.rounds > 0 {
			return s, true
		}
	}
	return summary{}, false
}

// targets checks the speed targets (DESIGN.md, issue 18) against this
// run's loadgen medians and its first sweep (the default settings).
func (r *runner) targets(sums []summary) string {
	type row struct{ target, value, verdict string }
	var rows []row
	// verdict says met or missed, and whether the numbers behind it came
	// from noisy rounds only (then it is not to be quoted).
	verdict := func(ok bool, from ...summary) string {
		v := "missed"
		if ok {
			v = "met"
		}
		for _, s := range from {
			if !s.clean {
				return v + " (" + s.name + ": no clean round)"
			}
		}
		return v
	}
	page, hasPage := find(sums, "page")
	split, hasSplit := find(sums, "page-split")
	if hasPage {
		rows = append(rows, row{"page <= 20 CPU µs (50k pages/s per core)", fmt.Sprintf("%.1f µs", page.cpuPerReq), verdict(page.cpuPerReq <= 20, page)})
		rows = append(rows, row{fmt.Sprintf("page p99 < 5 ms at c=%d", r.cfg.conns), ms(page.p99), verdict(page.p99 < 5*time.Millisecond, page)})
	}
	for _, alt := range []struct {
		id, label string
		limit     float64
	}{{"page-nats", "NATS", 0.5}, {"page-http", "HTTP", 0.7}} {
		a, ok := find(sums, alt.id)
		if !ok {
			continue
		}
		var vals []string
		met, from := true, []summary{a}
		for _, t := range []struct {
			s   summary
			ok  bool
			lbl string
		}{{page, hasPage, "all"}, {split, hasSplit, "split"}} {
			if t.ok {
				x := t.s.cpuPerReq / a.cpuPerReq
				vals = append(vals, fmt.Sprintf("%s %.2fx", t.lbl, x))
				met = met && x <= alt.limit
				from = append(from, t.s)
			}
		}
		if len(vals) > 0 {
			rows = append(rows, row{fmt.Sprintf("page CPU <= %.1fx the %s page's (%.1f µs)", alt.limit, alt.label, a.cpuPerReq), strings.Join(vals, ", "), verdict(met, from...)})
		}
	}
	hello, _ := find(sums, "hello")
	if echo, ok := find(sums, "echo"); ok && echo.cpuRatio > 0 {
		rows = append(rows, row{"one bus hop CPU <= 1.3x the hello's", fmt.Sprintf("%.2fx (%.1f µs)", echo.cpuRatio, echo.cpuPerReq), verdict(echo.cpuRatio <= 1.3, echo, hello)})
		rows = append(rows, row{"one bus hop p99 < 2 ms", ms(echo.p99), verdict(echo.p99 < 2*time.Millisecond, echo)})
	}
	if ngx, ok := find(sums, "nginx-page"); ok && hasPage && page.cpuPerReq > 0 {
		x := ngx.cpuPerReq / page.cpuPerReq
		rows = append(rows, row{"nginx -> page CPU <= 1.6x the direct page's", fmt.Sprintf("%.2fx (%.1f vs %.1f µs)", x, ngx.cpuPerReq, page.cpuPerReq), verdict(x <= 1.6, ngx, page)})
	}
	if big, ok := find(sums, "page-c1024"); ok && hasPage {
		x := big.goodput / page.goodput
		rows = append(rows, row{fmt.Sprintf("c=%d closed loop: goodput >= 0.9x c=%d", r.cfg.bigConns, r.cfg.conns), fmt.Sprintf("%.2fx (%.0f of %.0f answers/s were 2xx)", x, big.goodput, big.rps), verdict(x >= 0.9, big, page)})
		c := big.cpuPerReq / page.cpuPerReq
		rows = append(rows, row{fmt.Sprintf("c=%d closed loop: page CPU <= 1.1x its c=%d cost", r.cfg.bigConns, r.cfg.conns), fmt.Sprintf("%.2fx (%.1f vs %.1f µs)", c, big.cpuPerReq, page.cpuPerReq), verdict(c <= 1.1, big, page)})
		rows = append(rows, row{fmt.Sprintf("c=%d: p99 < 25 ms", r.cfg.bigConns), ms(big.p99), verdict(big.p99 < 25*time.Millisecond, big)})
	}
	if len(r.sweeps) > 0 {
		sw := r.sweeps[0]
		noisy := r.sweepNoise(sw)
		for _, t := range overloadTargets {
			p, ok := sw.at(t.fraction)
			if !ok {
				continue
			}
			x := p.Goodput / sw.sat
			rows = append(rows, row{fmt.Sprintf("%.1fx open loop (%s): goodput >= %.2fx peak", t.fraction, sw.label(), t.goodput),
				fmt.Sprintf("%.2fx (%.0f of %.0f rps)%s", x, p.Goodput, sw.sat, r.othersAt(t.fraction, func(o sweepPoint, sat float64) string { return fmt.Sprintf("%.2fx", o.Goodput/sat) })),
				verdict(x >= t.goodput, noisy...)})
			p99 := ms(p.P99All)
			if p.P99All == 0 {
				p99 = "none of the requests sent in the window was answered"
			}
			rows = append(rows, row{fmt.Sprintf("%.1fx open loop: p99 of all answers < %v", t.fraction, overloadP99),
				p99 + r.othersAt(t.fraction, func(o sweepPoint, _ float64) string { return ms(o.P99All) }),
				verdict(p.P99All > 0 && p.P99All < overloadP99, noisy...)})
		}
		if rp := r.refusal; rp != nil && rp.refusal > 0 && rp.pageCPU > 0 {
			rows = append(rows, row{"a refusal <= 0.3x a page's CPU", fmt.Sprintf("%.2fx (%.1f µs vs %.1f µs, the dedicated point)", rp.refusal/rp.pageCPU,
				rp.refusal, rp.pageCPU), verdict(rp.refusal <= 0.3*rp.pageCPU)})
		} else {
			// No dedicated point: the first sweep whose fit priced one.
			priced := sw
			for _, o := range r.sweeps {
				if priced.refusalCPU == 0 && o.refusalCPU != 0 {
					priced = o
				}
			}
			if priced.refusalCPU != 0 {
				rows = append(rows, row{"a refusal <= 0.3x a page's CPU", fmt.Sprintf("%.2fx (%.1f µs vs %.1f µs, fitted over %s)", priced.refusalCPU/priced.pageCPU,
					priced.refusalCPU, priced.pageCPU, priced.label()), verdict(priced.refusalCPU <= 0.3*priced.pageCPU, r.sweepNoise(priced)...)})
			} else {
				rows = append(rows, row{"a refusal <= 0.3x a page's CPU", "no refusals to price", "missed"})
			}
		}
	}
	if len(rows) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("| target (DESIGN.md, issue 18; pinned) | this run | verdict |\n| --- | --- | --- |\n")
	for _, x := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s |\n", x.target, x.value, x.verdict)
	}
	return sb.String()
}

// overloadTargets are the open-loop targets: at fraction x of the
// saturating rate, goodput at least goodput x the saturating rate, and the
// p99 of every answer (refusals too) under overloadP99.
var overloadTargets = []struct{ fraction, goodput float64 }{{1.5, 0.7}, {2, 0.55}}

const overloadP99 = 25 * time.Millisecond

// othersAt is the value of the other sweeps at fraction f, for comparison.
func (r *runner) othersAt(f float64, val func(p sweepPoint, sat float64) string) string {
	var parts []string
	for _, o := range r.sweeps[1:] {
		if p, ok := o.at(f); ok && o.sat > 0 {
			parts = append(parts, o.label()+": "+val(p, o.sat))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

const cpuMethod = "**CPU µs/req** is the utime+stime (from /proc/PID/stat) of every server process of the case, " +
	"all descendants of what the harness started included (nginx's workers, nats-server, each service), read as the " +
	"measured window opens and closes, divided by the answers inside the window. **SUT CPU** is that time as a share " +
	"of one CPU over the window; **gen CPU** the generator's own (the harness for loadgen, wrk's rusage). A case whose " +
	"gen CPU is near 100%% was limited by its generator, not by the system under test: its CPU per request still holds. " +
	"**x hello** relates rps and CPU per request to the same tool's fasthttp hello. **Spread** is (max - min) / median over " +
	"the rounds counted. A round is **noisy** when the SUT CPUs were busy with anything else for more than %.0f%% of the window " +
	"(/proc/stat busy time minus the case's processes): it is left out of the medians when the case has a clean round " +
	"(**rounds** = counted/run); a counted round more than %.0f%% off the median in rps or CPU per request is flagged too."

func (r *runner) legend() string {
	return fmt.Sprintf(cpuMethod, 100*r.cfg.noise, 100*r.cfg.noise) + "\n\n" +
		"Systems: **terminator all** is `terminator all` (embedded etcd, front, web, profiles, visits, flirts, notifications, echo in one process); " +
		"**terminator split** is one process per role the page needs (front, web, profiles, notifications) plus an etcd (bench/cmd/peers etcd); " +
		"**NATS micro** is a nats-server plus one process per role (web, profiles, notifications: nats.go micro services, request/reply); " +
		"**HTTP fasthttp** is one process per role calling each other over HTTP/1.1 keep-alive (fasthttp on both sides). " +
		"All page systems read copies of one seeded Pebble data set and are checked, before every measurement, to answer every " +
		"page byte for byte as the terminator does. The nginx cases run the shipped deploy/nginx/terminator.conf " +
		"(nginx return 200 excepted: a one-line site for nginx's own ceiling), one worker per SUT CPU.\n"
}

// rawReport is the run's full record: summaries and every round.
func (r *runner) rawReport(sums []summary) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# terminator bench %s\n\n`%s`, %v.\n\n%s %s\n\n", r.cfg.stamp, r.cfg.command, time.Since(r.began).Round(time.Second), r.machine(), r.method())
	sb.WriteString(r.summaryTable(sums))
	sb.WriteString("\n" + r.legend() + "\n" + procsTable(sums))
	sb.WriteString(r.sweepSections())
	sb.WriteString(r.refusalSection())
	if t := r.targets(sums); t != "" {
		sb.WriteString("\n## Targets\n\n" + t)
	}
	sb.WriteString("\n## Every round\n\n| case | tool | round | rps | p50 | p99 | p99.9 | errors | non-2xx | CPU µs/req | SUT CPU | gen CPU | foreign on SUT CPUs | window |\n")
	sb.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, k := range r.order {
		c, _ := findCase(k.id)
		for _, x := range r.samples[k] {
			if x.Err != "" {
				fmt.Fprintf(&sb, "| %s | %s | %d | failed: %s | | | | | | | | | | |\n", c.name, k.tool, x.Round, cell(tail(x.Err, 300)))
				continue
			}
			fmt.Fprintf(&sb, "| %s | %s | %d | %.0f | %s | %s | %s | %d | %d | %.1f | %.0f%% | %.0f%% | %.0f%% | %v |\n",
				c.name, k.tool, x.Round, x.RPS, ms(x.P50), ms(x.P99), ms(x.P999), x.Errors, x.Non2xx, x.CPUPerReq(),
				pct(x.CPU, x.Window), pct(x.GenCPU, x.Window), pct(x.Foreign, x.Window), x.Window.Round(time.Millisecond))
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(&sb, "\nNote: %s\n", cell(n))
	}
	return sb.String()
}

// writeResults regenerates RESULTS.md, keeping the notes under its marker.
func (r *runner) writeResults(sums []summary, rawPath string) error {
	notes := "\n## Notes\n\n(Write what the numbers say here; make bench keeps this part.)\n"
	if b, err := os.ReadFile(r.cfg.resultsMD); err == nil {
		if _, after, ok := strings.Cut(string(b), notesMarker); ok {
			notes = after
		}
	}
	rel := func(p string) string {
		if x, err := filepath.Rel(filepath.Dir(r.cfg.resultsMD), p); err == nil {
			return filepath.ToSlash(x)
		}
		return p
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "# terminator benchmark results\n\nGenerated by `make bench` (`%s`, bench/cmd/harness) at %s UTC, in %v. Every round is in [%s](%s).\n\n",
		r.cfg.command, r.cfg.stamp, time.Since(r.began).Round(time.Second), filepath.Base(rawPath), rel(rawPath))
	fmt.Fprintf(&sb, "**Machine:** %s\n\n**Method:** %s\n\n", r.machine(), r.method())
	sb.WriteString(r.summaryTable(sums))
	sb.WriteString("\n" + r.legend() + "\n" + procsTable(sums))
	if t := r.targets(sums); t != "" {
		sb.WriteString("\n## Against the targets\n\n" + t)
	}
	sb.WriteString(r.sweepSections())
	sb.WriteString(r.refusalSection())
	for _, p := range plotFiles {
		if _, err := os.Stat(filepath.Join(r.cfg.out, p)); err == nil {
			fmt.Fprintf(&sb, "\n![%s](%s)\n", strings.TrimSuffix(p, ".png"), rel(filepath.Join(r.cfg.out, p)))
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(&sb, "\nNote: %s\n", cell(n))
	}
	sb.WriteString("\n" + notesMarker + notes)
	return os.WriteFile(r.cfg.resultsMD, []byte(sb.String()), 0o644)
}
