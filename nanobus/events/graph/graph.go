// Package graph is the cascade graph of a fleet's domain events: which
// routes publish which topics, which subscription handlers consume them,
// and what those handlers publish in turn. It is built from what services
// declare (events.Declaration, as registered in etcd), optionally marked
// with the edges tests exercised (events.Bus.Exercised), and it reports
// what a reviewer should look at: cascades that loop, events nobody
// consumes, subscriptions that can receive nothing, and edges no test
// carried. WriteDOT draws it for Graphviz.
//
// Nodes and edges are named as events.Edge names them at runtime
// (events.RouteNode, TopicNode, GroupNode), so an exercised set recorded
// by a test run matches the declared graph edge for edge.
package graph

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/terminator-gw/terminator/nanobus/events"
)

// Service is what one service declares. A service may be listed several
// times (once per instance, say): Build takes the union.
type Service struct {
	Name   string
	Routes []string // the routes it serves (informational: publishing routes come from Events)
	Events events.Declaration
}

// Kind is what a node stands for.
type Kind int

const (
	Route Kind = iota // a route that publishes
	Topic             // an event topic
	Group             // a subscription group's handlers in a service
)

func (k Kind) String() string {
	switch k {
	case Route:
		return "route"
	case Topic:
		return "topic"
	}
	return "group"
}

// Node is one node of the graph.
type Node struct {
	ID      string // as events names it: "route:svc:r", "topic:t", "group:svc:g"
	Kind    Kind
	Service string // the route's or group's service; "" for a topic
	Name    string // the route, topic or group
	// For a topic: Publishers are the services that declare it;
	// Unconsumed says no subscription reads it from any of them;
	// NoPublisher says subscriptions want it but no service declares it.
	Publishers  []string
	Unconsumed  bool
	NoPublisher bool
}

// Edge is one edge of the graph with its marks.
type Edge struct {
	events.Edge
	Cycle      bool // on a cascade cycle
	Untested   bool // no test exercised it (only when an exercised set was given; never a Dangling one)
	Undeclared bool // exercised, but no declaration has it
	// Dangling: a delivery edge whose every subscription names a From
	// service that does not publish the topic; Froms are those services.
	Dangling bool
	Froms    []string
}

// Dangling is a subscription to a topic its From service does not
// publish: it can receive nothing.
type Dangling struct {
	Service, Group, Topic, From string
}

// Graph is the cascade graph and what was found in it. Every slice is
// sorted, so that its drawing is the same for the same input.
type Graph struct {
	Nodes []Node
	Edges []Edge
	// Cycles are the elementary cascade cycles, each as its nodes in
	// order (topic, group, topic, group, ...; the last leads back to the
	// first), starting at its least topic.
	Cycles [][]string
	// CyclesTruncated says there were more than MaxCycles cycles: the
	// list and the marked edges are a part of them.
	CyclesTruncated bool
	Unconsumed      []string   // topics published that no subscription reads
	Dangling        []Dangling // subscriptions that can receive nothing
	Tested          bool       // an exercised set was given: Untested means something
	Untested        []events.Edge
	Undeclared      []events.Edge // exercised, not declared
}

// MaxCycles bounds the cycles listed: the number of elementary cycles can
// grow exponentially with the edges, and a few are enough to act on.
const MaxCycles = 100

// Exercised turns a list of edges (such as a JSON file of events.Edge)
// into the exercised set Build takes, each edge counted once.
func Exercised(edges []events.Edge) map[events.Edge]int64 {
	m := make(map[events.Edge]int64, len(edges))
	for _, e := range edges {
		m[e]++
	}
	return m
}

// pub is a topic as one service publishes it: a subscription reads a
// topic from one service (its From), so this, not the topic alone, is
// what cascades.
type pub struct{ service, topic string }

// handler is one subscription: a group of service reading topic from.
type handler struct {
	service, group, topic, from string
	publishes                   []string
}

