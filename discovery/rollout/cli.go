package rollout

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus/policy"
)

// DefaultEndpoint is the etcd the CLI talks to unless told otherwise: the
// embedded one of `terminator all`.
const DefaultEndpoint = "http://127.0.0.1:23790"

// DefaultKey is the key a flag's percentage and an experiment stick to
// unless -by says otherwise: a cookie the front sets for new clients.
const DefaultKey = "cookie:tid"

// CLI is what the commands need from the binary: how it reads the -etcd-*
// flags from the environment (Parse: the binary's own way, e.g.
// ETCD_ENDPOINTS) and names their variables, and where to write.
type CLI struct {
	Parse   func(fs *flag.FlagSet, args []string) error
	EnvName func(flag string) string
	Stdout  io.Writer
	Stderr  io.Writer
}

// errUsage is a usage error: exit code 2, the usage already printed.
var errUsage = errors.New("usage")

// Run runs `terminator rollout ...` (cmd "rollout") or `terminator flag
// ...` (cmd "flag") with args, and returns the exit code: 0 (also after
// -h), 1 on failure, 2 on bad usage.
func (c CLI) Run(cmd string, args []string) int {
	if c.Parse == nil {
		c.Parse = func(fs *flag.FlagSet, args []string) error { return fs.Parse(args) }
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	sub := ""
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd + " " + sub {
	case "rollout show":
		err = c.show(ctx, args)
	case "rollout weights":
		err = c.weights(ctx, args)
	case "rollout ramp":
		err = c.ramp(ctx, args)
	case "rollout ghost":
		err = c.ghost(ctx, args)
	case "rollout ab":
		err = c.ab(ctx, args)
	case "rollout clear":
		err = c.clear(ctx, args)
	case "flag set":
		err = c.flagSet(ctx, args)
	case "flag show":
		err = c.flagShow(ctx, args)
	case "flag clear":
		err = c.flagClear(ctx, args)
	case cmd + " -h", cmd + " -help", cmd + " --help":
		c.usage(cmd)
		return 0
	default:
		c.usage(cmd)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(c.Stderr, "terminator %s %s: %v\n", cmd, sub, err)
	return 1
}

func (c CLI) usage(cmd string) {
	w := tabwriter.NewWriter(c.Stderr, 0, 0, 2, ' ', 0)
	if cmd == "flag" {
		fmt.Fprint(w, "usage: terminator flag <command> [flags]\n\n")
		fmt.Fprint(w, "  set NAME on|off|PERCENT [-by cookie:NAME|header:NAME]\tset a feature flag (a percentage sticks to the key -by names)\n")
		fmt.Fprint(w, "  show\tlist the feature flags\n")
		fmt.Fprint(w, "  clear NAME\tremove a feature flag\n")
	} else {
		fmt.Fprint(w, "usage: terminator rollout <command> [flags]\n\n")
		fmt.Fprint(w, "  show [SERVICE]\tpolicies, and per version the instances, rps, error rate, p99; the ghost report\n")
		fmt.Fprint(w, "  weights SERVICE VERSION=PERCENT ... [-force]\teach version's share of new calls (versions not named get none); refused for a version with no instance running unless -force\n")
		fmt.Fprint(w, "  ramp SERVICE VERSION [-steps 1,5,25,50,100] [-every 30s]\tmove the calls to VERSION step by step, rolling back on a breach\n")
		fmt.Fprint(w, "  ghost SERVICE VERSION [-percent 100] [-headers H,...] [-ignore KEY,...]\tcopy calls to VERSION and compare its replies\n")
		fmt.Fprint(w, "  ghost SERVICE off\tstop ghosting\n")
		fmt.Fprint(w, "  ab SERVICE EXPERIMENT VARIANT=VERSION:PERCENT ... [-by cookie:NAME|header:NAME]\ta sticky A/B split\n")
		fmt.Fprint(w, "  ab SERVICE off\tend the experiment\n")
		fmt.Fprint(w, "  clear SERVICE\tremove the service's policy: calls spread over every instance alike\n")
	}
	fmt.Fprintf(w, "\nEvery command takes -etcd-endpoints (default %s, the embedded etcd of terminator all)\n", DefaultEndpoint)
	fmt.Fprint(w, "and the other -etcd-* flags; \"terminator "+cmd+" <command> -h\" lists them.\n")
	w.Flush()
}

// command is one subcommand's flags and etcd connection.
type command struct {
	cli  CLI
	fs   *flag.FlagSet
	etcd discovery.ClientConfig
	args string // the positional arguments, for the usage line
}

func (c CLI) command(name, args string) *command {
	cmd := &command{cli: c, fs: flag.NewFlagSet(name, flag.ContinueOnError), args: args}
	cmd.fs.SetOutput(c.Stderr)
	cmd.etcd.Endpoints = []string{DefaultEndpoint}
	cmd.etcd.RegisterFlags(cmd.fs)
	cmd.fs.Lookup("etcd-endpoints").Usage = "comma-separated etcd client URLs"
	cmd.fs.Usage = func() {
		fmt.Fprintf(cmd.fs.Output(), "usage: terminator %s %s [flags]\n", name, args)
		cmd.fs.PrintDefaults()
	}
	return cmd
}

// parse reads the flags from the environment, then parses args,
// flags and positional arguments in any order (flag stops at the first
// positional one; operators write the flags last), and wants between min
// and max positional arguments (max < 0: no limit).
func (cmd *command) parse(args []string, min, max int) ([]string, error) {
	if cmd.cli.EnvName != nil { // every flag the command registered by now
		cmd.fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + cmd.cli.EnvName(f.Name) + ")" })
	}
	// The environment, then the command line, which wins; the errors are
	// cli.Parse's (which says what a value should be), not the flag
	// package's.
	flags, pos := SplitArgs(cmd.fs, args)
	cmd.fs.SetOutput(io.Discard)
	err := cmd.cli.Parse(cmd.fs, flags)
	cmd.fs.SetOutput(cmd.cli.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			cmd.fs.Usage()
			return nil, err // exit 0
		}
		fmt.Fprintln(cmd.cli.Stderr, err)
		if !strings.HasPrefix(err.Error(), "environment ") {
			cmd.fs.Usage() // a mistake on the command line: what it takes
		}
		return nil, errUsage
	}
	if len(pos) < min || max >= 0 && len(pos) > max {
		cmd.fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}

