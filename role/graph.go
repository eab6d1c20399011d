package role

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/events/graph"
)

// graphTimeout bounds `terminator graph`'s talk with etcd: a command an
// operator waits on says why it cannot reach etcd rather than hang.
const graphTimeout = 10 * time.Second

// GraphConfig is what `terminator graph` runs with.
type GraphConfig struct {
	Etcd   discovery.ClientConfig
	Prefix string // the registry; default discovery.DefaultPrefix
	SVG    string // also draw the graph into this file with Graphviz's dot
	Tested string // a JSON file of exercised edges ([{"from":..,"to":..}]): mark the others untested
	Stdout io.Writer
	Stderr io.Writer
}

// Graph is `terminator graph`: it parses args (every flag also reads its
// environment variable, as every command's do) and runs RunGraph. It
// returns the exit code: 0, 1 on failure, 2 on bad usage.
func Graph(args []string, stdout, stderr io.Writer) int {
	c := GraphConfig{Stdout: stdout, Stderr: stderr}
	c.Etcd.Endpoints = []string{rollout.DefaultEndpoint}
	fs := flag.NewFlagSet("graph", flag.ContinueOnError)
	c.Etcd.RegisterFlags(fs)
	fs.Lookup("etcd-endpoints").Usage = "comma-separated etcd client URLs; the default is the embedded etcd of terminator all"
	fs.StringVar(&c.SVG, "svg", "", "also write the graph as SVG to this `file`, drawn by Graphviz's dot (Debian package graphviz)")
	fs.StringVar(&c.Tested, "tested", "", "JSON `file` of the edges tests exercised, [{\"from\":..,\"to\":..}]: the others are drawn red")
	env := CommandEnvName("graph")
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + env(f.Name) + ")" })
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: terminator graph [flags]\n\n"+
			"Draws the cascade graph of the registered services' domain events (routes -> topics ->\n"+
			"subscription groups -> topics) as DOT on stdout, and a summary of its findings on\n"+
			"stderr: cycles, topics nobody consumes, subscriptions that receive nothing, and with\n"+
			"-tested the edges no test exercised. docs/cascade.md explains the marks.\n\n")
		fs.PrintDefaults()
	}
	fs.SetOutput(io.Discard) // the error alone, not every flag after it
	if err := ParseEnv(fs, args, env); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return 0
		}
		fmt.Fprintf(stderr, "terminator graph: %v\n(terminator graph -h lists the flags and their variables)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "terminator graph: unexpected arguments %q (terminator graph -h lists the flags)\n", fs.Args())
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), graphTimeout)
	defer cancel()
	if err := RunGraph(ctx, c); err != nil {
		fmt.Fprintf(stderr, "terminator graph: %v\n", err)
		return 1
	}
	return 0
}

// RunGraph lists the registrations, draws their cascade graph as DOT on
// c.Stdout, writes the summary on c.Stderr and, with c.SVG, the drawing.
func RunGraph(ctx context.Context, c GraphConfig) error {
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	// What cannot work is said before etcd is asked anything.
	var dotBin string
	if c.SVG != "" {
		var err error
		if dotBin, err = exec.LookPath("dot"); err != nil {
			return fmt.Errorf("-svg needs Graphviz's dot, which is not in PATH: install the package graphviz (apt-get install graphviz): %w", err)
		}
	}
	var exercised map[events.Edge]int64
	if c.Tested != "" {
		edges, err := readEdges(c.Tested)
		if err != nil {
			return err
		}
		exercised = graph.Exercised(edges)
	}
	regs, err := listRegistrations(ctx, c)
	if err != nil {
		return err
	}
	services, declaring := graphServices(regs)
	g := graph.Build(services, exercised)

	var dot bytes.Buffer
	if err := g.WriteDOT(&dot); err != nil {
		return err
	}
	if _, err := c.Stdout.Write(dot.Bytes()); err != nil {
		return fmt.Errorf("write DOT: %w", err)
	}
	fmt.Fprintf(c.Stderr, "%d registrations of %d services; %d declare events\n", len(regs), len(services), declaring)
	fmt.Fprint(c.Stderr, g.Summary())
	if c.SVG != "" {
		if err := drawSVG(ctx, dotBin, dot.Bytes(), c.SVG); err != nil {
			return err
		}
		fmt.Fprintf(c.Stderr, "wrote %s\n", c.SVG)
	}
	return nil
}

// listRegistrations connects (Connect names the cause of a failure: a
// refused connection, a TLS handshake) and lists the registry once. A
// registration that does not parse is reported and left out.
func listRegistrations(ctx context.Context, c GraphConfig) ([]discovery.Registration, error) {
	log := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cli, err := c.Etcd.Connect(ctx, discovery.ConnectOptions{Prefix: c.Prefix, Logger: log})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	regs, err := discovery.List(ctx, cli, c.Prefix)
	if err != nil && regs == nil {
		return nil, err
	}
	if err != nil {
		fmt.Fprintf(c.Stderr, "warning: %v\n", err)
	}
	return regs, nil
}

// graphServices merges the registrations per service: the union of its
// instances' routes and declarations (instances of two versions may
// declare different things; the graph shows all of it). It also counts
// the registrations that declare events.
func graphServices(regs []discovery.Registration) ([]graph.Service, int) {
	var out []graph.Service
	index := map[string]int{}
	declaring := 0
	for _, r := range regs {
		i, ok := index[r.Service]
		if !ok {
			i = len(out)
			index[r.Service] = i
			out = append(out, graph.Service{Name: r.Service})
		}
		s := &out[i]
		for _, rt := range r.Routes {
			s.Routes = append(s.Routes, rt.Route)
		}
		if r.Events != nil {
			declaring++
			s.Events.Publishes = append(s.Events.Publishes, r.Events.Publishes...)
			s.Events.Subscribes = append(s.Events.Subscribes, r.Events.Subscribes...)
		}
	}
	for i := range out {
		slices.Sort(out[i].Routes)
		out[i].Routes = slices.Compact(out[i].Routes)
	}
	return out, declaring
}

// readEdges reads -tested: a JSON array of events.Edge.
func readEdges(path string) ([]events.Edge, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-tested: %w", err)
	}
	var edges []events.Edge
	if err := json.Unmarshal(b, &edges); err != nil {
		return nil, fmt.Errorf("-tested %s: want a JSON array of {\"from\":..,\"to\":..}: %w", path, err)
	}
	for i, e := range edges {
		if e.From == "" || e.To == "" {
			return nil, fmt.Errorf("-tested %s: edge %d has no \"from\" or no \"to\"", path, i)
		}
	}
	return edges, nil
}

// drawSVG runs `dot -Tsvg` on the DOT text into path.
func drawSVG(ctx context.Context, dotBin string, dot []byte, path string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dotBin, "-Tsvg", "-o", path)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(dot), &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dot -Tsvg -o %s: %w: %s", path, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
