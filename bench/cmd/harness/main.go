// Command harness benchmarks the terminator per core, side by side with
// what users would pick instead, and writes the report.
//
//	make bench        # = make bench-build && bin/harness $(BENCH_FLAGS)
//	bin/harness [-quick] [-rounds 3] [-cases hello,page,...] [-pin=false] [-sweeps ";-admission fifo"]
//
// It runs the real binaries: bin/terminator (make build), bin/peers (the
// ceilings and the page over NATS and over HTTP, bench/cmd/peers) and
// bin/nats-server (built from github.com/nats-io/nats-server/v2); make
// bench-build makes all three.
//
// Every system under test runs as processes of its own, pinned with taskset
// to -sut-cpus (CPU 1 by default); the generators, this process's built-in
// loadgen and wrk, run on -gen-cpus (CPU 0). For each case the harness
// reads utime+stime of every server process of the case (all descendants
// of the processes it started: nginx's workers, nats-server, each service)
// from /proc over exactly the measured window, and reports CPU µs per
// request beside rps and latency. Cases run interleaved, round after round;
// the report gives each case's median and spread over the rounds and flags
// the rounds too noisy to trust (see noise.go for the rule).
//
// Outputs: bench/results/<stamp>.md (every round), bench/results/*.png
// (CPU per request per system, latency per system, the overload sweep) and
// bench/RESULTS.md, regenerated except for the notes under its marker line.
// Every process the harness starts is stopped by its PID at the end, on
// failure and on Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/terminator-gw/terminator/bench/cputime"
)

// config is everything a run needs; flags fill it in main, tests directly.
type config struct {
	rounds    int
	dur, warm time.Duration // per closed-loop case and round
	wrkDur    time.Duration
	sweepDur  time.Duration // per sweep point (after warm)
	conns     int           // the closed-loop cases
	bigConns  int           // the c=1024 case and the sweep
	maxConns  int           // the sweep's generator opens up to so many
	seed      int           // profiles in the shared data
	out       string        // results directory
	resultsMD string        // the regenerated report; "" skips it
	bin       string        // terminator binary
	peersBin  string        // bench/cmd/peers binary
	natsBin   string        // nats-server binary
	wrk       bool          // also run wrk when installed
	cases     []string      // case ids, in run order
	pin       bool
	sutCPUs   string // taskset -c lists
	genCPUs   string
	nice      int        // nice -n of every process of the run, the harness too
	termFlags []string   // extra flags for every terminator
	sweeps    [][]string // one sweep per entry: the extra flags of its terminator
	noise     float64    // the noise rule's threshold, a fraction
	keep      bool       // keep the scratch directory (logs, data)
	log       io.Writer
	plots     bool
	stamp     string
	command   string // how the run was started, for the report
}

