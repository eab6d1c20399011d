package graph

import (
	"bytes"
	"math/rand/v2"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"github.com/terminator-gw/terminator/nanobus/events"
)

// pubs declares topics published from routes: "topic=route,route".
func pubs(specs ...string) []events.Publication {
	var out []events.Publication
	for _, s := range specs {
		topic, routes, _ := strings.Cut(s, "=")
		p := events.Publication{Topic: topic}
		if routes != "" {
			p.Routes = strings.Split(routes, ",")
		}
		out = append(out, p)
	}
	return out
}

func sub(topic, from, group string, publishes ...string) events.Subscription {
	return events.Subscription{Topic: topic, From: from, Group: group, Publishes: publishes}
}

func svc(name string, p []events.Publication, s ...events.Subscription) Service {
	return Service{Name: name, Events: events.Declaration{Publishes: p, Subscribes: s}}
}

func edge(from, to string) events.Edge { return events.Edge{From: from, To: to} }

// The sample app as it is today, plus a notifications service reading
// visits' and flirts' events.
var sample = []Service{
	svc("visits", pubs("profile.visited=visits.record")),
	svc("flirts", pubs("flirt.sent=flirts.send")),
	svc("profiles", pubs("profile.updated=profiles.put")),
	svc("notifications", nil,
		sub("profile.visited", "visits", "notifications"),
		sub("flirt.sent", "flirts", "notifications")),
}

func TestBuild(t *testing.T) {
	for _, tt := range []struct {
		name       string
		services   []Service
		cycles     [][]string
		unconsumed []string
		dangling   []Dangling
	}{
		{
			name:       "sample",
			services:   sample,
			unconsumed: []string{"profile.updated"},
		},
		{
			name:     "self-loop: a handler publishes what it reads",
			services: []Service{svc("a", pubs("t=a.put"), sub("t", "a", "g", "t"))},
			cycles:   [][]string{{"topic:t", "group:a:g"}},
		},
		{
			name: "3-cycle across services",
			services: []Service{
				svc("a", pubs("x=a.put"), sub("z", "c", "ga", "x")),
				svc("b", nil, sub("x", "a", "gb", "y")),
				svc("c", nil, sub("y", "b", "gc", "z")),
			},
			cycles: [][]string{{"topic:x", "group:b:gb", "topic:y", "group:c:gc", "topic:z", "group:a:ga"}},
		},
		{
			// One group reads a and b; only a's handler publishes b. The
			// drawn graph has b -> g -> b, but no event can go round it.
			name: "no false loop through a shared group",
			services: []Service{
				svc("p", pubs("a=p.put")),
				svc("s", nil, sub("a", "p", "g", "b"), sub("b", "s", "g")),
			},
		},
		{
			// The handler's b is s's, but the loop reads b from p, which
			// does not publish it: nothing goes round.
			name: "no loop through a subscription that receives nothing",
			services: []Service{
				svc("p", pubs("a=p.put")),
				svc("s", nil, sub("a", "p", "g", "b"), sub("b", "p", "h", "a")),
			},
			unconsumed: []string{"b"},
			dangling:   []Dangling{{Service: "s", Group: "h", Topic: "b", From: "p"}},
		},
		{
			name: "unconsumed topics and a subscription to nothing",
			services: []Service{
				svc("a", pubs("x=a.put", "y=a.post")),
				svc("b", nil, sub("x", "a", "g"), sub("nope", "a", "g")),
			},
			unconsumed: []string{"y"},
			dangling:   []Dangling{{Service: "b", Group: "g", Topic: "nope", From: "a"}},
		},
		{
			name: "the same service twice (two instances) is one",
			services: []Service{
				svc("a", pubs("x=a.put")),
				svc("a", pubs("x=a.put", "x=a.post")),
				svc("b", nil, sub("x", "a", "g")),
				svc("b", nil, sub("x", "a", "g")),
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := Build(tt.services, nil)
			if !reflect.DeepEqual(g.Cycles, tt.cycles) {
				t.Errorf("cycles = %q, want %q", g.Cycles, tt.cycles)
			}
			if !reflect.DeepEqual(g.Unconsumed, tt.unconsumed) {
				t.Errorf("unconsumed = %q, want %q", g.Unconsumed, tt.unconsumed)
			}
			if !reflect.DeepEqual(g.Dangling, tt.dangling) {
				t.Errorf("dangling = %+v, want %+v", g.Dangling, tt.dangling)
			}
			if g.Tested || g.Untested != nil {
				t.Errorf("without an exercised set: Tested %v, untested %v", g.Tested, g.Untested)
			}
			// Every edge of a cycle is marked, and no other.
			onCycle := map[events.Edge]bool{}
			for _, c := range tt.cycles {
				for i := range c {
					onCycle[edge(c[i], c[(i+1)%len(c)])] = true
				}
			}
			for _, e := range g.Edges {
				if e.Cycle != onCycle[e.Edge] {
					t.Errorf("edge %s -> %s: Cycle %v, want %v", e.From, e.To, e.Cycle, onCycle[e.Edge])
				}
			}
		})
	}
}

