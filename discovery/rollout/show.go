package rollout

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/terminator-gw/terminator/nanobus/report"
)

// State is what `rollout show` prints: per service its policy, its
// versions with their numbers over a window, and its ghost report; and
// who drives the ramps.
type State struct {
	Services []ServiceState
	Leader   *Leader       // nil: nobody drives ramps now
	Window   time.Duration // the numbers' window
}

// ServiceState is one service's part of State.
type ServiceState struct {
	Service  string
	Policy   *Policy // nil: none
	Versions []VersionState
	Ghosts   []report.GhostStats // by route, since each caller started
}

// VersionState is one version of a service: its instances, its share of
// calls, and the calls callers made to it over the window.
type VersionState struct {
	Version   string
	Weight    int // percent of new calls; -1: no weights set (every instance alike)
	Instances int
	Window
}

// frontService is the service name a front's own node registers under: it
// takes no calls, so State leaves it out.
const frontService = "terminator"

// State reads the policies, the registrations and the published numbers
// of service (every service when ""), twice, window apart.
func (s *Store) State(ctx context.Context, service string, window time.Duration) (*State, error) {
	first, err := s.ReadStats(ctx)
	if err != nil {
		return nil, err
	}
	if window > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(window):
		}
	}
	second, err := s.ReadStats(ctx)
	if err != nil {
		return nil, err
	}
	policies, err := s.Policies(ctx)
	if err != nil {
		return nil, err
	}
	instances, err := s.Instances(ctx, service)
	if err != nil {
		return nil, err
	}
	st := &State{Window: window}
	if st.Leader, err = s.Leader(ctx); err != nil {
		return nil, err
	}
	names := []string{service}
	if service == "" {
		set := map[string]bool{}
		for name := range instances {
			set[name] = name != frontService
		}
		for name := range policies {
			set[name] = true
		}
		names = nil
		for name, ok := range set {
			if ok {
				names = append(names, name)
			}
		}
		slices.Sort(names)
	}
	for _, name := range names {
		ss := ServiceState{Service: name, Policy: policies[name], Ghosts: second.Ghosts(name)}
		calls := second.Calls(name, &first)
		if window <= 0 {
			calls = second.Calls(name, nil) // since each caller started
		}
		versions := map[string]bool{}
		for v := range instances[name] {
			versions[v] = true
		}
		for v := range calls {
			versions[v] = true
		}
		var weights map[string]int
		if ss.Policy != nil {
			weights = ss.Policy.Weights
			for v := range weights {
				versions[v] = true
			}
		}
		total := 0
		for _, w := range weights {
			total += w
		}
		for _, v := range slices.Sorted(maps.Keys(versions)) {
			vs := VersionState{Version: v, Weight: -1, Instances: len(instances[name][v]), Window: calls[v]}
			if len(weights) > 0 {
				vs.Weight = 0
				if total > 0 {
					vs.Weight = weights[v] * 100 / total
				}
			}
			ss.Versions = append(ss.Versions, vs)
		}
		st.Services = append(st.Services, ss)
	}
	return st, nil
}

// Print writes the state as `rollout show` prints it.
func (st *State) Print(out io.Writer) {
	for i, ss := range st.Services {
		if i > 0 {
			fmt.Fprintln(out)
		}
		describe(out, ss.Service, ss.Policy)
		fmt.Fprintln(out)
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "  VERSION\tWEIGHT\tINSTANCES\tRPS\tERRORS\tP99\n")
		if len(ss.Versions) == 0 {
			fmt.Fprintf(w, "  (no instance registered)\n")
		}
		for _, v := range ss.Versions {
			weight, errs, p99 := "-", "-", "-"
			if v.Weight >= 0 {
				weight = fmt.Sprintf("%d%%", v.Weight)
			}
			if v.Calls > 0 {
				errs, p99 = fmt.Sprintf("%.2f%%", 100*v.ErrorRate()), ms(v.P99())
			}
			rps := "-"
			if st.Window > 0 {
				rps = fmt.Sprintf("%.1f", v.Rate)
			}
			fmt.Fprintf(w, "  %s\t%s\t%d\t%s\t%s\t%s\n", v.Version, weight, v.Instances, rps, errs, p99)
		}
		w.Flush()
		printGhosts(out, ss)
	}
	if st.Window > 0 {
		fmt.Fprintf(out, "\n(rps, errors and p99 over the last %v, as the callers saw them", st.Window)
	} else {
		fmt.Fprintf(out, "\n(errors and p99 since each caller started, as they saw them")
	}
	if st.Leader != nil {
		fmt.Fprintf(out, "; ramps are driven by %s)\n", st.Leader)
	} else {
		fmt.Fprintf(out, "; no process drives ramps now)\n")
	}
}

