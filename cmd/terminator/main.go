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
	"net/url"
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
	fmt.Fprint(w, "  probe\tGET a URL and exit 0 if it answers 200 (health checks in images without curl) (terminator probe -h)\n")
	fmt.Fprint(w, "\nEvery role needs -etcd-endpoints but all, which embeds etcd; rollout, flag and\n")
	fmt.Fprint(w, "hospital default to the embedded etcd of all.\n")
	fmt.Fprint(w, "Every flag also reads an environment variable, named in \"terminator <command> -h\":\n")
	fmt.Fprint(w, "TERMINATOR_<FLAG> for the roles' (-max-waiting: TERMINATOR_MAX_WAITING), TERMINATOR_<COMMAND>_<FLAG>\n")
	fmt.Fprint(w, "for the other commands' own (seed -url: TERMINATOR_SEED_URL), ETCD_* and BUS_* for the -etcd-*\n")
	fmt.Fprint(w, "and -bus-* flags everywhere, SERVICE_VERSION for -version.\n")
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
		env := role.CommandEnvName(cmd)
		parse := func(fs *flag.FlagSet, args []string) error { return role.ParseEnv(fs, args, env) }
		os.Exit(rollout.CLI{Parse: parse, EnvName: env}.Run(cmd, args))
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
	log := cfg.Log.NewLogger(os.Stderr)
	slog.SetDefault(log) // what logs through slog.Default() logs alike
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ignoreHangups(log)
	p, err := role.Start(ctx, cmd, cfg, log)
	if err != nil {
		log.Error("exit", "err", err)
		os.Exit(1)
	}
	if cmd == "all" {
		printWelcome(p.FrontAddr(), p.AdminAddr())
	}
	<-ctx.Done()
	p.Stop() // logs each step, and how long it took
}

// ignoreHangups keeps SIGHUP (a closed terminal, a reload by habit) from
// killing the process undrained, and says so once per signal: settings
// are read at start only.
func ignoreHangups(log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Warn("SIGHUP ignored: flags and environment are read at start only; restart the process to change them " +
				"(log level, limits, timeouts, CORS); SIGTERM stops it cleanly")
		}
	}()
}

// parseCommand parses the flags of a command that is not a role, from its
// environment variables (role.CommandEnvName) and then args. It returns
// -1 to go on, or the exit code: 0 after -h (the usage on stdout), 2 after
// one line saying what is wrong.
func parseCommand(fs *flag.FlagSet, cmd, usage string, args []string) int {
	env := role.CommandEnvName(cmd)
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + env(f.Name) + ")" })
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: terminator %s\n\n", usage)
		fs.PrintDefaults()
	}
	fs.SetOutput(io.Discard) // the error alone, not every flag after it
	if err := role.ParseEnv(fs, args, env); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return 0
		}
		fmt.Fprintf(os.Stderr, "terminator %s: %v\n(terminator %s -h lists the flags and their variables)\n", cmd, err, cmd)
		return 2
	}
	return -1
}

// bad prints a refused value's one line and returns exit code 2.
func bad(cmd, format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "terminator %s: %s\n", cmd, fmt.Sprintf(format, args...))
	return 2
}

// seed is `terminator seed`: sample data through a running front.
func seed(args []string) int {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	target := fs.String("url", "http://127.0.0.1:8080", "the front to load through: a URL, or unix:PATH for a front on a unix socket")
	n := fs.Int("n", 300, "profiles to create (1 to 1000000)")
	overwrite := fs.Bool("overwrite", false, "write the sample over profiles that exist already (without it, seed refuses to touch a store holding any of them)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if code := parseCommand(fs, "seed", "seed [flags]", args); code >= 0 {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return bad("seed", "unexpected argument %q (the front is -url)", fs.Arg(0))
	case *n < 1 || *n > 1_000_000:
		return bad("seed", "-n %d: want 1 to 1000000 profiles", *n)
	case *timeout <= 0:
		return bad("seed", "-timeout %v: want a positive duration such as 5m", *timeout)
	}
	if u, err := url.Parse(*target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("seed", "-url %q: want the front's base URL, e.g. http://127.0.0.1:8080", *target)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := role.SeedNew(ctx, role.FrontURL(strings.TrimSuffix(*target, "/")), *n, *overwrite); err != nil {
		fmt.Fprintln(os.Stderr, "terminator seed:", err)
		return 1
	}
	fmt.Printf("seeded %d profiles with visits and flirts through %s\n", *n, *target)
	return 0
}

// probe is `terminator probe URL`: 0 when URL answers 200 within -timeout.
func probe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 2*time.Second, "how long the answer may take (10ms to 1m0s)")
	usage := "probe [flags] URL   (e.g. http://127.0.0.1:8081/readyz)\n\nExits 0 when URL answers 200, 1 otherwise: a health check for images without curl"
	flags, pos := rollout.SplitArgs(fs, args) // the URL first or last
	if code := parseCommand(fs, "probe", usage, append(append(flags, "--"), pos...)); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		return bad("probe", "want one URL, e.g. terminator probe http://127.0.0.1:8081/readyz")
	}
	if *timeout < 10*time.Millisecond || *timeout > time.Minute {
		return bad("probe", "-timeout %v: want 10ms to 1m0s", *timeout)
	}
	target := fs.Arg(0)
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("probe", "%q: want an http:// or https:// URL", target)
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(target)
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
	curl, public := "curl -s", "http://"+front
	if sock, ok := strings.CutPrefix(front, "unix:"); ok { // -listen unix:PATH
		curl, front, public = "curl -s --unix-socket "+sock, "localhost", "unix:"+sock+" (the HTTP front on a unix socket)"
	}
	fmt.Printf(`
terminator is up.
  public HTTP  %[4]s
  admin        http://%[2]s/   (status page; /status.json, /readyz, /debug/pprof/)

try:
  %[3]s http://%[1]s/profiles/1
  %[3]s -X PUT --data '{"name":"Ann","age":31,"city":"Lyon","bio":"hiker"}' http://%[1]s/profiles/ann
  %[3]s -X POST --data '{"visitor":"1"}' http://%[1]s/profiles/ann/visits
  %[3]s -X POST --data '{"from":"1","message":"hi Ann"}' http://%[1]s/profiles/ann/flirts
  %[3]s http://%[1]s/profiles/ann
  %[3]s http://%[1]s/profiles/ann/visitors
  %[3]s http://%[1]s/profiles/ann/notifications
  %[3]s http://%[1]s/echo
  curl -s http://%[2]s/status.json

Ctrl-C stops it cleanly.
`, front, admin, curl, public)
}
