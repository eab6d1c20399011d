package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/policy"
)

// flagged answers which of the flags it knows are on for the request, as
// its handler sees them, and as a call it makes sees them.
func flagged(n *nanobus.Node) error {
	return n.Handle("GET /flags", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: fmt.Appendf(nil, "new-inbox=%v beta=%v", req.Flag("new-inbox"), req.Flag("beta"))}, nil
	})
}

// Flags are on, off, or on for a percentage of the clients, sticky by the
// key -by names; a change reaches the handlers within a second, and fails
// no request.
func TestFlagsOnOffPercentAndHot(t *testing.T) {
	c := newCluster(t)
	front := c.start("front", "f1")
	c.service("flagged", "v1", flagged)
	waitInstances(t, front, "flagged", "v1")
	url := frontURL(front, "/flags")

	l := startLoad(2, func(int, int) reply { return get(url) }, func(r reply) bool { return r.err == nil && r.status == 200 })
	defer l.finish()
	for _, step := range []struct{ state, want string }{
		{"on", "new-inbox=true"},
		{"off", "new-inbox=false"},
		{"on", "new-inbox=true"},
	} {
		c.run("flag", "set", "new-inbox", step.state)
		set := time.Now()
		eventually(t, time.Second, "a handler sees new-inbox "+step.state, func() bool {
			return strings.HasPrefix(get(url).body, step.want)
		})
		t.Logf("new-inbox %s reached the handler %v after the CLI returned", step.state, time.Since(set).Round(time.Millisecond))
	}
	l.waitMore(t, 50)
	l.finish()
	l.wantNoFailure(t)

	// 30% by header: the same key always gets the same answer, the one
	// policy.Flag.On gives; over n keys, the share on is Binomial(n, 0.3)
	// (the key's hash is uniform) within its exact 99.99% interval.
	c.run("flag", "set", "beta", "30", "-by", "header:X-User")
	beta := policy.Flag{Name: "beta", Percent: 30, By: "header:X-User"}
	eventually(t, time.Second, "beta at 30%", func() bool {
		for i := range 20 {
			if strings.HasSuffix(get(url, "X-User", fmt.Sprint("probe", i)).body, "beta=true") {
				return true
			}
		}
		return false
	})
	const n = 500
	on := 0
	for i := range n {
		key := fmt.Sprint("user-", i)
		want := fmt.Sprintf("beta=%v", beta.On(key))
		for range 2 {
			if r := get(url, "X-User", key); r.status != 200 || !strings.HasSuffix(r.body, want) {
				t.Fatalf("key %s: %d %q, want %s", key, r.status, r.body, want)
			}
		}
		if beta.On(key) {
			on++
		}
	}
	lo, hi := binomialInterval(n, 0.3, 0.9999)
	t.Logf("beta on for %d of %d keys; 99.99%% interval [%d, %d]", on, n, lo, hi)
	if on < lo || on > hi {
		t.Fatalf("beta on for %d of %d keys: outside [%d, %d]", on, n, lo, hi)
	}

	out := c.run("flag", "show")
	for _, want := range []string{"beta       30%    header:X-User", "new-inbox  on     -"} {
		if !strings.Contains(out, want) {
			t.Fatalf("flag show lacks %q:\n%s", want, out)
		}
	}
	c.run("flag", "clear", "beta")
	if out, code := c.runCode("flag", "clear", "beta"); code != 1 || !strings.Contains(out, "no feature flag beta") {
		t.Fatalf("clearing a flag twice: exit %d\n%s", code, out)
	}
	if out, code := c.runCode("flag", "set", "bad", "130"); code != 1 {
		t.Fatalf("flag set bad 130: exit %d\n%s", code, out)
	}
}
