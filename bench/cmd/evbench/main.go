// Command evbench measures durable domain events, published -> handled,
// per core: the terminator's events (nanobus/events) over Pebble and over
// PostgreSQL, beside NATS JetStream on a file store, synced on every write
// and at its default interval.
//
//	make bench-events     # = make bench-build && bin/evbench $(EVBENCH_FLAGS)
//	bin/evbench [-quick] [-rounds 1] [-systems pebble,postgres,js-always,js-default] [-d 10s] [-conc 16] [-nice -10] [-profile dir]
//
// Each system runs as processes of its own, all pinned with taskset to
// -sut-cpus (CPU 1): for the terminator a publisher (a bus node with an
// events.Bus over its store, publishing each event in a transaction of its
// own) and a subscriber (a bus node whose group reads the topic over a
// nanobus stream and commits its position in its own store, and whose
// handler records the latency); for PostgreSQL the server too; for
// JetStream a nats-server, a publisher (nats.go, each publish acked) and a
// subscriber (a durable pull consumer, each message acked). The publishers
// make their own load (a closed loop of -conc publishes in flight, or an
// open loop at a rate over them): that is the application's work, so it
// is charged to the system. evbench itself, on -gen-cpus (CPU 0), only
// steers them over their control addresses and reads /proc.
//
// Every event's body carries the time it was meant to be published (its
// slot in the open loop, or when its publish began); the subscriber's
// handler records now minus that time: end to end, queueing included.
//
// For each system: the peak (closed loop, -warm then a -d window), then
// the load at -frac (0.5) of that peak (open loop); with -rounds, every
// system once per round, and each load's median round in the report. A
// window in which other work took more than -noise of the SUT CPUs (read
// from /proc/stat) is marked noisy, and a quiet round is preferred. The window's CPU is
// utime+stime from /proc/PID/stat of every process of the system and its
// children, between the window's two readings; CPU per event divides it
// by the events handled in the window.
//
// The roles are this same binary: evbench pub|sub|js-pub|js-sub, started
// by evbench, stopped by their PID (SIGTERM, then SIGKILL), each bounded
// by -life whatever happens. Everything listens on 127.0.0.1 only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/terminator-gw/terminator/bench/cputime"
)

// config is a run's settings.
type config struct {
	systems   []string
	rounds    int
	noise     float64 // a window with more foreign work on the SUT CPUs than this share is noisy
	dur, warm time.Duration
	conc      int
	keys      int
	frac      float64
	pin       bool
	nice      int
	sutCPUs   string
	genCPUs   string
	natsBin   string
	out       string // results directory
	resultsMD string // "" leaves RESULTS.md alone
	profile   string // "" takes no profile
	command   string
}

var allSystems = []string{"pebble", "postgres", "js-always", "js-default"}

const pinnedEnv = "EVBENCH_PINNED"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "pub", "sub", "js-pub", "js-sub":
			if err := role(os.Args[1], os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "evbench %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}
	var cfg config
	quick := flag.Bool("quick", false, "a short pass: 3s windows, 1s warm-up, into <out>/quick, RESULTS.md untouched")
	systems := flag.String("systems", strings.Join(allSystems, ","), "systems to measure, in order")
	flag.IntVar(&cfg.rounds, "rounds", 1, "rounds: every system runs once per round, in a rotated order; the report shows each load's median round")
	flag.Float64Var(&cfg.noise, "noise", 0.10, "a window is noisy when other work took more than this share of the SUT CPUs")
	flag.DurationVar(&cfg.dur, "d", 10*time.Second, "measured window per load")
	flag.DurationVar(&cfg.warm, "warm", 2*time.Second, "warm-up before each window")
	flag.IntVar(&cfg.conc, "conc", 16, "publishes in flight (the closed loop), and publishers of the open loop")
	flag.IntVar(&cfg.keys, "keys", 64, "distinct event keys")
	flag.Float64Var(&cfg.frac, "frac", 0.5, "the open-loop point, as a fraction of the measured peak")
	flag.BoolVar(&cfg.pin, "pin", true, "pin the systems under test and evbench to separate CPUs with taskset")
	flag.IntVar(&cfg.nice, "nice", 0, "run evbench, and so every process it starts, at this nice level; on a box others use too, -10 makes their bursts steal less of the measured CPU (root only below 0)")
	flag.StringVar(&cfg.sutCPUs, "sut-cpus", "1", "CPUs of the systems under test (taskset -c list)")
	flag.StringVar(&cfg.genCPUs, "gen-cpus", "0", "CPUs of evbench itself")
	flag.StringVar(&cfg.natsBin, "nats-server", envOr("BENCH_NATS_SERVER", "bin/nats-server"), "nats-server binary (make bench-build)")
	flag.StringVar(&cfg.out, "out", "bench/results", "results directory")
	flag.StringVar(&cfg.resultsMD, "results", "bench/RESULTS.md", "report whose \"Durable events\" section to regenerate (empty: leave it)")
	flag.StringVar(&cfg.profile, "profile", "", "write CPU profiles of the terminator publisher and subscriber at the Pebble and PostgreSQL peaks into this directory")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["d"] {
			cfg.dur = 3 * time.Second
		}
		if !set["warm"] {
			cfg.warm = time.Second
		}
		if !set["out"] {
			cfg.out = filepath.Join(cfg.out, "quick")
		}
		if !set["results"] {
			cfg.resultsMD = ""
		}
	}
	cfg.systems = strings.Split(*systems, ",")
	cfg.command = "evbench " + strings.Join(os.Args[1:], " ")
	if (cfg.pin || cfg.nice != 0) && os.Getenv(pinnedEnv) == "" {
		err := reexec(cfg)
		fmt.Fprintln(os.Stderr, "evbench: pin or nice:", err, "(or -pin=false -nice 0)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "evbench:", err)
		os.Exit(1)
	}
}

// reexec runs this program again in place (same PID) under taskset on the
// generator's CPUs and nice: the processes it starts inherit the nice
// level; their own taskset moves them to the system under test's CPUs.
func reexec(cfg config) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := append([]string{exe}, os.Args[1:]...)
	if cfg.pin {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return err
		}
		args = append([]string{ts, "-c", cfg.genCPUs}, args...)
	}
	if cfg.nice != 0 {
		n, err := exec.LookPath("nice")
		if err != nil {
			return err
		}
		args = append([]string{n, "-n", fmt.Sprint(cfg.nice)}, args...)
	}
	return syscall.Exec(args[0], args, append(os.Environ(), pinnedEnv+"=1"))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// checkCPUs validates the CPU lists against this machine.
func checkCPUs(cfg config) ([]int, error) {
	if !cfg.pin {
		return nil, nil
	}
	sut, err := cputime.ParseList(cfg.sutCPUs)
	if err != nil {
		return nil, err
	}
	gen, err := cputime.ParseList(cfg.genCPUs)
	if err != nil {
		return nil, err
	}
	if _, err := cputime.ReadCPUs(append(append([]int(nil), sut...), gen...)); err != nil {
		return nil, fmt.Errorf("-sut-cpus %s, -gen-cpus %s: %w (or run with -pin=false)", cfg.sutCPUs, cfg.genCPUs, err)
	}
	for _, c := range sut {
		for _, g := range gen {
			if c == g {
				return nil, fmt.Errorf("CPU %d is in both -sut-cpus and -gen-cpus", c)
			}
		}
	}
	return sut, nil
}