// timeout bounds one command's talk with etcd.
const timeout = 10 * time.Second

// withStore connects to etcd and runs f with a context that ends after
// limit (0: when ctx does).
func (cmd *command) withStore(ctx context.Context, limit time.Duration, f func(context.Context, *Store) error) error {
	cli, err := cmd.etcd.Dial(ctx) // within -etcd-dial-timeout, or an error naming the endpoints
	if err != nil {
		return err
	}
	defer cli.Close()
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	return cmd.etcd.NameEndpoints(f(ctx, NewStore(cli, "")))
}

func (c CLI) weights(ctx context.Context, args []string) error {
	cmd := c.command("rollout weights", "SERVICE VERSION=PERCENT ...")
	force := cmd.fs.Bool("force", false, "set the weights even for a service or version with no instance registered in etcd (its share of calls then fails with 503)")
	pos, err := cmd.parse(args, 2, -1)
	if err != nil {
		return err
	}
	weights := map[string]int{}
	total := 0
	for _, a := range pos[1:] {
		v, p, ok := strings.Cut(a, "=")
		n, err := strconv.Atoi(p)
		if !ok || v == "" || err != nil || n < 0 || n > 100 {
			return fmt.Errorf("%q: want VERSION=PERCENT, e.g. v2=10", a)
		}
		weights[v] = n
		total += n
	}
	if total != 100 {
		return fmt.Errorf("the percentages add up to %d: want 100", total)
	}
	return cmd.withStore(ctx, timeout, func(ctx context.Context, s *Store) error {
		if !*force {
			if err := runnable(ctx, s, pos[0], weights); err != nil {
				return err
			}
		}
		return cmd.apply(ctx, s, pos[0], func(p *Policy) (*Policy, error) {
			p.Weights = weights
			p.Ramp.Stop("weights set by hand")
			return p, nil
		})
	})
}

