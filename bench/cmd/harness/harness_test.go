package main

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/bench/peers"
)

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   450.00us  300.00us  12.00ms   90.00%
    Req/Sec    85.00k     3.00k   90.00k    70.00%
  Latency Distribution
     50%  440.00us
     75%  600.00us
     90%    1.20ms
     99%    2.40ms
  425000 requests in 5.00s, 50.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  85000.12
Transfer/sec:     10.00MB
BENCH_P999_US 7610
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 85000.12 || r.Requests != 425000 || r.P50 != 440*time.Microsecond || r.P99 != 2400*time.Microsecond ||
		r.P999 != 7610*time.Microsecond || r.Errors != 5 || r.Non2xx != 7 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Error("want an error for output without Requests/sec")
	}
}

// round makes a sample with rps and CPU per request (µs) over a 1s window.
func round(n int, rps, cpuPerReq float64, foreign time.Duration) sample {
	req := int64(rps)
	return sample{Round: n, RPS: rps, Requests: req, Window: time.Second, Foreign: foreign,
		CPU: time.Duration(cpuPerReq*float64(req)) * time.Microsecond}
}

func TestNoiseRule(t *testing.T) {
	tests := []struct {
		name      string
		samples   []sample
		pinned    bool
		wantFlags []string // substrings, one per flagged round, in order
		wantRPS   float64
	}{
		{"steady", []sample{round(1, 1000, 50, 0), round(2, 1050, 52, 0), round(3, 980, 49, 0)}, true, nil, 1000},
		{"one slow round", []sample{round(1, 1000, 50, 0), round(2, 700, 50, 0), round(3, 1010, 50, 0)}, true,
			[]string{"r2: rps -30%"}, 1000},
		{"one costly round", []sample{round(1, 1000, 50, 0), round(2, 1000, 60, 0), round(3, 1000, 50, 0)}, true,
			[]string{"r2: CPU/req +20%"}, 1000},
		{"foreign load is left out", []sample{round(1, 500, 90, 200*time.Millisecond), round(2, 1000, 50, 50*time.Millisecond)}, true,
			[]string{"r1: 20% foreign load on the SUT CPUs (left out)"}, 1000},
		{"no clean round", []sample{round(1, 500, 90, 200*time.Millisecond), round(2, 520, 90, 300*time.Millisecond)}, true,
			[]string{"no clean round", "r1: 20% foreign load on the SUT CPUs", "r2: 30% foreign load"}, 510},
		{"foreign load is expected unpinned", []sample{round(1, 1000, 50, 500*time.Millisecond)}, false, nil, 1000},
		{"failed rounds are left out", []sample{round(1, 1000, 50, 0), {Round: 2, Err: "boom"}}, true, nil, 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize(key{"x", "loadgen"}, "x", tc.samples, 0.10, tc.pinned)
			if s.rps != tc.wantRPS {
				t.Errorf("median rps %v, want %v", s.rps, tc.wantRPS)
			}
			if len(s.flags) != len(tc.wantFlags) {
				t.Fatalf("flags %q, want %q", s.flags, tc.wantFlags)
			}
			for i, f := range tc.wantFlags {
				if !strings.Contains(s.flags[i], f) {
					t.Errorf("flag %q lacks %q", s.flags[i], f)
				}
			}
		})
	}
}

func TestMedianAndSpread(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	if s := spread([]float64{90, 100, 110}); s != 0.2 {
		t.Errorf("spread = %v", s)
	}
}

func TestFitCosts(t *testing.T) {
	// 50 µs a page, 10 µs a refusal.
	pt := func(served, refused int64) sweepPoint {
		return sweepPoint{Served: served, Refused: refused, CPU: time.Duration(50*served+10*refused) * time.Microsecond}
	}
	page, refusal, note := fitCosts([]sweepPoint{pt(1000, 0), pt(2000, 0), pt(2000, 1000), pt(1800, 4000)})
	if abs(page-50) > 0.01 || abs(refusal-10) > 0.01 {
		t.Errorf("fit %.2f, %.2f (%s), want 50, 10", page, refusal, note)
	}
	// A light-load point, where a page costs more, is left out once two
	// saturated points refused.
	light := sweepPoint{Served: 100, CPU: 100 * 150 * time.Microsecond, Window: time.Second}
	sat := func(served, refused int64) sweepPoint {
		p := pt(served, refused)
		p.Window = p.CPU // 100% SUT CPU
		return p
	}
	page, refusal, note = fitCosts([]sweepPoint{light, sat(2000, 1000), sat(1800, 4000)})
	if abs(page-50) > 0.01 || abs(refusal-10) > 0.01 || !strings.Contains(note, "saturated") {
		t.Errorf("fit %.2f, %.2f (%s), want 50, 10 over the saturated points", page, refusal, note)
	}
	page, refusal, note = fitCosts([]sweepPoint{pt(1000, 0), pt(2000, 1)})
	if abs(page-50) > 0.1 || refusal != 0 || !strings.Contains(note, "too few refusals") {
		t.Errorf("without refusals: %.2f, %.2f, %q", page, refusal, note)
	}
}