func printGhosts(out io.Writer, ss ServiceState) {
	if len(ss.Ghosts) == 0 {
		return
	}
	now := "ghost off now"
	if p := ss.Policy; p != nil && p.Ghost != nil {
		now = "ghost " + p.Ghost.Version
	}
	fmt.Fprintf(out, "\n  ghost report (%s; counts since each caller started)\n", now)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  ROUTE\tGHOSTED\tMATCHED\tDIFFERING\tERRORS\tDROPPED\tPENDING\tLIVE P50\tLIVE P99\tGHOST P50\tGHOST P99\n")
	for _, g := range ss.Ghosts {
		fmt.Fprintf(w, "  %s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", g.Route, g.Ghosted, g.Matched, g.Differing,
			g.Errors, g.Dropped, g.Pending, ms(g.LiveP50), ms(g.LiveP99), ms(g.GhostP50), ms(g.GhostP99))
	}
	w.Flush()
	for _, g := range ss.Ghosts {
		if len(g.Diffs) == 0 {
			continue
		}
		fmt.Fprintf(out, "\n  last differing pairs, %s:\n", g.Route)
		for i := 0; i < len(g.Diffs); {
			d, same := g.Diffs[i], 1 // pairs alike in a row are shown once
			for i+same < len(g.Diffs) && alike(d, g.Diffs[i+same]) {
				same++
			}
			i += same
			times := ""
			if same > 1 {
				times = fmt.Sprintf(" (%d pairs like it, the last at %s)", same, g.Diffs[i-1].At.Local().Format("15:04:05"))
			}
			fmt.Fprintf(out, "    %s  %s differs%s\n", d.At.Local().Format("15:04:05"), d.What, times)
			fmt.Fprintf(out, "      live   %s\n", shownReply(d.Live))
			fmt.Fprintf(out, "      ghost  %s\n", shownReply(d.Ghost))
		}
	}
}

func alike(a, b report.GhostDiff) bool {
	return a.What == b.What && shownReply(a.Live) == shownReply(b.Live) && shownReply(a.Ghost) == shownReply(b.Ghost)
}

func shownReply(r report.ShownReply) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", r.Status)
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		fmt.Fprintf(&b, " %s: %s;", k, r.Header[k])
	}
	body := strings.TrimSpace(strings.ReplaceAll(r.Body, "\n", `\n`))
	fmt.Fprintf(&b, " %s", body)
	return b.String()
}

// describe writes service's policy, as the commands that change it print
// it.
func describe(out io.Writer, service string, p *Policy) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "%s\n", service)
	if p == nil || p.empty() {
		fmt.Fprintf(w, "  policy\tnone: calls spread over every instance alike\n")
		return
	}
	if len(p.Weights) > 0 {
		var parts []string
		for _, v := range slices.Sorted(maps.Keys(p.Weights)) {
			parts = append(parts, fmt.Sprintf("%s=%d", v, p.Weights[v]))
		}
		fmt.Fprintf(w, "  weights\t%s\n", strings.Join(parts, " "))
	} else {
		fmt.Fprintf(w, "  weights\tnone: every live version alike\n")
	}
	if r := p.Ramp; r != nil {
		line := fmt.Sprintf("%s -> %s, steps %s every %v: ", r.From, r.To, joinInts(r.Steps), r.Every)
		switch r.State {
		case RampRunning:
			line += fmt.Sprintf("running, step %d of %d (%s at %d%%) since %s", r.Step+1, len(r.Steps), r.To, r.Percent(),
				r.StepStarted.Local().Format("15:04:05"))
			if r.Note != "" {
				line += "; " + r.Note
			}
		default:
			line += fmt.Sprintf("%s at %s: %s", r.State, r.Ended.Local().Format("15:04:05"), r.Reason)
		}
		fmt.Fprintf(w, "  ramp\t%s\n", line)
		fmt.Fprintf(w, "  \tbounds: %s's error rate <= %s's + %g points, p99 <= %s's x %g + %v, judged from %d calls\n",
			r.To, r.From, r.MaxErrorIncrease, r.From, r.MaxP99Ratio, r.P99Slack, r.MinCalls)
	}
	if g := p.Ghost; g != nil {
		pct := g.Percent
		if pct == 0 {
			pct = 100
		}
		what := "status and body"
		if len(g.Headers) > 0 {
			what = "status, " + strings.Join(g.Headers, ", ") + " and body"
		}
		if len(g.Ignore) > 0 {
			what += " (JSON without " + strings.Join(g.Ignore, ", ") + ")"
		}
		fmt.Fprintf(w, "  ghost\t%s gets a copy of %d%% of the idempotent and ghost-safe calls; compares %s\n", g.Version, pct, what)
	}
	if e := p.AB; e != nil {
		var parts []string
		for _, v := range e.Variants {
			parts = append(parts, fmt.Sprintf("%s=%s:%d", v.Name, v.Version, v.Percent))
		}
		fmt.Fprintf(w, "  ab\t%s by %s: %s\n", e.Name, e.By, strings.Join(parts, " "))
	}
}

// ms writes d in milliseconds, "-" for none.
func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(d)/1e6)
}
