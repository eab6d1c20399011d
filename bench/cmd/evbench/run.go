package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/terminator-gw/terminator/bench/cputime"
)

// system is one system under test, running: its processes, and the
// control addresses of its publisher and subscriber.
type system struct {
	id       string
	procs    []*proc
	pub, sub string
}

// point is one load on one system, measured over one window.
type point struct {
	Round                int
	System, Load         string
	Rate                 float64 // the open loop's rate; 0 for the closed loop
	Published, Handled   float64 // per second
	P50, P99, P999, Max  time.Duration
	CPU, Window, Foreign time.Duration
	HandledN             int64
	PerProc              []procCPU
	Failed, Unsent       int64
	Note                 string
	Err                  string
}

type procCPU struct {
	Name string
	CPU  time.Duration
}

// CPUPerEvent is the system's CPU µs per event handled.
func (p point) CPUPerEvent() float64 {
	if p.HandledN <= 0 {
		return 0
	}
	return float64(p.CPU.Microseconds()) / float64(p.HandledN)
}

// PerCore is the events handled per second of the system's CPU time: what
// one core fully busy with it would handle.
func (p point) PerCore() float64 {
	if p.CPU <= 0 {
		return 0
	}
	return float64(p.HandledN) / p.CPU.Seconds()
}

// Busy is the system's CPU as a share of one core over the window.
func (p point) Busy() float64 {
	if p.Window <= 0 {
		return 0
	}
	return float64(p.CPU) / float64(p.Window)
}

type runner struct {
	cfg    config
	ctx    context.Context
	tmp    string
	exe    string
	sut    []int
	points []point
	notes  []string
	box    boxInfo
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (r *runner) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	r.logf("note: "+format, args...)
}

func (r *runner) cpus() string {
	if !r.cfg.pin {
		return ""
	}
	return r.cfg.sutCPUs
}

func run(ctx context.Context, cfg config) (err error) {
	r := &runner{cfg: cfg, ctx: ctx}
	if r.sut, err = checkCPUs(cfg); err != nil {
		return err
	}
	for _, id := range cfg.systems {
		if !slices.Contains(allSystems, id) {
			return fmt.Errorf("unknown system %q (systems: %v)", id, allSystems)
		}
	}
	if r.exe, err = os.Executable(); err != nil {
		return err
	}
	if r.cfg.natsBin, err = filepath.Abs(r.cfg.natsBin); err != nil { // the processes run in their own directories
		return err
	}
	if r.tmp, err = os.MkdirTemp("", "evbench-"); err != nil {
		return err
	}
	if err := os.Chmod(r.tmp, 0o755); err != nil { // PostgreSQL's user enters it
		return err
	}
	defer func() {
		stopAll()
		os.RemoveAll(r.tmp)
	}()
	began := time.Now()
	r.box = probeBox(r.tmp)
	r.logf("box: %s", r.box)
	for round := 1; round <= max(cfg.rounds, 1) && ctx.Err() == nil; round++ {
		k := (round - 1) % len(cfg.systems) // each round starts one system further along
		for _, id := range append(cfg.systems[k:len(cfg.systems):len(cfg.systems)], cfg.systems[:k]...) {
			if ctx.Err() != nil {
				break
			}
			r.runSystem(id, round)
		}
	}
	if ctx.Err() != nil {
		r.note("interrupted after %v: the table shows what was measured", time.Since(began).Round(time.Second))
	}
	werr := r.write()
	r.logf("done in %v", time.Since(began).Round(time.Second))
	return errors.Join(werr, ctx.Err())
}

// runSystem starts a system, measures its peak and the open loop at a
// fraction of it, and stops it.
func (r *runner) runSystem(id string, round int) {
	dir := filepath.Join(r.tmp, fmt.Sprintf("%s-%d", id, round)) // every round from empty stores
	s, err := r.start(id, dir)
	defer func() {
		for i := len(s.procs) - 1; i >= 0; i-- {
			s.procs[i].stop()
		}
		os.RemoveAll(dir)
	}()
	if err != nil {
		r.logf("%-10s round %d: %v", id, round, err)
		r.points = append(r.points, point{Round: round, System: id, Load: "-", Err: err.Error()})
		return
	}
	peak := r.measure(s, 0, round == 1 && (id == "pebble" || id == "postgres") && r.cfg.profile != "")
	peak.Round = round
	r.logf("%-10s round %d %s", id, round, peak.line())
	r.points = append(r.points, peak)
	if peak.Err != "" || r.ctx.Err() != nil {
		return
	}
	rate := r.cfg.frac * min(peak.Published, peak.Handled)
	if rate < 1 {
		return
	}
	half := r.measure(s, rate, false)
	half.Round = round
	r.logf("%-10s round %d %s", id, round, half.line())
	r.points = append(r.points, half)
}