// Build draws the graph of services. exercised, when not nil, is the set
// of edges tests carried (a count of 0 is not carried): the others are
// marked untested, and the carried ones no declaration has are added,
// marked undeclared. A nil exercised marks nothing.
func Build(services []Service, exercised map[events.Edge]int64) *Graph {
	b := builder{nodes: map[string]*Node{}, edges: map[events.Edge]*Edge{}, pubs: map[pub]bool{}, delivered: map[events.Edge]bool{}}
	publishers := map[string]map[string]bool{} // topic -> services
	var handlers []handler
	for _, s := range services {
		for _, p := range s.Events.Publishes {
			b.topic(p.Topic)
			set(publishers, p.Topic, s.Name)
			b.pubs[pub{s.Name, p.Topic}] = true
			for _, r := range p.Routes {
				b.edge(b.node(events.RouteNode(s.Name, r), Route, s.Name, r), events.TopicNode(p.Topic))
			}
		}
		for _, sub := range s.Events.Subscribes {
			handlers = append(handlers, handler{s.Name, sub.Group, sub.Topic, sub.From, sub.Publishes})
			// What a handler publishes its service publishes, declared
			// or not (events.Subscribe declares it).
			for _, t := range sub.Publishes {
				set(publishers, t, s.Name)
				b.pubs[pub{s.Name, t}] = true
			}
		}
	}
	// Handlers once every publication is known: whether a subscription's
	// From publishes its topic needs all of them.
	consumed := map[string]bool{}
	var g Graph
	for _, h := range handlers {
		group := b.node(events.GroupNode(h.service, h.group), Group, h.service, h.group)
		e := b.edge(b.topic(h.topic), group)
		if b.pubs[pub{h.from, h.topic}] {
			consumed[h.topic] = true
			b.delivered[e.Edge] = true
		} else {
			g.Dangling = append(g.Dangling, Dangling{h.service, h.group, h.topic, h.from})
			e.Froms = append(e.Froms, h.from)
		}
		for _, t := range h.publishes {
			b.edge(group, b.topic(t))
		}
	}
	for _, e := range b.edges {
		e.Dangling = len(e.Froms) > 0 && !b.delivered[e.Edge]
		slices.Sort(e.Froms)
		e.Froms = slices.Compact(e.Froms)
	}
	for _, n := range b.nodes {
		if n.Kind != Topic {
			continue
		}
		n.Publishers = slices.Sorted(maps.Keys(publishers[n.Name]))
		n.NoPublisher = len(n.Publishers) == 0
		n.Unconsumed = !n.NoPublisher && !consumed[n.Name]
		if n.Unconsumed {
			g.Unconsumed = append(g.Unconsumed, n.Name)
		}
	}
	g.Cycles, g.CyclesTruncated = cycles(handlers, b.pubs)
	for _, c := range g.Cycles {
		for i := range c {
			if e := b.edges[events.Edge{From: c[i], To: c[(i+1)%len(c)]}]; e != nil {
				e.Cycle = true
			}
		}
	}
	if exercised != nil {
		g.Tested = true
		for _, e := range b.edges {
			// A dangling edge can carry nothing: it is reported as such.
			if !e.Dangling && exercised[e.Edge] <= 0 {
				e.Untested = true
				g.Untested = append(g.Untested, e.Edge)
			}
		}
		for e, n := range exercised {
			if n <= 0 || b.edges[e] != nil {
				continue
			}
			b.parsed(e.From)
			b.parsed(e.To)
			b.edge(e.From, e.To).Undeclared = true
			g.Undeclared = append(g.Undeclared, e)
		}
	}
	for _, n := range b.nodes {
		g.Nodes = append(g.Nodes, *n)
	}
	slices.SortFunc(g.Nodes, func(x, y Node) int { return cmp.Compare(x.ID, y.ID) })
	for _, e := range b.edges {
		g.Edges = append(g.Edges, *e)
	}
	slices.SortFunc(g.Edges, func(x, y Edge) int { return compareEdges(x.Edge, y.Edge) })
	slices.Sort(g.Unconsumed)
	slices.SortFunc(g.Dangling, func(x, y Dangling) int {
		return cmp.Or(cmp.Compare(x.Topic, y.Topic), cmp.Compare(x.Service, y.Service), cmp.Compare(x.Group, y.Group), cmp.Compare(x.From, y.From))
	})
	g.Dangling = slices.Compact(g.Dangling)
	slices.SortFunc(g.Untested, compareEdges)
	slices.SortFunc(g.Undeclared, compareEdges)
	return &g
}

