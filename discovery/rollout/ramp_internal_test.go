package rollout

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// window is n calls, errs of them failed, all taking about the latency of
// histogram bucket b.
func window(n, errs uint64, b int) Window {
	return Window{Calls: n, Errors: errs, Latency: histogram.Histogram{{Index: b, Count: n}}}
}

// The health rule, case by case (see Ramp.next).
func TestRampHealthRule(t *testing.T) {
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	base := Ramp{From: "v1", To: "v2", Steps: []int{10, 50, 100}, Every: Duration(time.Minute), Bounds: DefaultBounds,
		StepStarted: start, State: RampRunning}
	early, late := start.Add(10*time.Second), start.Add(2*time.Minute)
	fast, slow := 60, 100 // histogram buckets from 768µs and from 24.6ms
	mixed := func(n, slowCalls uint64) Window {
		w := window(n, 0, fast)
		w.Latency = histogram.Histogram{{Index: fast, Count: n - slowCalls}, {Index: slow, Count: slowCalls}}
		return w
	}
	for _, tc := range []struct {
		name     string
		step     int
		old, new Window
		now      time.Time
		want     string // "" (stay), "rolled back", "held", "advanced", "done"
		reason   string
	}{
		{"fewer than 10 calls: nothing judged", 0, window(1000, 0, fast), window(9, 9, fast), late, "", ""},
		{"fewer than MinCalls, failing beyond doubt", 0, window(1000, 0, fast), window(10, 10, fast), early, "rolled back", "10 of 10 calls failed"},
		{"fewer than MinCalls, within bounds: the step does not end", 0, window(1000, 0, fast), window(99, 0, fast), late, "", ""},
		{"fewer than MinCalls, out of bounds: no hold said yet", 0, window(1000, 0, fast), window(99, 2, fast), late, "", ""},
		{"errors over the bound, not beyond doubt: the step holds", 0, window(1000, 0, fast), window(100, 3, fast), late, "held", "holding: v2 error rate 3.00% > v1's 0.00% + 1 points (3 of 100 calls failed, at 10%), not beyond doubt yet"},
		{"errors over the bound, not beyond doubt, step not over", 0, window(1000, 0, fast), window(100, 3, fast), early, "", ""},
		{"errors over the bound beyond doubt", 0, window(1000, 0, fast), window(100, 10, fast), early, "rolled back", "v2 error rate 10.00% > v1's 0.00% + 1 points (10 of 100 calls failed, at 10%)"},
		{"every call failing", 0, window(1000, 0, fast), window(100, 100, fast), early, "rolled back", "100 of 100"},
		{"errors at the bound", 0, window(1000, 0, fast), window(100, 1, fast), late, "advanced", ""},
		{"errors measured against old's", 0, window(1000, 100, fast), window(200, 21, fast), late, "advanced", ""},
		{"errors well over old's", 0, window(1000, 100, fast), window(200, 45, fast), early, "rolled back", "v1's 10.00%"},
		{"old too small: its errors count as none", 0, window(10, 5, fast), window(100, 10, fast), early, "rolled back", "v1's 0.00%"},
		{"every call slower than the p99 bound", 0, window(1000, 0, fast), window(100, 0, slow), early, "rolled back", "100 of 100 calls slower than 6.248ms"},
		{"two slow calls: p99 over, not beyond doubt", 0, window(1000, 0, fast), mixed(100, 2), late, "held", "holding: v2 p99"},
		{"three slow calls diluted: p99 within", 0, window(1000, 0, fast), mixed(1000, 3), late, "advanced", ""},
		{"old too small to compare p99 with", 0, window(10, 0, fast), window(100, 0, slow), late, "advanced", ""},
		{"within bounds, step not over", 0, window(1000, 0, fast), window(100, 0, fast), early, "", ""},
		{"within bounds, step over", 0, window(1000, 0, fast), window(100, 0, fast), late, "advanced", ""},
		{"the step before 100 ends the ramp", 1, window(1000, 0, fast), window(100, 0, fast), late, "done", "v2 at 100%"},
		{"a breach at a step's end still rolls back", 1, window(1000, 0, fast), window(100, 50, fast), late, "rolled back", "at 50%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base
			r.Step = tc.step
			next, what := r.next(tc.old, tc.new, tc.now)
			if what != tc.want || (next == nil) != (tc.want == "") {
				t.Fatalf("got %q (%+v), want %q", what, next, tc.want)
			}
			if next == nil {
				return
			}
			if !strings.Contains(next.Reason+next.Note, tc.reason) {
				t.Fatalf("reason %q, note %q: no %q", next.Reason, next.Note, tc.reason)
			}
			switch tc.want {
			case "advanced":
				if next.Step != tc.step+1 || !next.StepStarted.Equal(tc.now) || next.State != RampRunning {
					t.Fatalf("advanced to %+v", next)
				}
			case "rolled back":
				if w := next.weightsNow(); w["v1"] != 100 || w["v2"] != 0 {
					t.Fatalf("rolled back to %v", w)
				}
			case "held":
				if next.State != RampRunning || next.Step != tc.step {
					t.Fatalf("held as %+v", next)
				}
				if again, what := next.next(tc.old, tc.new, tc.now); again != nil {
					t.Fatalf("held twice: %s %+v", what, again)
				}
			case "done":
				if w := next.weightsNow(); w["v1"] != 0 || w["v2"] != 100 || next.State != RampDone {
					t.Fatalf("done at %v, %s", w, next.State)
				}
			}
		})
	}
}

