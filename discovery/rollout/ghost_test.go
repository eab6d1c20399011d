package rollout_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// ghostApp is a service at two versions whose replies differ on purpose,
// and a sink it calls, which notes whether calls come marked as ghosts.
type ghostApp struct {
	release                chan struct{} // v2's GET /slow answers once it is closed
	v2Writes               atomic.Int64  // POST /write reached v2 (it must not: not ghost-safe)
	handlerGhost           [3]atomic.Int64
	sinkLive, sinkGhost    atomic.Int64
	v1ChainSaw, v2ChainSaw atomic.Value // what req.Ghost() said in GET /chain
}

func (a *ghostApp) register(version string) func(*nanobus.Node) error {
	return func(n *nanobus.Node) error {
		ok := func(context.Context, *nanobus.Request) (nanobus.Reply, error) {
			return nanobus.Reply{Body: []byte("ok")}, nil
		}
		return errorsJoin(
			n.Handle("GET /same", func(context.Context, *nanobus.Request) (nanobus.Reply, error) {
				// Equal but for a timestamp, which the policy ignores.
				return nanobus.JSON(200, map[string]any{"n": 1, "ts": time.Now().UnixNano(), "by": map[string]any{"ts": version}})
			}),
			n.Handle("GET /diff", func(context.Context, *nanobus.Request) (nanobus.Reply, error) {
				if version == "v2" {
					return nanobus.JSON(200, map[string]int{"n": 2})
				}
				return nanobus.JSON(200, map[string]int{"n": 1})
			}),
			n.Handle("GET /slow", func(ctx context.Context, _ *nanobus.Request) (nanobus.Reply, error) {
				if version == "v2" {
					select {
					case <-a.release:
					case <-ctx.Done():
						return nanobus.Reply{}, ctx.Err()
					}
				}
				return nanobus.Reply{Body: []byte("ok")}, nil
			}, nanobus.Timeout(30*time.Second)),
			n.Handle("POST /write", func(ctx context.Context, r *nanobus.Request) (nanobus.Reply, error) {
				if version == "v2" {
					a.v2Writes.Add(1)
				}
				return ok(ctx, r)
			}),
			n.Handle("POST /safe", ok, nanobus.GhostSafe()),
			n.Handle("GET /chain", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
				if version == "v2" {
					a.v2ChainSaw.Store(req.Ghost())
				} else {
					a.v1ChainSaw.Store(req.Ghost())
				}
				resp, err := n.Call(ctx, "sink", "sink.note", nil)
				if err != nil {
					return nanobus.Reply{}, err
				}
				resp.Release()
				return nanobus.Reply{Body: []byte("chained")}, nil
			}),
		)
	}
}

