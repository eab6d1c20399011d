package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a server process the harness started; it is stopped by its PID
// only, and recorded in the registry until it has exited.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   string // its stdout and stderr
	done  chan struct{}
	err   error         // Wait's result, once done is closed
	grace time.Duration // between SIGTERM and SIGKILL
}

// registry holds every live process the harness started, so that all of
// them are stopped on the way out: at the end, on failure, on Ctrl-C.
type registry struct {
	mu   sync.Mutex
	live []*proc
}

// procs is the harness's registry.
var procs = &registry{}

func (r *registry) add(p *proc) {
	r.mu.Lock()
	r.live = append(r.live, p)
	r.mu.Unlock()
}

func (r *registry) remove(p *proc) {
	r.mu.Lock()
	r.live = slices.DeleteFunc(r.live, func(q *proc) bool { return q == p })
	r.mu.Unlock()
}

// stopAll stops every live process, the last started first.
func (r *registry) stopAll() {
	r.mu.Lock()
	live := slices.Clone(r.live)
	r.mu.Unlock()
	for i := len(live) - 1; i >= 0; i-- {
		_ = live[i].stop()
	}
}

// launch describes a process to start.
type launch struct {
	name string   // for logs and errors
	bin  string   // the program
	args []string // its arguments
	cpus string   // taskset -c list; "" runs it unpinned
	nice int      // scheduling priority (nice -n); 0 leaves it
	dir  string   // where its log goes
	// stopGrace is how long it may take to stop after SIGTERM (default
	// 15 s) before it is killed.
	stopGrace time.Duration
}

// wrap prefixes a command with nice and taskset as asked. Both exec the
// next program in place, so the PID of the result is the program's own,
// and every thread it starts inherits the CPUs and the priority.
func wrap(bin string, args []string, cpus string, nice int) (string, []string, error) {
	if cpus != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return "", nil, fmt.Errorf("taskset not found (apt-get install util-linux), or run with -pin=false: %w", err)
		}
		bin, args = ts, append([]string{"-c", cpus, bin}, args...)
	}
	if nice != 0 {
		n, err := exec.LookPath("nice")
		if err != nil {
			return "", nil, fmt.Errorf("nice not found (apt-get install coreutils), or run with -nice 0: %w", err)
		}
		bin, args = n, append([]string{"-n", fmt.Sprint(nice), bin}, args...)
	}
	return bin, args, nil
}

// start runs l, pinned and prioritized as it asks.
func start(l launch) (*proc, error) {
	bin, args, err := wrap(l.bin, l.args, l.cpus, l.nice)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", l.name, err)
	}
	cmd := exec.Command(bin, args...)
	// Its own process group: a Ctrl-C at the terminal reaches the harness
	// only, which then stops everything in order. If the harness dies
	// without that, the kernel kills the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logPath := filepath.Join(l.dir, sanitize(l.name)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", l.name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", l.name, l.bin, err)
	}
	grace := l.stopGrace
	if grace == 0 {
		grace = 15 * time.Second
	}
	p := &proc{name: l.name, cmd: cmd, log: logPath, done: make(chan struct{}), grace: grace}
	procs.add(p)
	go func() {
		p.err = cmd.Wait()
		f.Close()
		procs.remove(p)
		close(p.done)
	}()
	return p, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process is gone (a bad config, a crash).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process's PID (every server here, nginx
// included, stops on it), waits up to its grace, then kills that PID. It
// reports an exit other than the one asked for.
func (p *proc) stop() error {
	if p.exited() {
		return p.unexpected()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		// A clean exit, or death by the very signal we sent, is a stop.
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
				return fmt.Errorf("%s (pid %d) stopped with %v; log %s", p.name, p.pid(), p.err, p.log)
			}
		}
		return nil
	case <-time.After(p.grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v; killed", p.name, p.pid(), p.grace)
	}
}

func (p *proc) unexpected() error {
	return fmt.Errorf("%s (pid %d) had exited: %v; log tail: %s", p.name, p.pid(), p.err, p.logTail(800))
}

func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	return tail(string(b), n)
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// freeAddr asks the kernel for a free loopback port. The listener is
// closed before use, so another process may take it first: starting a
// server then fails with a clear error, it does not hang.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func freeAddrs(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// readiness polling is bounded by these.
const (
	startTimeout = 60 * time.Second
	pollEvery    = 50 * time.Millisecond
)

// waitTCP waits until addr accepts connections, while watching ps.
func waitTCP(addr string, ps ...*proc) error {
	return poll("accepting on "+addr, ps, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

var pollClient = &http.Client{Timeout: 2 * time.Second}

// waitHTTP waits until every url answers 200, while watching ps.
func waitHTTP(urls []string, ps ...*proc) error {
	for _, u := range urls {
		err := poll("200 from "+u, ps, func() bool {
			resp, err := pollClient.Get(u)
			if err != nil {
				return false
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// poll calls ok until it returns true, a process of ps exits, or
// startTimeout passes.
func poll(what string, ps []*proc, ok func() bool) error {
	deadline := time.Now().Add(startTimeout)
	for {
		for _, p := range ps {
			if p.exited() {
				return fmt.Errorf("waiting for %s: %w", what, p.unexpected())
			}
		}
		if ok() {
			return nil
		}
		if time.Now().After(deadline) {
			var logs []string
			for _, p := range ps {
				logs = append(logs, p.name+": "+p.logTail(300))
			}
			return fmt.Errorf("no %s within %v; %s", what, startTimeout, strings.Join(logs, "; "))
		}
		time.Sleep(pollEvery)
	}
}
