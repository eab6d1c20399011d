package rollout_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/role"
)

// Writers that change one policy at once (the CLI and the ramp driver)
// never lose each other's updates: each write is a compare-and-swap on
// the key's mod revision, retried from a fresh read.
func TestPolicyUpdatesLoseNothing(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				_, err := c.store.UpdatePolicy(ctx, "echo", func(p *rollout.Policy) (*rollout.Policy, error) {
					if p.Weights == nil {
						p.Weights = map[string]int{}
					}
					p.Weights[fmt.Sprintf("w%d-%d", w, i)] = 1
					return p, nil
				})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(c.policy("echo").Weights); n != 60 {
		t.Fatalf("%d of 60 updates kept", n)
	}
}

// The CLI refuses what it cannot do, with a reason, and exit code 1 (2 for
// bad usage); nothing is written.
func TestCLIRefusesBadInput(t *testing.T) {
	c := newCluster(t)
	c.start("echo", "v1")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"rollout", "weights", "echo", "v1=80", "v2=10"}, 1, "add up to 90"},
		{[]string{"rollout", "weights", "echo", "v1"}, 1, "want VERSION=PERCENT"},
		{[]string{"rollout", "weights", "echo"}, 2, "usage: terminator rollout weights"},
		{[]string{"rollout", "weights", "echo", "v9=100"}, 1, "version v9 of echo has no instance registered in etcd, so its 100% of calls would fail (versions running, with instances: v1 (1))"},
		{[]string{"rollout", "weights", "echo", "v1=90", "v9=10"}, 1, "-force sets the weights anyway"},
		{[]string{"rollout", "weights", "nosuchsvc", "v1=100"}, 1, `no instance of service "nosuchsvc" is registered in etcd (services running: echo)`},
		{[]string{"rollout", "ramp", "echo", "v1"}, 1, "cannot tell which version v1 replaces"},
		{[]string{"rollout", "ramp", "echo", "v2", "-steps", "50,20"}, 1, "want ascending percentages"},
		{[]string{"rollout", "ghost", "echo", "v2", "-percent", "0"}, 1, "-percent 0"},
		{[]string{"rollout", "ab", "echo", "exp", "a=v1"}, 1, "want VARIANT=VERSION:PERCENT"},
		{[]string{"rollout", "ab", "echo", "exp", "a=v1:50", "-by", "query:x"}, 1, "want cookie:NAME or header:NAME"},
		{[]string{"rollout", "frobnicate"}, 2, "usage: terminator rollout <command>"},
		{[]string{"flag", "set", "x", "maybe"}, 1, "want on, off or a percentage"},
		{[]string{"rollout", "show", "-window", "soon"}, 2, `invalid value "soon" for flag -window: want a duration such as 3s`},
		{[]string{"rollout", "show", "-window", "-5s"}, 1, "-window -5s: want 0s (the numbers as last published) to 10m0s"},
		{[]string{"rollout", "ramp", "echo", "v2", "-every", "-1s"}, 1, "want a positive duration"},
		{[]string{"rollout", "ramp", "echo", "v2", "-min-calls", "-5"}, 1, "want min calls >= 1"},
		{[]string{"rollout", "ghost", "echo", "v2", "-percent", "-3"}, 1, "-percent -3: want 1 to 100"},
	} {
		out, code := c.runCode(tc.args[0], tc.args[1:]...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	if p := c.policy("echo"); p != nil {
		t.Fatalf("a refused command wrote %+v", p)
	}
	if p := c.policy("nosuchsvc"); p != nil {
		t.Fatalf("a refused command wrote %+v", p)
	}
	// -force sets them all the same; a version with weight 0 needs no instance.
	c.run("rollout", "weights", "nosuchsvc", "v1=100", "-force")
	if p := c.policy("nosuchsvc"); p == nil || p.Weights["v1"] != 100 {
		t.Fatalf("weights -force wrote %+v", p)
	}
	c.run("rollout", "weights", "echo", "v1=100", "v9=0")
	c.run("rollout", "clear", "echo")
	c.run("rollout", "clear", "nosuchsvc")
	// With one other version registered, a ramp knows where it starts.
	out := c.run("rollout", "ramp", "echo", "v2")
	if !strings.Contains(out, "v1 -> v2, steps 1,5,25,50,100 every 30s: running, step 1 of 5 (v2 at 1%)") {
		t.Fatalf("ramp printed:\n%s", out)
	}
	if !strings.Contains(out, "warning: no process drives ramps now") {
		t.Fatalf("a ramp with no driver does not say so:\n%s", out)
	}
}

// Against an etcd that does not answer, a command fails within
// -etcd-dial-timeout with an error naming the endpoint and the cause.
func TestCLINamesTheEtcdItCannotReach(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	for _, args := range [][]string{
		{"rollout", "show"},
		{"rollout", "weights", "echo", "v1=100"},
		{"flag", "show"},
	} {
		var out bytes.Buffer
		done := make(chan int, 1)
		go func() {
			done <- rollout.CLI{Parse: role.Parse, EnvName: role.EnvName, Stdout: &out, Stderr: &out}.Run(args[0],
				append(args[1:], "-etcd-endpoints", dead, "-etcd-dial-timeout", "300ms"))
		}()
		select {
		case code := <-done:
			if msg := out.String(); code != 1 || !strings.Contains(msg, "etcd "+dead) || !strings.Contains(msg, "connection refused") {
				t.Errorf("%s: exit %d, want 1 naming etcd %s and the cause:\n%s", strings.Join(args, " "), code, dead, msg)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: still waiting for a dead etcd after 20s", strings.Join(args, " "))
		}
	}
}
