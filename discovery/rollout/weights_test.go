package rollout_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/terminator-gw/terminator/nanobus/policy"
)

// With weights v1=80 v2=20 each call goes to v2 with probability 0.2, on
// its own: over n calls, v2's count is Binomial(n, 0.2). The test accepts
// the exact central 99.99% interval of that law (it fails once in 10,000
// runs of a correct picker), computed below rather than guessed.
func TestWeightsSplitWithinBinomialBounds(t *testing.T) {
	c, front := echoCluster(t)
	out := c.run("rollout", "weights", "echo", "v1=80", "v2=20")
	if !strings.Contains(out, "weights  v1=80 v2=20") {
		t.Fatalf("weights printed:\n%s", out)
	}
	waitApplied(t, front, "echo", func(p *policy.Policy) bool { return p != nil && p.Weights["v2"] == 20 })

	const n = 3000
	lo, hi := binomialInterval(n, 0.2, 0.9999)
	counts := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	url := frontURL(front, "/echo")
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 6 {
				r := get(url)
				mu.Lock()
				if r.status != 200 || r.err != nil {
					counts[fmt.Sprintf("failed %d %v", r.status, r.err)]++
				} else {
					counts[r.version]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls: %v; v2's 99.99%% interval [%d, %d] (expected %d)", n, counts, lo, hi, n/5)
	if counts["v1"]+counts["v2"] != n {
		t.Fatalf("not every call answered by v1 or v2: %v", counts)
	}
	if v2 := counts["v2"]; v2 < lo || v2 > hi {
		t.Fatalf("v2 got %d of %d calls: outside [%d, %d]", v2, n, lo, hi)
	}
}

func TestBinomialInterval(t *testing.T) {
	for _, tc := range []struct {
		n      int
		p      float64
		lo, hi int
	}{
		{3000, 0.2, 516, 686}, // normal approximation: 600 ± 3.89 × 21.9
		{1000, 0.5, 438, 562},
	} {
		lo, hi := binomialInterval(tc.n, tc.p, 0.9999)
		if lo < tc.lo-2 || lo > tc.lo+2 || hi < tc.hi-2 || hi > tc.hi+2 {
			t.Errorf("Binomial(%d, %g): [%d, %d], want about [%d, %d]", tc.n, tc.p, lo, hi, tc.lo, tc.hi)
		}
	}
}