func TestEdgesAndNodes(t *testing.T) {
	g := Build(sample, nil)
	var got []string
	for _, e := range g.Edges {
		got = append(got, e.From+" -> "+e.To)
	}
	want := []string{
		"route:flirts:flirts.send -> topic:flirt.sent",
		"route:profiles:profiles.put -> topic:profile.updated",
		"route:visits:visits.record -> topic:profile.visited",
		"topic:flirt.sent -> group:notifications:notifications",
		"topic:profile.visited -> group:notifications:notifications",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("edges:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, n := range g.Nodes {
		if n.ID == "topic:profile.visited" && !reflect.DeepEqual(n.Publishers, []string{"visits"}) {
			t.Errorf("publishers of %s = %q", n.ID, n.Publishers)
		}
	}
}

func TestUntested(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		exercised            map[events.Edge]int64
		untested, undeclared []events.Edge
	}{
		{
			name:      "nothing exercised: every edge untested",
			exercised: map[events.Edge]int64{},
			untested: []events.Edge{
				edge("route:flirts:flirts.send", "topic:flirt.sent"),
				edge("route:profiles:profiles.put", "topic:profile.updated"),
				edge("route:visits:visits.record", "topic:profile.visited"),
				edge("topic:flirt.sent", "group:notifications:notifications"),
				edge("topic:profile.visited", "group:notifications:notifications"),
			},
		},
		{
			name: "some exercised, a zero count is not",
			exercised: map[events.Edge]int64{
				edge("route:visits:visits.record", "topic:profile.visited"):        3,
				edge("topic:profile.visited", "group:notifications:notifications"): 3,
				edge("route:flirts:flirts.send", "topic:flirt.sent"):               1,
				edge("topic:flirt.sent", "group:notifications:notifications"):      0,
				edge("route:profiles:profiles.put", "topic:profile.updated"):       2,
			},
			untested: []events.Edge{edge("topic:flirt.sent", "group:notifications:notifications")},
		},
		{
			name: "from a file: edges exercised, one of them not declared",
			exercised: Exercised([]events.Edge{
				edge("route:visits:visits.record", "topic:profile.visited"),
				edge("route:visits:visits.record", "topic:profile.visited"),
				edge("topic:profile.visited", "group:notifications:notifications"),
				edge("route:flirts:flirts.send", "topic:flirt.sent"),
				edge("topic:flirt.sent", "group:notifications:notifications"),
				edge("route:profiles:profiles.patch", "topic:profile.updated"),
			}),
			untested:   []events.Edge{edge("route:profiles:profiles.put", "topic:profile.updated")},
			undeclared: []events.Edge{edge("route:profiles:profiles.patch", "topic:profile.updated")},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := Build(sample, tt.exercised)
			if !g.Tested {
				t.Error("Tested false with an exercised set")
			}
			if !reflect.DeepEqual(g.Untested, tt.untested) {
				t.Errorf("untested = %v, want %v", g.Untested, tt.untested)
			}
			if !reflect.DeepEqual(g.Undeclared, tt.undeclared) {
				t.Errorf("undeclared = %v, want %v", g.Undeclared, tt.undeclared)
			}
			var dot bytes.Buffer
			if err := g.WriteDOT(&dot); err != nil {
				t.Fatal(err)
			}
			for _, e := range tt.untested {
				if want := quote(e.From) + " -> " + quote(e.To) + " [" + untestedEdge; !strings.Contains(dot.String(), want) {
					t.Errorf("DOT has no %s", want)
				}
			}
			for _, e := range tt.undeclared {
				if want := quote(e.From) + " -> " + quote(e.To) + " [" + undeclaredEdge; !strings.Contains(dot.String(), want) {
					t.Errorf("DOT has no %s", want)
				}
			}
		})
	}
}