// runnable refuses weights that would send calls where nothing answers
// them: to a service with no instance registered in etcd, or to a version
// of it with none (an instance registers once it serves). The error says
// what runs instead.
func runnable(ctx context.Context, s *Store, service string, weights map[string]int) error {
	inst, err := s.Instances(ctx, "")
	if err != nil {
		return err
	}
	running := inst[service]
	if len(running) == 0 {
		known := strings.Join(sortedKeys(inst), ", ")
		if known == "" {
			known = "none"
		}
		return fmt.Errorf("no instance of service %q is registered in etcd (services running: %s); -force sets the weights anyway",
			service, known)
	}
	for _, v := range sortedKeys(weights) {
		if weights[v] > 0 && len(running[v]) == 0 {
			var have []string
			for _, rv := range sortedKeys(running) {
				have = append(have, fmt.Sprintf("%s (%d)", rv, len(running[rv])))
			}
			return fmt.Errorf("version %s of %s has no instance registered in etcd, so its %d%% of calls would fail (versions running, with instances: %s); "+
				"start it first, or -force sets the weights anyway", v, service, weights[v], strings.Join(have, ", "))
		}
	}
	return nil
}

// update changes service's policy and prints what it is now.
func (cmd *command) update(ctx context.Context, service string, change func(*Policy) (*Policy, error)) error {
	return cmd.withStore(ctx, timeout, func(ctx context.Context, s *Store) error {
		return cmd.apply(ctx, s, service, change)
	})
}

// apply is update on a store already dialed.
func (cmd *command) apply(ctx context.Context, s *Store, service string, change func(*Policy) (*Policy, error)) error {
	p, err := s.UpdatePolicy(ctx, service, change)
	if err == nil {
		describe(cmd.cli.Stdout, service, p)
	}
	return err
}

func (c CLI) ramp(ctx context.Context, args []string) error {
	cmd := c.command("rollout ramp", "SERVICE VERSION")
	fs := cmd.fs
	from := fs.String("from", "", "the version calls move away from (default: the one other version taking calls)")
	steps := fs.String("steps", joinInts(DefaultSteps), "VERSION's share at each step, in percent")
	every := fs.Duration("every", DefaultEvery, "the shortest time a step lasts")
	b := DefaultBounds
	fs.IntVar(&b.MinCalls, "min-calls", b.MinCalls, "calls VERSION must answer in a step before the step may end (a rollback needs 10, and evidence beyond doubt)")
	fs.Float64Var(&b.MaxErrorIncrease, "max-error-increase", b.MaxErrorIncrease, "percentage points VERSION's error rate (bus errors and 5xx) may exceed the old version's by")
	fs.Float64Var(&b.MaxP99Ratio, "max-p99-ratio", b.MaxP99Ratio, "VERSION's p99 may be at most the old version's times this, plus -p99-slack")
	slack := fs.Duration("p99-slack", time.Duration(b.P99Slack), "added to the p99 bound (small p99s are noisy)")
	wait := fs.Bool("wait", false, "follow the ramp and print each step until it ends (exit 1 if it rolls back)")
	pos, err := cmd.parse(args, 2, 2)
	if err != nil {
		return err
	}
	service, to := pos[0], pos[1]
	r := Ramp{From: *from, To: to, Every: Duration(*every), Bounds: b}
	r.P99Slack = Duration(*slack)
	if r.Steps, err = parseInts(*steps); err != nil {
		return fmt.Errorf("-steps %q: %w", *steps, err)
	}
	// What needs no etcd is refused before asking it (-every -1s, -min-calls 0).
	check := r
	if check.From == "" {
		check.From = "(found in etcd below)"
	}
	if err := check.Check(); err != nil {
		return err
	}
	return cmd.withStore(ctx, 0, func(ctx context.Context, s *Store) error {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if r.From == "" {
			if r.From, err = s.rampFrom(tctx, service, to); err != nil {
				return err
			}
		}
		p, err := s.StartRamp(tctx, service, r)
		if err != nil {
			return err
		}
		describe(c.Stdout, service, p)
		leader, err := s.Leader(tctx)
		switch {
		case err != nil:
			return err
		case leader == nil:
			fmt.Fprintln(c.Stdout, "warning: no process drives ramps now (every front campaigns to): the ramp waits at its first step")
		default:
			fmt.Fprintf(c.Stdout, "driven by %s\n", leader)
		}
		if !*wait {
			return nil
		}
		return followRamp(ctx, s, service, c.Stdout)
	})
}

