// Package cputime reads, from /proc, the CPU time that processes and CPUs
// spent, so that a benchmark charges a system under test for exactly what
// its processes used during a measured window.
//
// A process's time is utime+stime from /proc/PID/stat: the whole thread
// group, threads that already exited included. The kernel scales that pair
// so that it adds up to the scheduler's precise run time, so only the
// printed unit (a clock tick, 10 ms) limits it, not tick sampling. Children
// count through the process tree: Tree finds every live descendant of the
// given roots (nginx's workers, say), and Delta charges each the time it
// spent between two snapshots. A child that exits inside the window loses
// the part of its time after the first snapshot (it is no longer listed);
// the harness starts none such.
//
// A CPU's time comes from the per-CPU lines of /proc/stat: busy is every
// state but idle and iowait. Those counters are sampled on the tick, so over
// a few seconds they carry a percent or two of noise; the harness uses them
// only to see whether something else ran on the CPUs it gave the system
// under test.
package cputime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// TickDuration is one USER_HZ clock tick, the unit of /proc's CPU counters.
// USER_HZ is 100 on every architecture Go's linux ports run on (the kernel
// converts its internal HZ to it for user space).
const TickDuration = 10 * time.Millisecond

// Process is one process's counters.
type Process struct {
	PID, PPID int
	Comm      string // the command name, as /proc shows it (15 bytes at most)
	Ticks     uint64 // utime + stime of the whole thread group
}

// CPU returns the process's CPU time.
func (p Process) CPU() time.Duration { return time.Duration(p.Ticks) * TickDuration }

// ErrNoProc is returned when /proc is not there (not Linux, or not mounted).
var ErrNoProc = errors.New("cputime: /proc is not available")

// procRoot is /proc; tests point it at a fake tree.
var procRoot = "/proc"

// ReadProcess reads one process's counters.
func ReadProcess(pid int) (Process, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return Process{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	return ParseStat(b)
}

// ParseStat parses the text of a /proc/PID/stat file.
func ParseStat(b []byte) (Process, error) {
	// The command name is in parentheses and may itself contain spaces and
	// parentheses: the fields start after the last ')'.
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return Process{}, fmt.Errorf("parse stat: no (comm) in %q", trim(b))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return Process{}, fmt.Errorf("parse stat: pid: %w", err)
	}
	f := strings.Fields(string(b[close+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return Process{}, fmt.Errorf("parse stat of pid %d: %d fields after comm, want at least 13", pid, len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Process{}, fmt.Errorf("parse stat of pid %d: %w", pid, err)
	}
	return Process{PID: pid, PPID: ppid, Comm: string(b[open+1 : close]), Ticks: ut + st}, nil
}

func trim(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}

// Tree returns the roots and every live descendant of them, sorted by PID.
// Roots that no longer exist are left out; Tree fails only when /proc
// cannot be read at all.
func Tree(roots ...int) ([]Process, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoProc, err)
	}
	all := map[int]Process{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, err := ReadProcess(pid)
		if err != nil {
			continue // exited while we listed, or not ours to read
		}
		all[pid] = p
		children[p.PPID] = append(children[p.PPID], pid)
	}
	var out []Process
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		p, ok := all[pid]
		if !ok || seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, p)
		queue = append(queue, children[pid]...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// Delta is the CPU time the processes of after spent since before: a
// process in both is charged the difference, one that appeared since is
// charged all its time (it started inside the window).
func Delta(before, after []Process) time.Duration {
	was := make(map[int]uint64, len(before))
	for _, p := range before {
		was[p.PID] = p.Ticks
	}
	var ticks uint64
	for _, p := range after {
		if t, ok := was[p.PID]; ok && p.Ticks >= t {
			ticks += p.Ticks - t
		} else if !ok {
			ticks += p.Ticks
		}
	}
	return time.Duration(ticks) * TickDuration
}

// CPUTimes are the counters of a set of CPUs, summed.
type CPUTimes struct {
	Busy, Total uint64 // ticks; busy excludes idle and iowait
}

// Sub is the time spent between two readings.
func (c CPUTimes) Sub(before CPUTimes) CPUTimes {
	return CPUTimes{Busy: c.Busy - before.Busy, Total: c.Total - before.Total}
}

// BusyTime is the busy part as a duration.
func (c CPUTimes) BusyTime() time.Duration { return time.Duration(c.Busy) * TickDuration }

// ReadCPUs sums the /proc/stat counters of the given CPUs.
func ReadCPUs(cpus []int) (CPUTimes, error) {
	f, err := os.Open(filepath.Join(procRoot, "stat"))
	if err != nil {
		return CPUTimes{}, fmt.Errorf("%w: %v", ErrNoProc, err)
	}
	defer f.Close()
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	var out CPUTimes
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || !want[fields[0]] {
			continue
		}
		found++
		// user nice system idle iowait irq softirq steal guest guest_nice;
		// guest time is already inside user and nice.
		for i, s := range fields[1:] {
			if i >= 8 {
				break
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat %s: %w", fields[0], err)
			}
			out.Total += v
			if i != 3 && i != 4 {
				out.Busy += v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return CPUTimes{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	if found != len(want) {
		return CPUTimes{}, fmt.Errorf("/proc/stat lists %d of the CPUs %v", found, cpus)
	}
	return out, nil
}

// ParseList parses a CPU list as taskset -c takes it: "1", "0-3", "0,2-3".
func ParseList(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("cpu list %q: bad cpu %q", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}