func TestDOTMarks(t *testing.T) {
	services := append([]Service{
		svc("a", pubs("t=a.put"), sub("t", "a", "loop", "t")),
		svc("b", nil, sub("ghost", "a", "g")),
	}, sample...)
	var buf bytes.Buffer
	if err := Build(services, nil).WriteDOT(&buf); err != nil {
		t.Fatal(err)
	}
	dot := buf.String()
	for _, want := range []string{
		`"topic:t" -> "group:a:loop" [` + cycleEdge,
		`"group:a:loop" -> "topic:t" [` + cycleEdge,
		`"topic:profile.updated" [label="profile.updated\n(no consumer)", ` + unconsumedStyle,
		`"topic:ghost" [label="ghost\n(no publisher)", ` + noPublisherStyle,
		`"topic:ghost" -> "group:b:g" [` + danglingEdge + `, label="from a?"`,
		`"group:notifications:notifications" [label="notifications: notifications", ` + groupStyle,
		`"route:visits:visits.record" [label="visits.record", ` + routeStyle,
		`"route:visits:visits.record" -> "topic:profile.visited";`,
		`label="visits"`,
		"legend [shape=plaintext",
		"cycles: 1   unconsumed topics: 1",
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT has no %s\n%s", want, dot)
		}
	}
	if strings.Contains(dot, "untested") {
		t.Errorf("untested marks without an exercised set:\n%s", dot)
	}
}

// The same declarations, in any order, draw the same text.
func TestStableOutput(t *testing.T) {
	services := append([]Service{
		svc("a", pubs("x=a.put"), sub("z", "c", "ga", "x")),
		svc("b", nil, sub("x", "a", "gb", "y")),
		svc("c", nil, sub("y", "b", "gc", "z")),
	}, sample...)
	exercised := map[events.Edge]int64{edge("route:a:a.put", "topic:x"): 1, edge("route:a:a.get", "topic:x"): 1}
	render := func(s []Service) string {
		var buf bytes.Buffer
		if err := Build(s, exercised).WriteDOT(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	want := render(services)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		s := append([]Service(nil), services...)
		r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
		if got := render(s); got != want {
			t.Fatalf("shuffle %d: DOT differs:\n%s\nwant:\n%s", i, got, want)
		}
	}
}

// Graphviz reads what WriteDOT writes (where it is installed).
func TestDotAccepts(t *testing.T) {
	dotBin, err := exec.LookPath("dot")
	if err != nil {
		t.Skip("graphviz's dot is not installed")
	}
	g := Build(append([]Service{svc("a", pubs("t=a.put"), sub("t", "a", "loop", "t")), svc("b", nil, sub("ghost", "a", "g"))}, sample...),
		map[events.Edge]int64{edge("route:x:GET /\"q\"", "topic:t"): 1})
	var buf bytes.Buffer
	if err := g.WriteDOT(&buf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dotBin, "-Tsvg")
	cmd.Stdin = &buf
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("dot: %v: %s\n%s", err, stderr.String(), buf.String())
	}
	if !bytes.Contains(out, []byte("<svg")) {
		t.Errorf("dot wrote no SVG: %.200s", out)
	}
}

func TestSummary(t *testing.T) {
	g := Build([]Service{svc("a", pubs("t=a.put"), sub("t", "a", "loop", "t"))}, map[events.Edge]int64{})
	s := g.Summary()
	for _, want := range []string{"cycles: 1\n", "topic:t -> group:a:loop -> topic:t", "unconsumed topics: 0", "untested edges: 3 of 3"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary has no %q:\n%s", want, s)
		}
	}
}
