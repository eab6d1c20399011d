package cputime

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, in string
		want     Process
		wantErr  bool
	}{
		{"plain", "42 (nginx) S 7 42 42 0 -1 4194560 100 0 0 0 120 30 5 6 20 0 1 0 100 1000 10",
			Process{PID: 42, PPID: 7, Comm: "nginx", Ticks: 150}, false},
		{"comm with spaces and parens", "9 (a (b) c) R 1 9 9 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0",
			Process{PID: 9, PPID: 1, Comm: "a (b) c", Ticks: 15}, false},
		{"truncated", "9 (x) R 1 2 3", Process{}, true},
		{"no comm", "9 x R 1", Process{}, true},
		{"bad number", "9 (x) R 1 9 9 0 -1 0 0 0 0 0 7x 8 0 0", Process{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// fakeProc writes a /proc with the given "pid ppid ticks" processes.
func fakeProc(t *testing.T, procs [][3]int, stat string) {
	t.Helper()
	dir := t.TempDir()
	for _, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(p[0]))
		os.MkdirAll(d, 0o755)
		line := strconv.Itoa(p[0]) + " (p" + strconv.Itoa(p[0]) + ") S " + strconv.Itoa(p[1]) + " 0 0 0 -1 0 0 0 0 0 " + strconv.Itoa(p[2]) + " 0 0 0 20 0 1 0\n"
		os.WriteFile(filepath.Join(d, "stat"), []byte(line), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "self"), 0o755) // not a pid: skipped
	os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
	old := procRoot
	procRoot = dir
	t.Cleanup(func() { procRoot = old })
}

func TestTreeFindsDescendantsOnly(t *testing.T) {
	// 10 is a master with workers 11 and 12; 12 has a child 13; 20 is a stranger.
	fakeProc(t, [][3]int{{1, 0, 5}, {10, 1, 100}, {11, 10, 40}, {12, 10, 50}, {13, 12, 1}, {20, 1, 999}}, "")
	got, err := Tree(10, 99) // 99 does not exist
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range got {
		pids = append(pids, p.PID)
	}
	if !reflect.DeepEqual(pids, []int{10, 11, 12, 13}) {
		t.Errorf("tree %v, want [10 11 12 13]", pids)
	}
}

func TestDelta(t *testing.T) {
	before := []Process{{PID: 1, Ticks: 100}, {PID: 2, Ticks: 50}, {PID: 3, Ticks: 10}}
	after := []Process{{PID: 1, Ticks: 130}, {PID: 2, Ticks: 50}, {PID: 4, Ticks: 7}} // 3 exited, 4 is new
	if got, want := Delta(before, after), 37*TickDuration; got != want {
		t.Errorf("Delta = %v, want %v", got, want)
	}
}

func TestReadCPUs(t *testing.T) {
	fakeProc(t, nil, "cpu  1 2 3 4 5 6 7 8 9 10\n"+
		"cpu0 10 0 10 100 5 0 0 0 0 0\n"+
		"cpu1 20 1 9 50 3 2 4 1 7 0\n"+
		"intr 1 2 3\n")
	got, err := ReadCPUs([]int{1})
	if err != nil {
		t.Fatal(err)
	}
	// busy: user 20 + nice 1 + system 9 + irq 2 + softirq 4 + steal 1; guest (7) is inside user.
	if want := (CPUTimes{Busy: 37, Total: 90}); got != want {
		t.Errorf("cpu1 = %+v, want %+v", got, want)
	}
	if _, err := ReadCPUs([]int{0, 5}); err == nil {
		t.Error("want an error for a CPU /proc/stat does not list")
	}
}

func TestParseList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1", []int{1}, false},
		{"0-3", []int{0, 1, 2, 3}, false},
		{"3,0-1,1", []int{0, 1, 3}, false},
		{"", nil, true},
		{"2-1", nil, true},
		{"a", nil, true},
	}
	for _, tc := range tests {
		got, err := ParseList(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseList(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// The real /proc: a child we start shows up under us, and our own counter
// moves when we spend CPU.
func TestRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sleep: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tree, err := Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range tree {
		found = found || p.PID == cmd.Process.Pid && p.PPID == os.Getpid()
	}
	if !found || tree[0].PID != os.Getpid() {
		t.Errorf("tree of %d lacks the child %d: %+v", os.Getpid(), cmd.Process.Pid, tree)
	}
	start, err := ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		for i := 0; i < 1e6; i++ {
			x += i
		}
		if p, err := ReadProcess(os.Getpid()); err == nil && p.Ticks > start.Ticks {
			return
		}
	}
	t.Errorf("spent CPU for 10s but utime+stime did not move (%d)", x)
}
