package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotFiles are the pictures a run draws into the results directory; the
// ones a run has no data for are removed, so none is left from an older run.
var plotFiles = []string{"cpu.png", "latency.png", "sweep.png", "goodput.png"}

func (r *runner) plots(sums []summary) error {
	for _, f := range plotFiles {
		_ = os.Remove(filepath.Join(r.cfg.out, f))
	}
	var rows []summary
	for _, s := range sums {
		if s.tool == "loadgen" && s.rounds > 0 {
			rows = append(rows, s)
		}
	}
	var errs []error
	if len(rows) > 0 {
		errs = append(errs, r.cpuPlot(rows), r.latencyPlot(rows))
	}
	if len(r.sweeps) > 0 && len(r.sweeps[0].points) > 0 {
		errs = append(errs, r.sweepPlot(), r.goodputPlot())
	}
	return errors.Join(errs...)
}

// shortName keeps an x axis readable.
func shortName(s string) string {
	return strings.NewReplacer("terminator", "term", "fasthttp", "fh", "ReverseProxy", "RP", "page: ", "page ",
		" (1 bus hop)", "", " return 200", "", "nginx", "ngx", " micro", "", ", c=", " c=").Replace(s)
}

func (r *runner) cpuPlot(rows []summary) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("CPU per request of all the case's server processes (median, bars: min-max of %d rounds)", r.cfg.rounds)
	p.Y.Label.Text = "CPU µs per request"
	vals := make(plotter.Values, len(rows))
	errBars := make(plotter.XYs, len(rows))
	yerr := make(plotter.YErrors, len(rows))
	names := make([]string, len(rows))
	for i, s := range rows {
		vals[i] = s.cpuPerReq
		names[i] = shortName(s.name)
		var per []float64
		for _, x := range r.samples[s.key] {
			if x.Err == "" {
				per = append(per, x.CPUPerReq())
			}
		}
		errBars[i] = plotter.XY{X: float64(i), Y: s.cpuPerReq}
		yerr[i].Low, yerr[i].High = s.cpuPerReq-slices.Min(per), slices.Max(per)-s.cpuPerReq
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(24))
	if err != nil {
		return fmt.Errorf("cpu plot: %w", err)
	}
	bars.LineStyle.Width = 0
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{errBars, yerr})
	if err == nil {
		p.Add(eb)
	}
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -1, -0.5
	return save(p, vg.Length(120+len(rows)*60), 12*vg.Centimeter, filepath.Join(r.cfg.out, "cpu.png"))
}

// latencyPlot marks each case's percentiles on a log scale (bars cannot
// start at zero on one), so the c=1024 cases do not flatten the others.
func (r *runner) latencyPlot(rows []summary) error {
	p := plot.New()
	p.Title.Text = "Latency per system, closed loop (built-in generator, median of rounds)"
	p.Y.Label.Text = "ms (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var args []any
	for _, s := range []struct {
		name string
		get  func(summary) time.Duration
	}{{"p50", func(s summary) time.Duration { return s.p50 }},
		{"p99", func(s summary) time.Duration { return s.p99 }},
		{"p99.9", func(s summary) time.Duration { return s.p999 }}} {
		xy := make(plotter.XYs, len(rows))
		for j, row := range rows {
			xy[j] = plotter.XY{X: float64(j), Y: math.Max(float64(s.get(row))/float64(time.Millisecond), 0.01)} // log needs > 0
		}
		args = append(args, s.name, xy)
	}
	if err := plotutil.AddScatters(p, args...); err != nil {
		return fmt.Errorf("latency plot: %w", err)
	}
	logRange(p)
	names := make([]string, len(rows))
	for i, row := range rows {
		names[i] = shortName(row.name)
	}
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = math.Pi / 6
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = -1, -0.5
	p.Legend.Top, p.Legend.Left = true, true
	return save(p, vg.Length(120+len(rows)*60), 12*vg.Centimeter, filepath.Join(r.cfg.out, "latency.png"))
}

// refLine adds a dashed reference line (a target) to p.
func refLine(p *plot.Plot, name string, xy plotter.XYs) {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return
	}
	l.Color = color.RGBA{R: 200, A: 255}
	l.Width = vg.Points(1.5)
	l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	p.Add(l)
	p.Legend.Add(name, l)
}