func (p point) line() string {
	if p.Err != "" {
		return p.Load + ": failed: " + p.Err
	}
	return fmt.Sprintf("%-22s published=%.0f/s handled=%.0f/s p50=%v p99=%v p99.9=%v cpu=%.1fµs/event busy=%.0f%% per-core=%.0f/s foreign=%.0f%% failed=%d unsent=%d %v",
		p.Load, p.Published, p.Handled, p.P50, p.P99, p.P999, p.CPUPerEvent(), 100*p.Busy(), p.PerCore(),
		pct(p.Foreign, p.Window), p.Failed, p.Unsent, p.PerProc)
}

func pct(a, w time.Duration) float64 {
	if w <= 0 {
		return 0
	}
	return 100 * float64(a) / float64(w)
}

// start runs system id's processes and waits until the subscriber reads.
func (r *runner) start(id, dir string) (s *system, err error) {
	s = &system{id: id}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return s, err
	}
	launch := func(name string, args ...string) (*proc, error) {
		p, err := start(name, dir, r.cpus(), nil, r.exe, args...)
		if err == nil {
			s.procs = append(s.procs, p)
		}
		return p, err
	}
	if s.pub, err = freeAddr(); err != nil {
		return s, err
	}
	if s.sub, err = freeAddr(); err != nil {
		return s, err
	}
	keys := strconv.Itoa(r.cfg.keys)
	var pubArgs, subArgs []string
	switch id {
	case "pebble", "postgres":
		spec := filepath.Join(dir, "data")
		if id == "postgres" {
			bin := pgBinDir()
			if bin == "" {
				return s, errors.New("skipped: no PostgreSQL server binaries (apt-get install postgresql, or set EVBENCH_PG_BINDIR)")
			}
			pg, u, err := startPostgres(bin, dir, r.cpus())
			if pg != nil {
				s.procs = append(s.procs, pg)
			}
			if err != nil {
				return s, err
			}
			spec = u + "&pool_max_conns=" + strconv.Itoa(r.cfg.conc+4)
		}
		pub, err := launch("pub", "pub", "-ctl", s.pub, "-store", spec, "-keys", keys)
		if err != nil {
			return s, err
		}
		var info struct{ Bus string }
		if err := waitFor("the publisher", []*proc{pub}, func() bool { return ctl(s.pub, "GET", "/info", nil, &info) == nil }); err != nil {
			return s, err
		}
		subArgs = []string{"sub", "-ctl", s.sub, "-store", spec, "-peer", info.Bus}
	case "js-always", "js-default":
		if _, err := os.Stat(r.cfg.natsBin); err != nil {
			return s, fmt.Errorf("%s is missing (make bench-build): %w", r.cfg.natsBin, err)
		}
		ns, u, err := startNATS(r.cfg.natsBin, dir, r.cpus(), id == "js-always")
		if ns != nil {
			s.procs = append(s.procs, ns)
		}
		if err != nil {
			return s, err
		}
		pubArgs = []string{"js-pub", "-ctl", s.pub, "-nats", u, "-keys", keys}
		subArgs = []string{"js-sub", "-ctl", s.sub, "-nats", u}
		pub, err := launch("pub", pubArgs...)
		if err != nil {
			return s, err
		}
		if err := waitFor("the publisher", []*proc{pub}, func() bool { return ctl(s.pub, "GET", "/info", nil, nil) == nil }); err != nil {
			return s, err
		}
	}
	_, err = launch("sub", subArgs...)
	if err != nil {
		return s, err
	}
	err = waitFor("the subscriber reading", s.procs, func() bool {
		var info struct{ Ready bool }
		return ctl(s.sub, "GET", "/info", nil, &info) == nil && info.Ready
	})
	return s, err
}

// cpuReading is the system's CPU counters at one instant.
type cpuReading struct {
	at   time.Time
	per  [][]cputime.Process // per root process, it and its children
	cpus cputime.CPUTimes
	err  error
}

func (r *runner) readCPU(s *system) cpuReading {
	rd := cpuReading{at: time.Now()}
	for _, p := range s.procs {
		tree, err := cputime.Tree(p.pid())
		if err == nil && !slices.ContainsFunc(tree, func(x cputime.Process) bool { return x.PID == p.pid() }) {
			err = fmt.Errorf("%s (pid %d) is gone: %s", p.name, p.pid(), p.logTail())
		}
		rd.err = errors.Join(rd.err, err)
		rd.per = append(rd.per, tree)
	}
	if r.cfg.pin {
		var err error
		rd.cpus, err = cputime.ReadCPUs(r.sut)
		rd.err = errors.Join(rd.err, err)
	}
	return rd
}

