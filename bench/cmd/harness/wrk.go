package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkScript spreads requests over paths and prints p99.9 in µs from done(),
// which wrk's own --latency output lacks.
func wrkScript(paths []string) string {
	var sb strings.Builder
	sb.WriteString("local paths = {")
	for i, p := range paths {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, "%q", p)
	}
	sb.WriteString(`}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH_P999_US %d\n", latency:percentile(99.9)))
end
`)
	return sb.String()
}

// runWrk runs wrk closed loop against base+paths and parses its report;
// the sample's GenCPU is wrk's own CPU time.
func runWrk(ctx context.Context, base string, paths []string, conns int, d time.Duration) (sample, error) {
	var r sample
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return r, fmt.Errorf("wrk not installed: %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-wrk-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "spread.lua")
	if err := os.WriteFile(script, []byte(wrkScript(paths)), 0o644); err != nil {
		return r, err
	}
	secs := int(d.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	// wrk itself is bounded by -d; the context adds a hard stop on top.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs),
		"--latency", "--timeout", "2s", "-s", script, base+paths[0])
	out, err := cmd.CombinedOutput()
	if err != nil {
		return r, fmt.Errorf("wrk: %w: %s", err, tail(string(out), 500))
	}
	if r, err = parseWrk(string(out)); err != nil {
		return r, err
	}
	r.GenCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

var (
	reRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reReqs    = regexp.MustCompile(`(\d+) requests in `)
	rePct     = regexp.MustCompile(`^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	reNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	reExtra   = regexp.MustCompile(`BENCH_P999_US (\d+)`)
)

func parseDur(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	default:
		return time.Duration(f * float64(time.Second))
	}
}

// parseWrk extracts Requests/sec, the --latency distribution, errors and
// non-2xx counts from wrk's text output.
func parseWrk(out string) (sample, error) {
	var r sample
	m, n := reRPS.FindStringSubmatch(out), reReqs.FindStringSubmatch(out)
	if m == nil || n == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec or request count: %s", tail(out, 500))
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	r.Requests, _ = strconv.ParseInt(n[1], 10, 64)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if pm := rePct.FindStringSubmatch(sc.Text()); pm != nil {
			d := parseDur(pm[2], pm[3])
			switch pm[1] {
			case "50":
				r.P50 = d
			case "99":
				r.P99 = d
			}
		}
	}
	if m := reNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	if m := reExtra.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.P999 = time.Duration(n) * time.Microsecond
	}
	return r, nil
}