// rampFrom is the version a ramp to `to` moves calls away from: the one
// other version the policy's weights give calls to, or without weights
// the one other version registered.
func (s *Store) rampFrom(ctx context.Context, service, to string) (string, error) {
	var others []string
	p, err := s.Policy(ctx, service)
	if err != nil {
		return "", err
	}
	if p != nil && len(p.Weights) > 0 {
		for _, v := range sortedKeys(p.Weights) {
			if v != to && p.Weights[v] > 0 {
				others = append(others, v)
			}
		}
	} else {
		inst, err := s.Instances(ctx, service)
		if err != nil {
			return "", err
		}
		for _, v := range sortedKeys(inst[service]) {
			if v != to {
				others = append(others, v)
			}
		}
	}
	if len(others) != 1 {
		return "", fmt.Errorf("cannot tell which version %s replaces (candidates: %v): say -from VERSION", to, others)
	}
	return others[0], nil
}

// followRamp prints the ramp's steps as they come, until it ends.
func followRamp(ctx context.Context, s *Store, service string, out io.Writer) error {
	last := ""
	for {
		p, err := s.Policy(ctx, service)
		if err != nil {
			return err
		}
		if p == nil || p.Ramp == nil {
			return errors.New("the ramp was removed")
		}
		r := p.Ramp
		line := fmt.Sprintf("%s at %d%% (step %d of %d)", r.To, r.Percent(), r.Step+1, len(r.Steps))
		if r.Note != "" {
			line += ": " + r.Note
		}
		if r.State != RampRunning {
			line = r.State + ": " + r.Reason
		}
		if line != last {
			fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), line)
			last = line
		}
		switch r.State {
		case RampDone:
			return nil
		case RampRolledBack:
			return errors.New("rolled back")
		case RampStopped:
			return errors.New("stopped")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c CLI) ghost(ctx context.Context, args []string) error {
	cmd := c.command("rollout ghost", "SERVICE VERSION|off")
	percent := cmd.fs.Int("percent", 100, "share of the eligible calls copied")
	headers := cmd.fs.String("headers", "", "comma-separated headers compared besides status and body")
	ignore := cmd.fs.String("ignore", "", "comma-separated JSON keys left out of the body comparison, at any depth")
	pos, err := cmd.parse(args, 2, 2)
	if err != nil {
		return err
	}
	if pos[1] != "off" && (*percent < 1 || *percent > 100) {
		return fmt.Errorf("-percent %d: want 1 to 100", *percent)
	}
	return cmd.update(ctx, pos[0], func(p *Policy) (*Policy, error) {
		if pos[1] == "off" {
			p.Ghost = nil
			return p, nil
		}
		p.Ghost = &policy.Ghost{Version: pos[1], Percent: *percent, Headers: splitList(*headers), Ignore: splitList(*ignore)}
		return p, nil
	})
}

func (c CLI) ab(ctx context.Context, args []string) error {
	cmd := c.command("rollout ab", "SERVICE EXPERIMENT VARIANT=VERSION:PERCENT ... | SERVICE off")
	by := cmd.fs.String("by", DefaultKey, "the key a client sticks to its variant by: cookie:NAME (set by the front when missing) or header:NAME")
	pos, err := cmd.parse(args, 2, -1)
	if err != nil {
		return err
	}
	if len(pos) == 2 && pos[1] == "off" {
		return cmd.update(ctx, pos[0], func(p *Policy) (*Policy, error) { p.AB = nil; return p, nil })
	}
	if len(pos) < 3 {
		cmd.fs.Usage()
		return errUsage
	}
	e := &policy.Experiment{Name: pos[1], By: *by}
	for _, a := range pos[2:] {
		name, rest, ok1 := strings.Cut(a, "=")
		version, pct, ok2 := strings.Cut(rest, ":")
		n, err := strconv.Atoi(pct)
		if !ok1 || !ok2 || name == "" || version == "" || err != nil {
			return fmt.Errorf("%q: want VARIANT=VERSION:PERCENT, e.g. new=v2:50", a)
		}
		e.Variants = append(e.Variants, policy.Variant{Name: name, Version: version, Percent: n})
	}
	return cmd.update(ctx, pos[0], func(p *Policy) (*Policy, error) { p.AB = e; return p, nil })
}