// pinnedEnv marks the harness process that already runs under taskset.
const pinnedEnv = "BENCH_HARNESS_PINNED"

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	cfg := config{log: os.Stderr, plots: true, stamp: time.Now().UTC().Format("20060102-150405")}
	quick := flag.Bool("quick", false, "a short pass: 1 round, 2s per case (0.5s warm-up), 1s sweep points, wrk 2s; into <out>/quick, RESULTS.md untouched")
	cases := flag.String("cases", strings.Join(defaultCases, ","), "comma-separated cases, in run order; also available: "+strings.Join(extraCases, ","))
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds: every case runs once per round, interleaved")
	flag.DurationVar(&cfg.dur, "d", 5*time.Second, "measured window per case and round")
	flag.DurationVar(&cfg.warm, "warm", time.Second, "warm-up before each window")
	flag.DurationVar(&cfg.wrkDur, "wrk-d", 4*time.Second, "wrk's run per case and round")
	flag.DurationVar(&cfg.sweepDur, "sweep-d", 3*time.Second, "measured window per sweep point")
	flag.IntVar(&cfg.conns, "c", 64, "connections of the closed-loop cases")
	flag.IntVar(&cfg.bigConns, "big-c", 1024, "connections of the -c1024 cases, and those the sweep's generator starts with")
	flag.IntVar(&cfg.maxConns, "max-c", 8192, "connections the sweep's generator may open, so that no request waits for one (open loop)")
	flag.IntVar(&cfg.seed, "seed", 300, "profiles in the shared data (the page cases spread over all of them)")
	flag.StringVar(&cfg.out, "out", "bench/results", "results directory")
	flag.StringVar(&cfg.resultsMD, "results", "bench/RESULTS.md", "report to regenerate (empty: leave it)")
	flag.StringVar(&cfg.bin, "bin", envOr("BENCH_TERMINATOR", "bin/terminator"), "terminator binary, from make build (env BENCH_TERMINATOR)")
	flag.StringVar(&cfg.peersBin, "peers", envOr("BENCH_PEERS", "bin/peers"), "peers binary, from make bench-build (env BENCH_PEERS)")
	flag.StringVar(&cfg.natsBin, "nats-server", envOr("BENCH_NATS_SERVER", "bin/nats-server"), "nats-server binary, from make bench-build (env BENCH_NATS_SERVER)")
	flag.BoolVar(&cfg.wrk, "wrk", true, "also measure with wrk when it is installed")
	flag.BoolVar(&cfg.pin, "pin", true, "pin the systems under test and the generators to separate CPUs with taskset")
	flag.StringVar(&cfg.sutCPUs, "sut-cpus", "1", "CPUs of the systems under test (taskset -c list)")
	flag.StringVar(&cfg.genCPUs, "gen-cpus", "0", "CPUs of the generators (taskset -c list)")
	flag.IntVar(&cfg.nice, "nice", 0, "run the harness and every system under test at this nice level; on a box others use too, -10 makes their bursts steal less of the measured CPUs (root only below 0)")
	termFlags := flag.String("terminator-flags", os.Getenv("BENCH_TERMINATOR_FLAGS"), "extra flags for every terminator started, space-separated (env BENCH_TERMINATOR_FLAGS)")
	sweeps := flag.String("sweeps", "", "the overload sweeps, separated by ';', each the extra flags of its terminator: \"\" is one sweep at default settings, \";-admission fifo\" adds one with the old policy (dropped, with a note, when the binary has no -admission)")
	flag.Float64Var(&cfg.noise, "noise", 0.10, "noise rule threshold (see the report)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the scratch directory (process logs, data copies)")
	flag.Parse()
	if *quick {
		cfg.rounds, cfg.dur, cfg.warm, cfg.sweepDur, cfg.wrkDur = 1, 2*time.Second, 500*time.Millisecond, time.Second, 2*time.Second
		// A quick pass is a check, not a result: it leaves RESULTS.md and
		// its plots alone unless told otherwise.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["out"] {
			cfg.out = filepath.Join(cfg.out, "quick")
		}
		if !set["results"] {
			cfg.resultsMD = ""
		}
	}
	cfg.cases = splitList(*cases, ",")
	cfg.termFlags = strings.Fields(*termFlags)
	for _, s := range strings.Split(*sweeps, ";") {
		cfg.sweeps = append(cfg.sweeps, strings.Fields(s))
	}
	cfg.command = commandLine(os.Args[1:])

	if (cfg.pin || cfg.nice != 0) && os.Getenv(pinnedEnv) == "" {
		if err := repinSelf(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "harness:", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// repinSelf runs this program again under taskset on the generator's CPUs
// (and nice), in place (same PID), so the built-in generator and wrk, which
// inherits the harness's CPUs, stay there.
func repinSelf(cfg config) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("pin the generator: %w", err)
	}
	cpus := ""
	if cfg.pin {
		cpus = cfg.genCPUs
	}
	bin, args, err := wrap(exe, os.Args[1:], cpus, cfg.nice)
	if err != nil {
		return err
	}
	return syscall.Exec(bin, append([]string{bin}, args...), append(os.Environ(), pinnedEnv+"=1"))
}

// commandLine is how the run was started, quoted to be run again.
func commandLine(args []string) string {
	parts := []string{"harness"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " ;'\"$*") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func splitList(s, sep string) []string {
	var out []string
	for _, x := range strings.Split(s, sep) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// checkPinning validates the CPU lists against this machine.
func checkPinning(cfg config) error {
	if !cfg.pin {
		return nil
	}
	sut, err := cputime.ParseList(cfg.sutCPUs)
	if err != nil {
		return err
	}
	gen, err := cputime.ParseList(cfg.genCPUs)
	if err != nil {
		return err
	}
	if _, err := cputime.ReadCPUs(append(append([]int(nil), sut...), gen...)); err != nil {
		return fmt.Errorf("-sut-cpus %s, -gen-cpus %s: %w (or run with -pin=false)", cfg.sutCPUs, cfg.genCPUs, err)
	}
	for _, c := range sut {
		for _, g := range gen {
			if c == g {
				return fmt.Errorf("CPU %d is in both -sut-cpus and -gen-cpus", c)
			}
		}
	}
	return nil
}
