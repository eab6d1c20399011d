package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// freePort asks the kernel for a free loopback port. The listener is closed
// before use, so a race is possible but harmless on a benchmark box.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts connections, at most d.
func waitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not accept connections within %v", addr, d)
}

// startHello runs the fasthttp hello-world ceiling in this process.
func startHello() (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("hello listen: %w", err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBodyString("hello\n")
		},
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Shutdown(); <-done }, nil
}

// startGoProxy runs net/http/httputil.ReverseProxy in this process in front
// of upstream, with a keep-alive pool big enough for c=64..256.
func startGoProxy(upstream string) (addr string, stop func(), err error) {
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		return "", nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	// Proxy errors at shutdown (cancelled contexts) are expected noise.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("go proxy listen: %w", err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// proc is a child process we started; stop signals it by PID only.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// stop sends sig to the child's PID, waits up to grace, then kills that PID.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) && sig == syscall.SIGTERM {
			return fmt.Errorf("%s (pid %d) exited: %w", p.name, p.cmd.Process.Pid, err)
		}
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) ignored %v for %v; killed", p.name, p.cmd.Process.Pid, sig, grace)
	}
}

// exited reports whether the child already died (e.g. a bad config).
func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// nginxConf renders a minimal config: one server on port, either answering
// directly (upstream == "") or proxying with a keep-alive upstream pool.
func nginxConf(dir string, port int, upstream string) string {
	loc := `return 200 "hello\n";`
	up := ""
	if upstream != "" {
		up = fmt.Sprintf("upstream up { server %s; keepalive 256; }\n", upstream)
		// HTTP/1.1 and an empty Connection header keep upstream connections alive.
		loc = `proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";`
	}
	return fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_requests 1000000;
  %[2]s
  server { listen 127.0.0.1:%[3]d; location / { %[4]s } }
}
`, dir, up, port, loc)
}

// startNginx writes a temp config and runs nginx in the foreground.
func startNginx(upstream string) (addr string, stop func() error, err error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", nil, fmt.Errorf("nginx not installed: %w", err)
	}
	dir, err := os.MkdirTemp("", "bench-nginx-")
	if err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, port, upstream)), 0o644); err != nil {
		return "", nil, fmt.Errorf("write nginx config: %w", err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	logf, _ := os.Create(filepath.Join(dir, "stderr.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc("nginx", cmd)
	if err != nil {
		return "", nil, err
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	cleanup := func() error {
		// SIGQUIT: graceful stop of the master we started (its workers follow).
		err := p.stop(syscall.SIGQUIT, 5*time.Second)
		if logf != nil {
			logf.Close()
		}
		_ = os.RemoveAll(dir)
		return err
	}
	if err := waitTCP(addr, 5*time.Second); err != nil || p.exited() {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		b2, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
		_ = cleanup()
		return "", nil, fmt.Errorf("nginx did not start: %v: %s %s", err, b, b2)
	}
	return addr, cleanup, nil
}

// terminator is the real binary running "all" with its own data and ports.
type terminator struct {
	public, admin string
	p             *proc
	dir           string
	logf          *os.File
}

// startTerminator runs the binary; extra flags go to "all" (the sweep's
// instance sets a small -max-waiting).
func startTerminator(bin string, extra ...string) (*terminator, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("terminator binary %s: %w (run make build)", bin, err)
	}
	dir, err := os.MkdirTemp("", "bench-terminator-")
	if err != nil {
		return nil, err
	}
	var ports [4]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	t := &terminator{public: fmt.Sprintf("127.0.0.1:%d", ports[0]), admin: fmt.Sprintf("127.0.0.1:%d", ports[1]), dir: dir}
	cmd := exec.Command(bin, "all", "-data", filepath.Join(dir, "data"), "-seed", "300",
		"-listen", t.public, "-admin", t.admin,
		"-embedded-etcd-client", fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		"-embedded-etcd-peer", fmt.Sprintf("http://127.0.0.1:%d", ports[3]))
	cmd.Args = append(cmd.Args, extra...)
	t.logf, _ = os.Create(filepath.Join(dir, "terminator.log"))
	cmd.Stdout, cmd.Stderr = t.logf, t.logf
	if t.p, err = startProc("terminator", cmd); err != nil {
		return nil, err
	}
	if err := t.waitReady(60 * time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "terminator.log"))
		_ = t.stop()
		return nil, fmt.Errorf("%w; log tail: %s", err, tail(string(b), 2000))
	}
	return t, nil
}

// waitReady polls readiness, then the routes themselves (they arrive via
// etcd after readiness), bounded by d.
func (t *terminator) waitReady(d time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	need := []string{"http://" + t.admin + "/readyz", "http://" + t.public + "/echo", "http://" + t.public + "/profiles/1", "http://" + t.public + "/profiles/300"}
	for _, u := range need {
		for {
			if t.p.exited() {
				return errors.New("terminator exited during start-up")
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("terminator not ready within %v (waiting for %s)", d, u)
			}
			resp, err := c.Get(u)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (t *terminator) stop() error {
	err := t.p.stop(syscall.SIGTERM, 20*time.Second)
	if t.logf != nil {
		t.logf.Close()
	}
	_ = os.RemoveAll(t.dir)
	return err
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
