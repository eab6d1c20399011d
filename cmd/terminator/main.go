// Command terminator runs the gateway and its services: all in one process
// (the default for development), or one part per process against an
// external etcd cluster. The parts and their start and stop order are in
// package role; this is flags, signals and the usage text.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/terminator-gw/terminator/discovery/rollout"
	"github.com/terminator-gw/terminator/role"
	"github.com/terminator-gw/terminator/services"
)

func usage() {
	w := tabwriter.NewWriter(os.Stderr, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "usage: terminator <command> [flags]\n\ncommands:\n")
	fmt.Fprint(w, "  all\teverything in one process: etcd (embedded unless -etcd-endpoints),\n")
	fmt.Fprint(w, "  \tthe terminator and every service, over real loopback bus sockets\n")
	fmt.Fprint(w, "  front\tthe terminator (the HTTP front) alone\n")
	for _, s := range services.All() {
		fmt.Fprintf(w, "  %s\t%s, alone\n", s.Name, s.Summary)
	}
	fmt.Fprint(w, "  seed\tload sample profiles, visits and flirts through a running front\n")
	fmt.Fprint(w, "  rollout\tshow and set rollout policies: weights, ramps, ghost, A/B (terminator rollout -h)\n")
	fmt.Fprint(w, "  flag\tshow and set feature flags (terminator flag -h)\n")
	fmt.Fprint(w, "  hospital\tlist, show, replay and discard the events handlers keep failing on (terminator hospital -h)\n")
	fmt.Fprint(w, "  graph\tthe cascade graph of the services' domain events, as DOT (and SVG) (terminator graph -h)\n")
	fmt.Fprint(w, "  probe\tGET a URL and exit 0 if it answers 200 (health checks in images without curl)\n")
	fmt.Fprint(w, "\nEvery role needs -etcd-endpoints but all, which embeds etcd; rollout, flag and\n")
	fmt.Fprint(w, "hospital default to the embedded etcd of all.\n")
	fmt.Fprint(w, "Every flag also reads an environment variable, named in \"terminator <command> -h\".\n")
	fmt.Fprint(w, "Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, every role exports spans over OTLP,\n")
	fmt.Fprint(w, "sampled by OTEL_TRACES_SAMPLER(_ARG) (default parent-based, 1% of new traces): docs/tracing.md.\n")
	w.Flush()
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "seed":
		os.Exit(seed(args))
	case "probe":
		os.Exit(probe(args))
	case "graph":
		os.Exit(role.Graph(args, os.Stdout, os.Stderr))
	case "rollout", "flag":
		os.Exit(rollout.CLI{Parse: role.Parse, EnvName: role.EnvName}.Run(cmd, args))
	case "hospital":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		code := role.Hospital(ctx, args, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	known := false
	for _, r := range role.Roles() {
		known = known || r == cmd
	}
	if !known {
		usage()
		os.Exit(2)
	}
	var cfg role.Config
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	cfg.RegisterFlags(fs, cmd)
	// The flag package prints every flag after an error: the error would
	// scroll out of sight. The usage is for -h.
	fs.SetOutput(io.Discard)
	if err := role.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.Usage()
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "terminator %s: %v\n(terminator %s -h lists the flags, their ranges and variables)\n", cmd, err, cmd)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p, err := role.Start(ctx, cmd, cfg, log)
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
	if cmd == "all" {
		printWelcome(p.FrontAddr(), p.AdminAddr())
	}
	<-ctx.Done()
	log.Info("shutting down")
	p.Stop()
}

// seed is `terminator seed`: sample data through a running front.
func seed(args []string) int {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	target := fs.String("url", "http://127.0.0.1:8080", "the front to load through")
	n := fs.Int("n", 300, "profiles to create")
	_ = fs.Parse(args)
	if err := role.Seed(context.Background(), *target, *n); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		return 1
	}
	fmt.Printf("seeded %d profiles with visits and flirts through %s\n", *n, *target)
	return 0
}

// probe is `terminator probe URL`: 0 when URL answers 200 within 2s.
func probe(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: terminator probe URL   (e.g. http://127.0.0.1:8081/readyz)")
		return 2
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	fmt.Printf("%d %s", resp.StatusCode, b)
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}

func printWelcome(front, admin string) {
	if strings.HasPrefix(front, "[::]:") || strings.HasPrefix(front, "0.0.0.0:") {
		front = "localhost" + front[strings.LastIndex(front, ":"):]
	}
	fmt.Printf(`
terminator is up.
  public HTTP  http://%[1]s
  admin        http://%[2]s/   (status page; /status.json, /readyz, /debug/pprof/)

try:
  curl -s http://%[1]s/profiles/1
  curl -s -X PUT --data '{"name":"Ann","age":31,"city":"Lyon","bio":"hiker"}' http://%[1]s/profiles/ann
  curl -s -X POST --data '{"visitor":"1"}' http://%[1]s/profiles/ann/visits
  curl -s -X POST --data '{"from":"1","message":"hi Ann"}' http://%[1]s/profiles/ann/flirts
  curl -s http://%[1]s/profiles/ann
  curl -s http://%[1]s/profiles/ann/visitors
  curl -s http://%[1]s/profiles/ann/notifications
  curl -s http://%[1]s/echo
  curl -s http://%[2]s/status.json

Ctrl-C stops it cleanly.
`, front, admin)
}