func (c CLI) clear(ctx context.Context, args []string) error {
	cmd := c.command("rollout clear", "SERVICE")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	return cmd.update(ctx, pos[0], func(*Policy) (*Policy, error) { return nil, nil })
}

func (c CLI) show(ctx context.Context, args []string) error {
	cmd := c.command("rollout show", "[SERVICE]")
	window := cmd.fs.Duration("window", 2*time.Second, "rps, error rate and p99 are over this long (the numbers are published every second)")
	pos, err := cmd.parse(args, 0, 1)
	if err != nil {
		return err
	}
	if *window < 0 || *window > 10*time.Minute {
		return fmt.Errorf("-window %v: want 0s (the numbers as last published) to 10m0s", *window)
	}
	service := ""
	if len(pos) == 1 {
		service = pos[0]
	}
	return cmd.withStore(ctx, timeout+*window, func(ctx context.Context, s *Store) error {
		st, err := s.State(ctx, service, *window)
		if err == nil {
			st.Print(c.Stdout)
		}
		return err
	})
}

func (c CLI) flagSet(ctx context.Context, args []string) error {
	cmd := c.command("flag set", "NAME on|off|PERCENT")
	by := cmd.fs.String("by", "", "the key a percentage sticks to: cookie:NAME (set by the front when missing) or header:NAME (default: the flag's, else "+DefaultKey+")")
	pos, err := cmd.parse(args, 2, 2)
	if err != nil {
		return err
	}
	percent := 0
	switch v := strings.TrimSuffix(pos[1], "%"); v {
	case "on":
		percent = 100
	case "off":
	default:
		if percent, err = strconv.Atoi(v); err != nil || percent < 0 || percent > 100 {
			return fmt.Errorf("%q: want on, off or a percentage from 0 to 100", pos[1])
		}
	}
	return cmd.withStore(ctx, timeout, func(ctx context.Context, s *Store) error {
		f, err := s.UpdateFlag(ctx, pos[0], func(f policy.Flag) (policy.Flag, error) {
			f.Percent = percent
			if *by != "" {
				f.By = *by
			} else if f.By == "" && percent > 0 && percent < 100 {
				f.By = DefaultKey
			}
			return f, nil
		})
		if err == nil {
			printFlags(c.Stdout, []policy.Flag{f})
		}
		return err
	})
}

func (c CLI) flagShow(ctx context.Context, args []string) error {
	cmd := c.command("flag show", "")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	return cmd.withStore(ctx, timeout, func(ctx context.Context, s *Store) error {
		flags, err := s.Flags(ctx)
		switch {
		case err != nil:
			return err
		case len(flags) == 0:
			fmt.Fprintln(c.Stdout, "no feature flags")
		default:
			printFlags(c.Stdout, flags)
		}
		return nil
	})
}

func (c CLI) flagClear(ctx context.Context, args []string) error {
	cmd := c.command("flag clear", "NAME")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	return cmd.withStore(ctx, timeout, func(ctx context.Context, s *Store) error {
		found, err := s.DeleteFlag(ctx, pos[0])
		switch {
		case err != nil:
			return err
		case !found:
			return fmt.Errorf("no feature flag %s", pos[0])
		}
		fmt.Fprintf(c.Stdout, "flag %s removed\n", pos[0])
		return nil
	})
}

func printFlags(out io.Writer, flags []policy.Flag) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "FLAG\tSTATE\tBY")
	for _, f := range flags {
		state := strconv.Itoa(f.Percent) + "%"
		switch f.Percent {
		case 0:
			state = "off"
		case 100:
			state = "on"
		}
		by := f.By
		if f.Percent == 0 || f.Percent == 100 {
			by = "-" // no key needed: everyone alike
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", f.Name, state, by)
	}
	w.Flush()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// SplitArgs separates a command line whose flags may come before or after
// its positional arguments ("replay ID -wait 5s"): the flags, with the
// values of those fs knows to take one, and the rest in order; everything
// after "--" is positional.
func SplitArgs(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && i+1 < len(args) {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return flags, pos
}
