package rollout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/role"
)

// The ramps here judge from 20 calls (not 100) and step every second, to
// finish quickly; the bounds are the defaults.
var quickRamp = []string{"-every", "1s", "-min-calls", "20"}

func ramp(c *cluster, service, version, steps string) string {
	return c.run("rollout", append([]string{"ramp", service, version, "-steps", steps}, quickRamp...)...)
}

// waitRamp waits until service's ramp is in state, and returns it.
func waitRamp(t *testing.T, c *cluster, service, state string, limit time.Duration) *rollout.Ramp {
	t.Helper()
	var r *rollout.Ramp
	eventually(t, limit, "the ramp of "+service+" "+state, func() bool {
		p := c.policy(service)
		r = p.Ramp
		if r != nil && r.State != rollout.RampRunning && r.State != state {
			t.Fatalf("ramp ended %s: %s", r.State, r.Reason)
		}
		return r != nil && r.State == state
	})
	return r
}

func TestRampCompletesWhenHealthy(t *testing.T) {
	c, front := echoCluster(t)
	l := getLoad(frontURL(front, "/echo"))
	defer l.finish()
	out := ramp(c, "echo", "v2", "20,50,100")
	for _, want := range []string{"weights  v1=80 v2=20", "ramp     v1 -> v2, steps 20,50,100 every 1s: running, step 1 of 3 (v2 at 20%)", "driven by front " + front.FrontAddr()} {
		if !strings.Contains(out, want) {
			t.Fatalf("ramp printed no %q:\n%s", want, out)
		}
	}
	r := waitRamp(t, c, "echo", rollout.RampDone, 30*time.Second)
	if w := c.policy("echo").Weights; w["v1"] != 0 || w["v2"] != 100 || r.Step != 2 {
		t.Fatalf("done at step %d with weights %v", r.Step, w)
	}
	waitApplied(t, front, "echo", func(p *policy.Policy) bool { return p != nil && p.Weights["v2"] == 100 })
	l.waitMore(t, 100)
	l.finish()
	l.wantNoFailure(t)
	t.Logf("ramp: %s", r.Reason)
}

func TestRampRollsBackWithinTwoSecondsOfFailing(t *testing.T) {
	c, front := echoCluster(t)
	l := getLoad(frontURL(front, "/echo"))
	defer l.finish()
	c.run("rollout", "ramp", "echo", "v2", "-steps", "50,100", "-every", "1h", "-min-calls", "20")
	// Healthy calls to v2 first: the window v2 is judged by holds them.
	eventually(t, 10*time.Second, "v2 answers 50 calls", func() bool { return c.reading().Calls("echo", nil)["v2"].Calls >= 50 })
	if l.bad.Load() != 0 {
		t.Fatalf("failures before v2 fails: %v", l.failures)
	}

	c.run("flag", "set", "echo-fail-v2", "on")
	eventually(t, 5*time.Second, "v2 failing", func() bool { return l.firstBad.Load() != 0 })
	failing := time.Unix(0, l.firstBad.Load())
	eventually(t, time.Until(failing.Add(2*time.Second)), "the front back on v1 within 2s of the first failure", func() bool {
		p := frontStatus(t, front).Policies["echo"]
		return p != nil && p.Weights["v1"] == 100 && p.Weights["v2"] == 0
	})
	applied := time.Now()
	badThen := l.bad.Load()
	r := c.policy("echo").Ramp
	t.Logf("rolled back %v after v2's first failure (the driver decided after %v): %s",
		applied.Sub(failing).Round(time.Millisecond), r.Ended.Sub(failing).Round(time.Millisecond), r.Reason)
	if r.State != rollout.RampRolledBack || !strings.Contains(r.Reason, "v2 error rate") {
		t.Fatalf("ramp %s: %s", r.State, r.Reason)
	}
	// Requests sent once the front is back on v1 all succeed; the few in
	// flight at the switch (one per worker at most) may still fail.
	l.waitMore(t, 200)
	if extra := l.bad.Load() - badThen; extra > 4 {
		t.Fatalf("%d requests failed after the rollback", extra)
	}
}

func TestRampSurvivesItsDriverStopping(t *testing.T) {
	c := newCluster(t)
	fronts := []*role.Process{c.start("front", "f1"), c.start("front", "f1")}
	c.start("echo", "v1")
	c.start("echo", "v2")
	for _, f := range fronts {
		waitInstances(t, f, "echo", "v1", "v2")
	}
	var driver, other *role.Process
	eventually(t, 10*time.Second, "a front drives the ramps", func() bool {
		l, err := c.store.Leader(context.Background())
		if err != nil || l == nil {
			return false
		}
		for i, f := range fronts {
			if l.Name == "front "+f.FrontAddr() {
				driver, other = f, fronts[1-i]
			}
		}
		return driver != nil
	})
	l := getLoad(frontURL(other, "/echo"))
	defer l.finish()
	ramp(c, "echo", "v2", "20,40,60,80,100")
	waitRamp(t, c, "echo", rollout.RampRunning, 10*time.Second)
	eventually(t, 15*time.Second, "the first step ends", func() bool { return c.policy("echo").Ramp.Step >= 1 })
	driver.Stop()
	stoppedAt := c.policy("echo").Ramp.Step
	eventually(t, 10*time.Second, "the other front drives", func() bool {
		l, err := c.store.Leader(context.Background())
		return err == nil && l != nil && l.Name == "front "+other.FrontAddr()
	})
	r := waitRamp(t, c, "echo", rollout.RampDone, 30*time.Second)
	t.Logf("driver stopped at step %d of %d; the other front finished: %s", stoppedAt+1, len(r.Steps), r.Reason)
	if stoppedAt >= len(r.Steps)-2 {
		t.Fatalf("the ramp was nearly over (step %d) when its driver stopped: the takeover proved nothing", stoppedAt)
	}
	l.finish()
	l.wantNoFailure(t)
}