// The sweep keeps -admission only for a binary whose usage lists it.
func TestKnowsFlag(t *testing.T) {
	usage := "Usage of all:\n  -adaptive-limit\n    \tlimit adaptively\n  -admission string\n    \tcodel or fifo (default \"codel\")\n  -queue-wait duration\n"
	for _, tc := range []struct {
		usage, name string
		want        bool
	}{
		{usage, "-admission", true},
		{usage, "-adaptive-limit", true},
		{usage, "-queue-wait", true},
		{usage, "-adaptive", false},
		{"Usage of all:\n  -adaptive-limit\n    \tthe -admission flag is not here\n", "-admission", false},
	} {
		if got := knowsFlag(tc.usage, tc.name); got != tc.want {
			t.Errorf("knowsFlag(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A sweep asking for -admission runs without it, with a note, on a
// terminator whose `all -h` does not list it, and with it otherwise.
func TestSupportedFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, usage string
		flags, want []string
		noted       bool
	}{
		{"old binary", "  -queue-wait duration", []string{"-admission", "fifo", "-queue-wait", "1ns"}, []string{"-queue-wait", "1ns"}, true},
		{"old binary, =", "  -queue-wait duration", []string{"-admission=fifo"}, []string{}, true},
		{"new binary", "  -admission string\n  -queue-wait duration", []string{"-admission", "fifo"}, []string{"-admission", "fifo"}, false},
		{"not asked", "", []string{"-max-waiting", "1"}, []string{"-max-waiting", "1"}, false},
	} {
		bin := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		script := "#!/bin/sh\nprintf 'Usage of all:\\n" + strings.ReplaceAll(tc.usage, "\n", "\\n") + "\\n' >&2\nexit 2\n"
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		r := &runner{cfg: config{bin: bin}}
		got, why := r.supportedFlags(tc.flags)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") || (why != "") != tc.noted {
			t.Errorf("%s: flags %q, note %q; want %q, noted %v", tc.name, got, why, tc.want, tc.noted)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// The registry stops what it started, by PID, killing what ignores the
// polite signal.
func TestRegistryStopsEverything(t *testing.T) {
	dir := t.TempDir()
	polite, err := start(launch{name: "polite", bin: "sleep", args: []string{"30"}, dir: dir})
	if err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	stubborn, err := start(launch{name: "stubborn", bin: "sh", args: []string{"-c", `trap "" TERM; echo ready; while :; do sleep 1; done`},
		dir: dir, stopGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the trap is set, or SIGTERM could land first.
	if err := poll("stubborn ready", []*proc{stubborn}, func() bool { return strings.Contains(stubborn.logTail(100), "ready") }); err != nil {
		t.Fatal(err)
	}
	procs.stopAll()
	for _, p := range []*proc{polite, stubborn} {
		if !p.exited() {
			t.Errorf("%s still running", p.name)
		}
		if err := syscall.Kill(p.pid(), 0); err == nil {
			t.Errorf("pid %d of %s still exists", p.pid(), p.name)
		}
	}
	if err := polite.stop(); err != nil && !strings.Contains(err.Error(), "had exited") {
		t.Errorf("stop after stop: %v", err)
	}
}

// The report is written, with its plots, and the notes under the marker in
// RESULTS.md survive a regeneration.
func TestReportKeepsNotes(t *testing.T) {
	out := t.TempDir()
	results := filepath.Join(out, "RESULTS.md")
	os.WriteFile(results, []byte("old generated part\n"+notesMarker+"\nOur notes.\n"), 0o644)
	r := &runner{cfg: config{rounds: 2, conns: 64, bigConns: 1024, seed: 300, out: out, resultsMD: results, plots: true,
		stamp: "test", noise: 0.1, log: io.Discard, natsBin: "/nonexistent"}, samples: map[key][]sample{}, began: time.Now()}
	for i := 1; i <= 2; i++ {
		r.record("hello", "loadgen", round(i, 100000, 10, 0))
		r.record("page", "loadgen", round(i, 15000, 70, 0))
		r.record("page-nats", "loadgen", round(i, 9000, 120, 0))
	}
	pt := func(f, goodput float64, p99 time.Duration) sweepPoint {
		return sweepPoint{Fraction: f, Offered: f * 15000, Goodput: goodput, Served: int64(goodput), Refused: int64(f*15000 - goodput),
			Window: time.Second, CPU: time.Duration(goodput*70) * time.Microsecond, P99: time.Millisecond, P99All: p99}
	}
	r.sweeps = []*sweepResult{
		{sat: 15000, points: []sweepPoint{pt(0.5, 7500, time.Millisecond), pt(1.5, 11000, 20*time.Millisecond), pt(2, 8000, 30*time.Millisecond)}},
		{sat: 15000, flags: []string{"-admission", "fifo"}, points: []sweepPoint{pt(0.5, 7500, time.Millisecond), pt(1.5, 9000, 900*time.Millisecond)}},
	}
	if err := r.write(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(results)
	md := string(b)
	for _, want := range []string{"| fasthttp hello | loadgen | 100000 |", "| page: terminator all | loadgen | 15000 |",
		"| 7.00 |", notesMarker + "\nOur notes.\n", "page CPU <= 0.5x the NATS page's", "![cpu](cpu.png)", "![sweep](sweep.png)",
		"| 1.5x open loop (default settings): goodput >= 0.70x peak | 0.73x (11000 of 15000 rps); -admission fifo: 0.60x | met |",
		"| 1.5x open loop: p99 of all answers < 25ms | 20.00 ms; -admission fifo: 900.00 ms | met |",
		"| 2.0x open loop (default settings): goodput >= 0.55x peak | 0.53x (8000 of 15000 rps) | missed |",
		"| 2.0x open loop: p99 of all answers < 25ms | 30.00 ms | missed |",
		"## Overload sweep, -admission fifo"} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "old generated part") {
		t.Error("the old generated part survived")
	}
	for _, f := range []string{"test.md", "cpu.png", "latency.png", "sweep.png", "goodput.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The page built over NATS and over HTTP answers the terminator's bytes:
// seed with the real binary, keep its answers, then serve the same data
// with the peers (in this process) and compare every page.
func TestPeersAnswerTheTerminatorsBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the terminator binary")
	}
	bin := filepath.Join(t.TempDir(), "terminator")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/terminator-gw/terminator/cmd/terminator").CombinedOutput(); err != nil {
		t.Fatalf("build the terminator: %v\n%s", err, out)
	}
	const n = 30
	r := &runner{cfg: config{bin: bin, seed: n, log: io.Discard}, tmp: t.TempDir()}
	t.Cleanup(procs.stopAll)
	data := filepath.Join(r.tmp, "seed")
	ref, err := r.seed(data)
	if err != nil {
		t.Fatal(err)
	}
	var domains []*peers.Domain
	for _, role := range peers.DomainRoles {
		d, err := peers.OpenDomain(role, data)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		domains = append(domains, d)
	}

	// NATS: a nats-server, the micro services, the aggregator.
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for _, d := range domains {
		if _, err := peers.ServeNATS(nc, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	natsWeb := serve(t, peers.NewAggregator(peers.NATSCaller(nc), 0).Handle)

	// HTTP: a server per service, the aggregator calling them.
	addrs := map[string]string{}
	for _, d := range domains {
		addrs[d.Role()] = serve(t, peers.HTTPService(d))
	}
	call, err := peers.HTTPCaller(addrs, 16)
	if err != nil {
		t.Fatal(err)
	}
	httpWeb := serve(t, peers.NewAggregator(call, 0).Handle)

	for name, addr := range map[string]string{"nats": natsWeb, "http": httpWeb} {
		if err := verifyPages("http://"+addr, ref, n); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// And the check does catch a difference.
	ref["/profiles/3"] = []byte("200 {}")
	if err := verifyPages("http://"+httpWeb, ref, n); err == nil || !strings.Contains(err.Error(), "/profiles/3") {
		t.Errorf("a changed reference page was not noticed: %v", err)
	}
}

// serve runs h on a loopback port for the test.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := peers.NewServer(h)
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { srv.ShutdownWithContext(context.Background()) })
	return ln.Addr().String()
}