func TestRampCheck(t *testing.T) {
	ok := Ramp{From: "v1", To: "v2", Steps: []int{1, 5, 100}, Every: Duration(time.Second), Bounds: DefaultBounds}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*Ramp){
		"same versions":  func(r *Ramp) { r.To = "v1" },
		"no steps":       func(r *Ramp) { r.Steps = nil },
		"descending":     func(r *Ramp) { r.Steps = []int{5, 1} },
		"over 100":       func(r *Ramp) { r.Steps = []int{50, 101} },
		"zero every":     func(r *Ramp) { r.Every = 0 },
		"no calls":       func(r *Ramp) { r.MinCalls = 0 },
		"ratio under 1":  func(r *Ramp) { r.MaxP99Ratio = 0.5 },
		"negative slack": func(r *Ramp) { r.P99Slack = -1 },
	} {
		r := ok
		r.Steps = append([]int(nil), ok.Steps...)
		edit(&r)
		if r.Check() == nil {
			t.Errorf("%s: accepted %+v", name, r)
		}
	}
}

// Windows sum the callers' numbers from their earlier values; a caller
// that started since counts whole, one gone counts no more; rates are
// per caller over the span between its two published values.
func TestReadingCalls(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	calls := func(n, errs uint64) []report.VersionStats {
		return []report.VersionStats{{Service: "echo", Version: "v2", Calls: n, Errors: errs, Latency: histogram.Histogram{{Index: 60, Count: n}}}}
	}
	earlier := Reading{At: t0, Nodes: map[string]NodeStats{
		"a":    {At: t0, Calls: calls(100, 1)},
		"gone": {At: t0, Calls: calls(500, 0)},
	}}
	later := Reading{At: t0.Add(2 * time.Second), Nodes: map[string]NodeStats{
		"a":   {At: t0.Add(2 * time.Second), Calls: calls(300, 3)},
		"new": {At: t0.Add(2 * time.Second), Calls: calls(50, 0)},
	}}
	w := later.Calls("echo", &earlier)["v2"]
	if w.Calls != 250 || w.Errors != 2 || w.Latency.Count() != 250 || w.Rate != 125 {
		t.Fatalf("window %+v, want 250 calls, 2 errors, 125/s", w)
	}
	if total := later.Calls("echo", nil)["v2"]; total.Calls != 350 || total.Rate != 0 {
		t.Fatalf("since start: %+v", total)
	}
	if len(later.Calls("other", &earlier)) != 0 {
		t.Fatal("another service's calls counted")
	}
}

func TestBinomialTail(t *testing.T) {
	exact := func(k, n uint64, p float64) float64 { // the sum of the pmf, term by term
		sum := 0.0
		for i := k; i <= n; i++ {
			lg := func(x uint64) float64 { v, _ := math.Lgamma(float64(x) + 1); return v }
			sum += math.Exp(lg(n) - lg(i) - lg(n-i) + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
		}
		return sum
	}
	for _, tc := range []struct {
		k, n uint64
		p    float64
	}{{2, 100, 0.01}, {5, 100, 0.01}, {7, 100, 0.01}, {10, 100, 0.01}, {40, 200, 0.11}, {30, 1000, 0.01}, {900, 1000, 0.5}} {
		got, want := binomialTail(tc.k, tc.n, tc.p), exact(tc.k, tc.n, tc.p)
		if math.Abs(got-want) > 1e-9*max(want, 1e-300) && math.Abs(got-want) > 1e-15 {
			t.Errorf("P(X >= %d), X ~ B(%d, %g): %g, want %g", tc.k, tc.n, tc.p, got, want)
		}
	}
	if binomialTail(1, 100, 0.01) != 1 || binomialTail(0, 10, 0.5) != 1 || binomialTail(11, 10, 0.5) != 0 || binomialTail(1, 10, 0) != 0 {
		t.Error("edge cases")
	}
	if p := binomialTail(1_000_000, 1_000_000, 0.01); p != 0 {
		t.Errorf("all of a million bad at 1%%: %g", p)
	}
}
