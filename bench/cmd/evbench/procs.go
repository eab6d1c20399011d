package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process evbench started: stopped by its PID only, and kept in
// the registry until it has exited.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	sig  syscall.Signal // what stops it; SIGTERM unless set
}

var live struct {
	sync.Mutex
	procs []*proc
}

// stopAll stops every process still running, the last started first.
func stopAll() {
	live.Lock()
	ps := slices.Clone(live.procs)
	live.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}

// start runs bin pinned to cpus (taskset -c, "" unpinned), as cred when
// not nil, its output into dir/<name>.log.
func start(name, dir, cpus string, cred *syscall.Credential, bin string, args ...string) (*proc, error) {
	if cpus != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("taskset not found (apt-get install util-linux), or run with -pin=false: %w", err)
		}
		bin, args = ts, append([]string{"-c", cpus, bin}, args...)
	}
	cmd := exec.Command(bin, args...)
	// Its own process group, so a Ctrl-C reaches only evbench, which stops
	// everything in order; if evbench dies, the kernel kills the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	cmd.Dir = dir
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	live.Lock()
	live.procs = append(live.procs, p)
	live.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		live.Lock()
		live.procs = slices.DeleteFunc(live.procs, func(q *proc) bool { return q == p })
		live.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends its stop signal to the PID, and SIGKILL after 15 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	sig := p.sig
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	s := strings.TrimSpace(string(b))
	if len(s) > 800 {
		s = "..." + s[len(s)-800:]
	}
	return s
}

// freeAddr asks the kernel for a free loopback port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitFor polls ok until it holds, a process of ps exits, or 60 s pass.
func waitFor(what string, ps []*proc, ok func() bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, p := range ps {
			if p.exited() {
				return fmt.Errorf("waiting for %s: %s exited (%v): %s", what, p.name, p.err, p.logTail())
			}
		}
		if ok() {
			return nil
		}
		if time.Now().After(deadline) {
			var logs []string
			for _, p := range ps {
				logs = append(logs, p.name+": "+p.logTail())
			}
			return fmt.Errorf("no %s within 60s; %s", what, strings.Join(logs, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var ctlClient = &http.Client{Timeout: 10 * time.Second}

// ctl calls a role's control route; out, when not nil, gets the JSON
// answer.
func ctl(addr, method, route string, q url.Values, out any) error {
	u := "http://" + addr + route
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return err
	}
	resp, err := ctlClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, route, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// startNATS runs a nats-server with JetStream on a file store in dir,
// syncing every write (syncAlways) or at its default interval.
func startNATS(bin, dir, cpus string, syncAlways bool) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	store := filepath.Join(dir, "jetstream")
	conf := fmt.Sprintf("listen: %q\njetstream {\n  store_dir: %q\n", addr, store)
	if syncAlways {
		conf += "  sync_interval: always\n"
	}
	conf += "}\n"
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	p, err := start("nats-server", dir, cpus, nil, bin, "-c", confPath)
	if err != nil {
		return nil, "", err
	}
	err = waitFor("nats-server on "+addr, []*proc{p}, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p, "nats://" + addr, err
}

// pgBinDir is the newest /usr/lib/postgresql/N/bin, $EVBENCH_PG_BINDIR, or
// "" when there is none.
func pgBinDir() string {
	if d := os.Getenv("EVBENCH_PG_BINDIR"); d != "" {
		return d
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(found, func(i, j int) bool { return pgVersion(found[i]) < pgVersion(found[j]) })
	if len(found) == 0 {
		return ""
	}
	return filepath.Dir(found[len(found)-1])
}

func pgVersion(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return n
}

// startPostgres runs a PostgreSQL server in dir with its durable defaults
// (fsync on, synchronous_commit on), on 127.0.0.1 only, pinned to cpus; as
// root it runs as the "postgres" user, which initdb wants.
func startPostgres(bin, dir, cpus string) (*proc, string, error) {
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, "", fmt.Errorf("running as root and there is no postgres user to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, "", err
		}
	}
	data := filepath.Join(dir, "pgdata")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("initdb: %v: %s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := start("postgres", dir, cpus, cred, filepath.Join(bin, "postgres"), "-D", data, "-p", port,
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=100")
	if err != nil {
		return nil, "", err
	}
	p.sig = syscall.SIGINT // fast shutdown: SIGTERM would wait for the sessions
	err = waitFor("postgres on "+addr, []*proc{p}, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil && strings.Contains(p.logTail(), "ready to accept connections")
	})
	if err != nil {
		return p, "", errors.Join(err, errors.New(p.logTail()))
	}
	return p, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", addr), nil
}
