package loadgen

import (
	"syscall"
	"time"
)

// raiseNoFile raises this process's soft RLIMIT_NOFILE to need, or as far
// as its hard limit allows, and returns the soft limit it ends with.
// (Go raises the soft limit to the hard one at start already; this covers
// a process started with a lower hard limit than the run wants, and says
// what the bound really is.)
func raiseNoFile(need uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return need // unknown: let the dial fail and be counted instead
	}
	if lim.Cur >= need {
		return lim.Cur
	}
	want := lim
	want.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return lim.Cur
	}
	return want.Cur
}

// processCPU is this process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
