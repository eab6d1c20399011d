package main

import (
	"fmt"
	"image/color"
	"math"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// markdown renders the closed-loop table, the open-loop table and notes.
func (r *runner) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## terminator bench %s\n\n", r.cfg.stamp)
	fmt.Fprintf(&sb, "Machine: %d CPUs, %s/%s, %s; load generator on the same box; loopback only. ",
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	if out, err := exec.Command("nginx", "-v").CombinedOutput(); err == nil {
		fmt.Fprintf(&sb, "%s. ", strings.TrimSpace(string(out)))
	}
	fmt.Fprintf(&sb, "Closed loop, c=%d, %v measured after %v warm-up (wrk: -t1, %v, no warm-up).\n\n",
		r.cfg.conns, r.cfg.dur, r.cfg.warm, r.cfg.dur)
	sb.WriteString("| case | tool | rps | p50 | p99 | p99.9 | errors | non-2xx | x fasthttp |\n")
	sb.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, row := range r.rows {
		if row.Err != "" {
			fmt.Fprintf(&sb, "| %s | - | failed: %s | | | | | | |\n", row.Case, strings.ReplaceAll(tail(row.Err, 200), "|", "/"))
			continue
		}
		ratio := "-"
		if row.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", row.Ratio)
		}
		fmt.Fprintf(&sb, "| %s | %s | %.0f | %s | %s | %s | %d | %d | %s |\n",
			row.Case, row.Tool, row.RPS, ms(row.P50), ms(row.P99), ms(row.P999), row.Errors, row.Non2xx, ratio)
	}
	if r.rateRow != nil || len(r.sweep) > 0 {
		fmt.Fprintf(&sb, "\nOpen loop (constant rate, latency from the intended send time), two hops `GET /profiles/{1..300}`. "+
			"The constant-rate row uses c=%d against the default terminator; the sweep uses c=%d against one started with "+
			"-max-waiting %d, so that past saturation the excess is refused (503) rather than queued in the generator. "+
			"Admitted = 2xx; service p99 = timed from the actual send (the target's own answer time).\n\n", r.cfg.conns, sweepConns, sweepMaxWaiting)
		sb.WriteString("| offered rps | achieved rps | admitted rps | admitted p50 | admitted p99 | service p99 | 503 share | errors | unsent |\n")
		sb.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		rows := r.sweep
		if r.rateRow != nil {
			rows = append([]sweepPoint{*r.rateRow}, rows...)
		}
		for i, p := range rows {
			label := fmt.Sprintf("%.0f", p.Offered)
			if i == 0 && r.rateRow != nil {
				label += " (constant-rate case)"
			}
			fmt.Fprintf(&sb, "| %s | %.0f | %.0f | %s | %s | %s | %.1f%% | %d | %d |\n", label, p.Achieved, p.AdmittedRPS,
				ms(p.P50), ms(p.P99), ms(p.SvcP99), 100*p.Share503, p.Errors, p.Unsent)
		}
		if r.sat > 0 {
			fmt.Fprintf(&sb, "\nSaturation taken as %.0f rps (closed-loop two-hop throughput).\n", r.sat)
		}
	}
	for _, n := range r.notes {
		fmt.Fprintf(&sb, "\nNote: %s\n", n)
	}
	return sb.String()
}

// plots draws latency.png (percentiles per case, built-in generator) and
// sweep.png (latency versus offered rate).
func (r *runner) plots() error {
	if err := r.latencyPlot(filepath.Join(r.cfg.out, "latency.png")); err != nil {
		return err
	}
	if len(r.sweep) > 0 {
		return r.sweepPlot(filepath.Join(r.cfg.out, "sweep.png"))
	}
	return nil
}

func (r *runner) latencyPlot(path string) error {
	var rows []caseResult
	for _, row := range r.rows {
		if row.Tool == "loadgen" && row.Err == "" {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency per system, closed loop c=%d (built-in generator)", r.cfg.conns)
	p.Y.Label.Text = "ms"
	w := vg.Points(14)
	series := []struct {
		name string
		get  func(caseResult) time.Duration
	}{{"p50", func(c caseResult) time.Duration { return c.P50 }},
		{"p99", func(c caseResult) time.Duration { return c.P99 }},
		{"p99.9", func(c caseResult) time.Duration { return c.P999 }}}
	for i, s := range series {
		vals := make(plotter.Values, len(rows))
		for j, row := range rows {
			vals[j] = float64(s.get(row)) / float64(time.Millisecond)
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("latency plot: %w", err)
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(i-1) * w
		p.Add(bars)
		p.Legend.Add(s.name, bars)
	}
	names := make([]string, len(rows))
	for i, row := range rows {
		names[i] = shortName(row.Case)
	}
	p.NominalX(names...)
	p.Legend.Top = true
	p.Legend.Left = true
	if err := p.Save(vg.Length(90+len(rows)*70), 11*vg.Centimeter, path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}

// shortName keeps the x axis readable.
func shortName(s string) string {
	r := strings.NewReplacer("terminator", "term", " (ceiling)", "", "fasthttp", "fh", "ReverseProxy", "RP",
		" -> web -> services", "->web->svc", " (1 hop)", "", " (2 hops)", "", " return 200", "")
	return r.Replace(s)
}

func (r *runner) sweepPlot(path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Two hops, open loop c=%d, -max-waiting %d: admitted latency vs offered rate", sweepConns, sweepMaxWaiting)
	p.X.Label.Text = "offered rps"
	p.Y.Label.Text = "ms (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	mk := func(get func(sweepPoint) time.Duration) plotter.XYs {
		xy := make(plotter.XYs, len(r.sweep))
		for i, s := range r.sweep {
			xy[i].X = s.Offered
			xy[i].Y = math.Max(float64(get(s))/float64(time.Millisecond), 0.01) // log scale needs > 0
		}
		return xy
	}
	err := plotutil.AddLinePoints(p,
		"admitted p50", mk(func(s sweepPoint) time.Duration { return s.P50 }),
		"admitted p99", mk(func(s sweepPoint) time.Duration { return s.P99 }),
		"service p99", mk(func(s sweepPoint) time.Duration { return s.SvcP99 }))
	if err != nil {
		return fmt.Errorf("sweep plot: %w", err)
	}
	if r.sat > 0 {
		top := 1.0
		for _, s := range r.sweep {
			top = math.Max(top, float64(s.P99)/float64(time.Millisecond))
		}
		l, err := plotter.NewLine(plotter.XYs{{X: r.sat, Y: 0.01}, {X: r.sat, Y: top}})
		if err == nil {
			l.Color = color.Gray{Y: 128}
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			p.Add(l)
			p.Legend.Add("closed-loop saturation", l)
		}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	if err := p.Save(16*vg.Centimeter, 11*vg.Centimeter, path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