func compareEdges(x, y events.Edge) int {
	return cmp.Or(cmp.Compare(x.From, y.From), cmp.Compare(x.To, y.To))
}

func set(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

type builder struct {
	nodes     map[string]*Node
	edges     map[events.Edge]*Edge
	pubs      map[pub]bool         // what each service publishes
	delivered map[events.Edge]bool // delivery edges with a subscription whose From publishes
}

// node adds a node once and returns its ID.
func (b *builder) node(id string, k Kind, service, name string) string {
	if b.nodes[id] == nil {
		b.nodes[id] = &Node{ID: id, Kind: k, Service: service, Name: name}
	}
	return id
}

func (b *builder) topic(t string) string { return b.node(events.TopicNode(t), Topic, "", t) }

// parsed adds a node known only by its ID (from an exercised edge).
func (b *builder) parsed(id string) {
	kind, rest, _ := strings.Cut(id, ":")
	switch kind {
	case "topic":
		b.topic(rest)
	case "route", "group":
		svc, name, _ := strings.Cut(rest, ":")
		b.node(id, map[string]Kind{"route": Route, "group": Group}[kind], svc, name)
	default:
		b.node(id, Route, "", id) // not a name events makes: drawn as is
	}
}

func (b *builder) edge(from, to string) *Edge {
	k := events.Edge{From: from, To: to}
	if b.edges[k] == nil {
		b.edges[k] = &Edge{Edge: k}
	}
	return b.edges[k]
}

// cycles finds the elementary cascade cycles. It searches the finer graph
// of topics as each service publishes them (pub) and of single
// subscriptions, not the drawn one: there a group reading two topics is
// one node, so a group that reads a and b and publishes b from a's
// handler only would look like a loop b -> group -> b that no event can
// take. Each cycle found is then named in the drawn graph's nodes.
func cycles(handlers []handler, pubs map[pub]bool) (out [][]string, truncated bool) {
	// The finer graph: a pub leads to each handler reading it, a handler
	// to each pub of its service it publishes. Vertices are numbered in
	// the order of their names, which makes the search deterministic.
	type vertex struct {
		name  string // the drawn node
		key   string // unique, sortable
		succ  []int
		group bool
	}
	index := map[string]int{}
	var vs []vertex
	add := func(key, name string, group bool) {
		if _, ok := index[key]; !ok {
			index[key] = len(vs)
			vs = append(vs, vertex{name: name, key: key, group: group})
		}
	}
	pubKey := func(p pub) string { return events.TopicNode(p.topic) + "\x00" + p.service }
	hKey := func(h handler) string {
		return events.GroupNode(h.service, h.group) + "\x00" + h.topic + "\x00" + h.from
	}
	for p := range pubs {
		add(pubKey(p), events.TopicNode(p.topic), false)
	}
	for _, h := range handlers {
		add(hKey(h), events.GroupNode(h.service, h.group), true)
	}
	// Renumber in key order.
	slices.SortFunc(vs, func(x, y vertex) int { return cmp.Compare(x.key, y.key) })
	for i, v := range vs {
		index[v.key] = i
	}
	for _, h := range handlers {
		hi := index[hKey(h)]
		if from, ok := index[pubKey(pub{h.from, h.topic})]; ok && pubs[pub{h.from, h.topic}] {
			vs[from].succ = append(vs[from].succ, hi)
		}
		for _, t := range h.publishes {
			if to, ok := index[pubKey(pub{h.service, t})]; ok {
				vs[hi].succ = append(vs[hi].succ, to)
			}
		}
	}
	for i := range vs {
		slices.Sort(vs[i].succ)
		vs[i].succ = slices.Compact(vs[i].succ)
	}
	// Each elementary cycle once: from its least vertex s, through
	// vertices greater than s only.
	seen := map[string]bool{}
	var path []int
	onPath := make([]bool, len(vs))
	var walk func(s, v int) bool
	walk = func(s, v int) bool {
		for _, w := range vs[v].succ {
			switch {
			case w == s:
				c := drawn(path, func(i int) string { return vs[i].name })
				if key := strings.Join(c, "\n"); !seen[key] {
					if len(out) == MaxCycles {
						return false
					}
					seen[key] = true
					out = append(out, c)
				}
			case w > s && !onPath[w]:
				path, onPath[w] = append(path, w), true
				ok := walk(s, w)
				path, onPath[w] = path[:len(path)-1], false
				if !ok {
					return false
				}
			}
		}
		return true
	}
	for s := range vs {
		path, onPath[s] = append(path[:0], s), true
		ok := walk(s, s)
		onPath[s] = false
		if !ok {
			truncated = true
			break
		}
	}
	slices.SortFunc(out, func(x, y []string) int { return cmp.Compare(strings.Join(x, "\n"), strings.Join(y, "\n")) })
	return out, truncated
}

// drawn names a cycle of the finer graph in drawn nodes, rotated to start
// at its least topic (two services' pubs of one topic are one node there).
func drawn(path []int, name func(int) string) []string {
	c := make([]string, len(path))
	for i, v := range path {
		c[i] = name(v)
	}
	least := -1
	for i, n := range c {
		if strings.HasPrefix(n, "topic:") && (least < 0 || n < c[least]) {
			least = i
		}
	}
	if least > 0 {
		c = append(c[least:], c[:least]...)
	}
	return c
}

// Summary is what a reader wants first: the counts, and the findings
// named.
func (g *Graph) Summary() string {
	var b strings.Builder
	count := map[Kind]int{}
	for _, n := range g.Nodes {
		count[n.Kind]++
	}
	fmt.Fprintf(&b, "%d publishing routes, %d topics, %d subscription groups, %d edges\n", count[Route], count[Topic], count[Group], len(g.Edges))
	fmt.Fprintf(&b, "cycles: %d", len(g.Cycles))
	if g.CyclesTruncated {
		fmt.Fprintf(&b, " (at least; listing stopped at %d)", MaxCycles)
	}
	b.WriteString("\n")
	for _, c := range g.Cycles {
		fmt.Fprintf(&b, "  %s -> %s\n", strings.Join(c, " -> "), c[0])
	}
	fmt.Fprintf(&b, "unconsumed topics: %d", len(g.Unconsumed))
	if len(g.Unconsumed) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(g.Unconsumed, ", "))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "subscriptions to topics their service does not publish: %d\n", len(g.Dangling))
	for _, d := range g.Dangling {
		fmt.Fprintf(&b, "  %s: group %s reads %s from %s\n", d.Service, d.Group, d.Topic, d.From)
	}
	if g.Tested {
		declared := 0
		for _, e := range g.Edges {
			if !e.Undeclared && !e.Dangling {
				declared++
			}
		}
		fmt.Fprintf(&b, "untested edges: %d of %d\n", len(g.Untested), declared)
		for _, e := range g.Untested {
			fmt.Fprintf(&b, "  %s -> %s\n", e.From, e.To)
		}
		if len(g.Undeclared) > 0 {
			fmt.Fprintf(&b, "exercised but not declared: %d\n", len(g.Undeclared))
			for _, e := range g.Undeclared {
				fmt.Fprintf(&b, "  %s -> %s\n", e.From, e.To)
			}
		}
	}
	return b.String()
}