// measure runs one load on s: a closed loop of -conc publishes (rate 0)
// or an open loop at rate; warm-up, then the window; then it waits for
// the subscriber to catch up, so that the next load starts clean.
func (r *runner) measure(s *system, rate float64, profile bool) (p point) {
	p = point{System: s.id, Rate: rate, Load: fmt.Sprintf("peak (closed loop, %d in flight)", r.cfg.conc)}
	if rate > 0 {
		p.Load = fmt.Sprintf("open loop at %.0f/s (%.0f%% of peak)", rate, 100*r.cfg.frac)
	}
	fail := func(err error) point {
		p.Err = err.Error()
		_ = ctl(s.pub, "POST", "/stop", nil, nil)
		return p
	}
	q := url.Values{"conc": {strconv.Itoa(r.cfg.conc)}, "rate": {strconv.FormatFloat(rate, 'f', 1, 64)}}
	if err := ctl(s.pub, "POST", "/run", q, nil); err != nil {
		return fail(err)
	}
	if !sleep(r.ctx, r.cfg.warm) {
		return fail(r.ctx.Err())
	}
	before := r.readCPU(s)
	if err := errors.Join(ctl(s.sub, "POST", "/open", nil, nil), ctl(s.pub, "POST", "/open", nil, nil)); err != nil {
		return fail(err)
	}
	var profiles sync.WaitGroup
	var pmu sync.Mutex
	var perr error
	if profile {
		for _, who := range []struct{ name, addr string }{{"pub", s.pub}, {"sub", s.sub}} {
			profiles.Go(func() {
				if err := fetchProfile(who.addr, r.cfg.dur, filepath.Join(r.cfg.profile, "evbench-"+s.id+"-"+who.name+".pprof")); err != nil {
					pmu.Lock()
					perr = errors.Join(perr, err)
					pmu.Unlock()
				}
			})
		}
	}
	if !sleep(r.ctx, r.cfg.dur) {
		return fail(r.ctx.Err())
	}
	var sw, pw window
	err := errors.Join(ctl(s.sub, "POST", "/close", nil, &sw), ctl(s.pub, "POST", "/close", nil, &pw))
	after := r.readCPU(s)
	if err = errors.Join(err, before.err, after.err); err != nil {
		return fail(err)
	}
	if err := ctl(s.pub, "POST", "/stop", nil, nil); err != nil {
		return fail(err)
	}
	profiles.Wait()
	if perr != nil {
		r.note("profile of %s: %v", s.id, perr)
	}
	p.Window = after.at.Sub(before.at)
	for i, pr := range s.procs {
		c := cputime.Delta(before.per[i], after.per[i])
		p.CPU += c
		p.PerProc = append(p.PerProc, procCPU{Name: pr.name, CPU: c})
	}
	if r.cfg.pin {
		p.Foreign = max(0, after.cpus.Sub(before.cpus).BusyTime()-p.CPU)
	}
	p.Published = float64(pw.Count) / pw.Seconds
	p.Handled = float64(sw.Count) / sw.Seconds
	p.HandledN = sw.Count
	p.P50, p.P99, p.P999, p.Max = us(sw.P50), us(sw.P99), us(sw.P999), us(sw.Max)
	p.Failed, p.Unsent = pw.Failed, pw.Unsent
	if pw.LastError != "" {
		p.Note = "last publish error: " + pw.LastError
	}
	if err := r.drain(s); err != nil {
		r.note("%s, %s: %v", s.id, p.Load, err)
	}
	return p
}

func us(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

// drain waits (up to 2 minutes) until the subscriber has handled every
// event the publisher published.
func (r *runner) drain(s *system) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var pi struct{ Published int64 }
		var si struct{ Handled int64 }
		if err := errors.Join(ctl(s.pub, "GET", "/info", nil, &pi), ctl(s.sub, "GET", "/info", nil, &si)); err != nil {
			return err
		}
		if si.Handled >= pi.Published {
			return nil
		}
		if time.Now().After(deadline) || !sleep(r.ctx, 100*time.Millisecond) {
			return fmt.Errorf("the subscriber is %d events behind after 2 minutes", pi.Published-si.Handled)
		}
	}
}

// fetchProfile takes a CPU profile of the role at addr over d into path.
func fetchProfile(addr string, d time.Duration, path string) error {
	secs := max(int(d.Seconds())-1, 1)
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile from %s: %s", addr, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sleep waits d, or less when ctx ends; it reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