// sweepPlot draws the p99 of every answer (refusals too), timed from the
// intended send, against offered load: one line per sweep (policy).
func (r *runner) sweepPlot() error {
	p := plot.New()
	p.Title.Text = "The page, open loop: p99 of all answers (from the intended send) vs offered load"
	p.X.Label.Text = "offered load, x the saturating rate"
	p.Y.Label.Text = "ms (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var args []any
	for _, sw := range r.sweeps {
		// A point where nothing sent in the window was answered has no
		// latency: it is left out, not drawn at zero.
		var xy plotter.XYs
		for _, s := range sw.points {
			if s.P99All > 0 && sw.sat > 0 {
				xy = append(xy, plotter.XY{X: s.Offered / sw.sat, Y: float64(s.P99All) / float64(time.Millisecond)})
			}
		}
		if len(xy) > 0 {
			args = append(args, sw.label(), xy)
		}
	}
	if len(args) == 0 {
		return nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return fmt.Errorf("sweep plot: %w", err)
	}
	target := float64(overloadP99) / float64(time.Millisecond)
	p.Y.Max = math.Max(p.Y.Max, target)
	p.Y.Min = math.Min(p.Y.Min, target)
	logRange(p)
	refLine(p, fmt.Sprintf("target: p99 < %v", overloadP99), plotter.XYs{{X: p.X.Min, Y: target}, {X: p.X.Max, Y: target}})
	p.Legend.Top, p.Legend.Left = false, false // the low right corner stays empty
	return save(p, 18*vg.Centimeter, 12*vg.Centimeter, filepath.Join(r.cfg.out, "sweep.png"))
}

// goodputPlot draws goodput (2xx/s) against offered load, both as
// fractions of the saturating rate: one line per sweep (policy), the
// offered load itself, and the targets.
func (r *runner) goodputPlot() error {
	p := plot.New()
	p.Title.Text = "The page, open loop: goodput vs offered load"
	p.X.Label.Text = "offered load, x the saturating rate"
	p.Y.Label.Text = "goodput (2xx answers/s), x the saturating rate"
	var args []any
	top := 0.0
	for _, sw := range r.sweeps {
		if sw.sat <= 0 || len(sw.points) == 0 {
			continue
		}
		good := make(plotter.XYs, len(sw.points))
		for i, s := range sw.points {
			good[i] = plotter.XY{X: s.Offered / sw.sat, Y: s.Goodput / sw.sat}
			top = math.Max(top, s.Offered/sw.sat)
		}
		args = append(args, sw.label(), good)
	}
	if len(args) == 0 {
		return nil
	}
	args = append(args, "offered", plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}}, "peak (the saturating rate)", plotter.XYs{{X: 1, Y: 1}, {X: top, Y: 1}})
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return fmt.Errorf("goodput plot: %w", err)
	}
	var tgt plotter.XYs
	for _, t := range overloadTargets {
		tgt = append(tgt, plotter.XY{X: t.fraction, Y: t.goodput})
	}
	refLine(p, "targets: >= 0.7x at 1.5x, >= 0.55x at 2x", tgt)
	if pts, err := plotter.NewScatter(tgt); err == nil {
		pts.Color = color.RGBA{R: 200, A: 255}
		p.Add(pts)
	}
	p.Y.Min = 0
	p.Legend.Top, p.Legend.Left = true, true // above the offered line: empty
	p.Legend.XOffs = vg.Points(10)
	return save(p, 18*vg.Centimeter, 12*vg.Centimeter, filepath.Join(r.cfg.out, "goodput.png"))
}

// wholeTicks labels an axis of request rates without decimals.
type wholeTicks struct{}

func (wholeTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = fmt.Sprintf("%.0f", ticks[i].Value)
		}
	}
	return ticks
}

// logRange widens a log axis to whole decades around the data (gonum
// would pad a flat range below zero).
func logRange(p *plot.Plot) {
	p.Y.Min = math.Pow(10, math.Floor(math.Log10(p.Y.Min)))
	p.Y.Max = math.Pow(10, math.Ceil(math.Log10(p.Y.Max)+1e-9))
}

func save(p *plot.Plot, w, h vg.Length, path string) error {
	if err := p.Save(w, h, path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