func (a *ghostApp) sink(n *nanobus.Node) error {
	return n.Handle("sink.note", func(_ context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		if req.Ghost() {
			a.sinkGhost.Add(1)
		} else {
			a.sinkLive.Add(1)
		}
		return nanobus.Reply{}, nil
	})
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ghostOf waits until the published numbers of service's route satisfy
// ok, and returns them.
func (c *cluster) ghostOf(route string, ok func(report.GhostStats) bool) report.GhostStats {
	c.t.Helper()
	var got report.GhostStats
	eventually(c.t, 10*time.Second, "published ghost numbers of "+route, func() bool {
		for _, g := range c.reading().Ghosts("g") {
			if g.Route == route {
				got = g
				return ok(g)
			}
		}
		return false
	})
	return got
}

func TestGhost(t *testing.T) {
	c := newCluster(t)
	front := c.start("front", "f1")
	app := &ghostApp{release: make(chan struct{})}
	c.service("sink", "v1", app.sink)
	c.service("g", "v1", app.register("v1"))
	c.service("g", "v2", app.register("v2"))
	waitInstances(t, front, "g", "v1", "v2")
	out := c.run("rollout", "ghost", "g", "v2", "-ignore", "ts", "-headers", "Content-Type")
	if !strings.Contains(out, "ghost    v2 gets a copy of 100% of the idempotent and ghost-safe calls; compares status, Content-Type and body (JSON without ts)") {
		t.Fatalf("ghost printed:\n%s", out)
	}
	waitApplied(t, front, "g", func(p *policy.Policy) bool { return p != nil && p.Ghost != nil })
	url := func(path string) string { return frontURL(front, path) }

	t.Run("a differing reply is reported with the pair", func(t *testing.T) {
		for range 3 {
			for _, path := range []string{"/same", "/diff"} {
				if r := get(url(path)); r.status != 200 || r.version != "v1" {
					t.Fatalf("GET %s: %d %q from %q: the live reply must come from v1", path, r.status, r.body, r.version)
				}
			}
		}
		diff := c.ghostOf("GET /diff", func(g report.GhostStats) bool { return g.Differing == 3 })
		if d := diff.Diffs[len(diff.Diffs)-1]; d.What != "body" || d.Live.Body != `{"n":1}` || d.Ghost.Body != `{"n":2}` ||
			d.Live.Header["Content-Type"] != "application/json" {
			t.Fatalf("differing pair: %+v", d)
		}
		same := c.ghostOf("GET /same", func(g report.GhostStats) bool { return g.Matched == 3 })
		if same.Differing != 0 || diff.Matched != 0 {
			t.Fatalf("/same %+v, /diff %+v", same, diff)
		}
		show := c.run("rollout", "show", "g", "-window", "0s")
		for _, want := range []string{"GET /diff  3        0        3", "GET /same  3        3        0", `live   200 Content-Type: application/json; {"n":1}`, `ghost  200 Content-Type: application/json; {"n":2}`} {
			if !strings.Contains(show, want) {
				t.Fatalf("rollout show lacks %q:\n%s", want, show)
			}
		}
		t.Logf("rollout show g:\n%s", show)

		// The front's status page and status.json show the pairs too.
		page := get("http://" + front.AdminAddr() + "/status/")
		if !strings.Contains(page.body, "body differs · live: 200 <code>{&#34;n&#34;:1}</code> · ghost: 200 <code>{&#34;n&#34;:2}</code>") {
			t.Fatalf("status page without the differing pair:\n%s", page.body)
		}
		// The console groups the three alike pairs into one.
		console := get("http://" + front.AdminAddr() + "/status/console.json")
		if !strings.Contains(console.body, `"route":"GET /diff","what":"body"`) || !strings.Contains(console.body, `"count":3`) {
			t.Fatalf("console.json without the three pairs grouped:\n%s", console.body)
		}
		if !strings.Contains(string(status(t, front)["node:terminator"]), `"ghost": {`) {
			t.Fatal("status.json without the differing pairs")
		}
	})

	t.Run("a slow ghost does not delay the client", func(t *testing.T) {
		// v2 cannot answer before the test closes release: the client's
		// reply is complete while the ghost's is pending.
		if r := get(url("/slow")); r.status != 200 || r.body != "ok" || r.version != "v1" {
			t.Fatalf("GET /slow: %d %q from %q", r.status, r.body, r.version)
		}
		c.ghostOf("GET /slow", func(g report.GhostStats) bool { return g.Ghosted == 1 && g.Pending == 1 && g.Matched == 0 })
		close(app.release)
		c.ghostOf("GET /slow", func(g report.GhostStats) bool { return g.Pending == 0 && g.Matched == 1 })
	})

	t.Run("a POST is ghosted only if its route is ghost-safe", func(t *testing.T) {
		for range 3 {
			if r := do("POST", url("/write"), "x"); r.status != 200 {
				t.Fatalf("POST /write: %d %q", r.status, r.body)
			}
		}
		for range 3 {
			if r := do("POST", url("/safe"), "x"); r.status != 200 {
				t.Fatalf("POST /safe: %d %q", r.status, r.body)
			}
		}
		// The front decides on a copy before it sends the live call: once
		// the safe route's copies are counted, the other's had its chance.
		c.ghostOf("POST /safe", func(g report.GhostStats) bool { return g.Ghosted == 3 })
		for _, g := range c.reading().Ghosts("g") {
			if g.Route == "POST /write" && g.Ghosted > 0 {
				t.Fatalf("POST /write was ghosted: %+v", g)
			}
		}
		if n := app.v2Writes.Load(); n != 0 {
			t.Fatalf("v2 got %d POST /write", n)
		}
	})

	t.Run("a ghosted request and the calls its handler makes are marked", func(t *testing.T) {
		if r := get(url("/chain")); r.status != 200 || r.body != "chained" {
			t.Fatalf("GET /chain: %d %q", r.status, r.body)
		}
		c.ghostOf("GET /chain", func(g report.GhostStats) bool { return g.Matched == 1 })
		if v1, v2 := app.v1ChainSaw.Load(), app.v2ChainSaw.Load(); v1 != false || v2 != true {
			t.Fatalf("req.Ghost(): live v1 saw %v, ghost v2 saw %v", v1, v2)
		}
		if live, ghost := app.sinkLive.Load(), app.sinkGhost.Load(); live != 1 || ghost != 1 {
			t.Fatalf("sink got %d live and %d ghost calls, want 1 and 1", live, ghost)
		}
	})

	out = c.run("rollout", "ghost", "g", "off")
	if strings.Contains(out, "ghost  ") || !strings.Contains(out, "policy  none") {
		t.Fatalf("ghost off printed:\n%s", out)
	}
}
