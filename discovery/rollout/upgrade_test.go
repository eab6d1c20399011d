package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/role"
)

// A whole rollout of web, the aggregator, from v1 to v2 under load: pin
// the calls to v1, start v2, ramp to it, stop v1. No request fails.
func TestRolloutOfWebUnderLoadFailsNothing(t *testing.T) {
	c := newCluster(t)
	front := c.start("front", "f1")
	for _, s := range []string{"profiles", "visits", "flirts", "notifications"} {
		c.start(s, "v1")
	}
	webV1 := c.start("web", "v1")
	waitInstances(t, front, "web", "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := role.Seed(ctx, frontURL(front, ""), 5); err != nil {
		t.Fatal(err)
	}

	l := startLoad(4, func(w, i int) reply { return get(frontURL(front, fmt.Sprintf("/profiles/%d", 1+(w+i)%5))) },
		func(r reply) bool { return r.err == nil && r.status == 200 })
	defer l.finish()
	c.run("rollout", "weights", "web", "v1=100")
	waitApplied(t, front, "web", func(p *policy.Policy) bool { return p != nil && p.Weights["v1"] == 100 })
	c.start("web", "v2")
	waitInstances(t, front, "web", "v1", "v2")
	ramp(c, "web", "v2", "50,100")
	waitRamp(t, c, "web", rollout.RampDone, 30*time.Second)
	waitApplied(t, front, "web", func(p *policy.Policy) bool { return p != nil && p.Weights["v2"] == 100 })
	webV1.Stop()
	l.waitMore(t, 200)
	c.run("rollout", "clear", "web")
	waitApplied(t, front, "web", func(p *policy.Policy) bool { return p == nil })
	l.waitMore(t, 200)
	l.finish()
	l.wantNoFailure(t)
	if n, ok := l.versions.Load("v2"); !ok || n.(interface{ Load() int64 }).Load() == 0 {
		t.Fatal("v2 answered nothing")
	}
}

// Every kind of policy change, made while requests flow, fails none of
// them: the next call follows the new policy, calls in flight finish.
func TestPolicyChangesUnderLoadFailNothing(t *testing.T) {
	c, front := echoCluster(t)
	url := frontURL(front, "/echo")
	l := startLoad(4, func(w, i int) reply {
		if i%2 == 0 {
			return do("POST", url, "hi")
		}
		return get(url)
	}, func(r reply) bool { return r.err == nil && r.status == 200 })
	defer l.finish()
	for _, change := range []struct {
		args    []string
		applied func(*policy.Policy) bool
	}{
		{[]string{"weights", "echo", "v1=80", "v2=20"}, func(p *policy.Policy) bool { return p != nil && p.Weights["v2"] == 20 }},
		{[]string{"weights", "echo", "v2=100"}, func(p *policy.Policy) bool { return p != nil && p.Weights["v2"] == 100 }},
		{[]string{"ghost", "echo", "v1"}, func(p *policy.Policy) bool { return p != nil && p.Ghost != nil }},
		{[]string{"weights", "echo", "v1=50", "v2=50"}, func(p *policy.Policy) bool { return p != nil && p.Weights["v1"] == 50 }},
		{[]string{"ghost", "echo", "off"}, func(p *policy.Policy) bool { return p != nil && p.Ghost == nil }},
		{[]string{"ab", "echo", "exp", "a=v1:50", "b=v2:50"}, func(p *policy.Policy) bool { return p != nil && p.AB != nil }},
		{[]string{"ab", "echo", "off"}, func(p *policy.Policy) bool { return p != nil && p.AB == nil }},
		{[]string{"clear", "echo"}, func(p *policy.Policy) bool { return p == nil }},
		{[]string{"ghost", "echo", "v2"}, func(p *policy.Policy) bool { return p != nil && p.Ghost != nil }},
		{[]string{"clear", "echo"}, func(p *policy.Policy) bool { return p == nil }},
	} {
		c.run("rollout", change.args...)
		waitApplied(t, front, "echo", change.applied)
		l.waitMore(t, 100)
		t.Logf("rollout %s: applied, 100 requests more", strings.Join(change.args, " "))
	}
	l.finish()
	l.wantNoFailure(t)
}
