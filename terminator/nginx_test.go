package terminator_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/bench/nginxconf"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// startNginx runs a real nginx with deploy/nginx/terminator.conf on a free
// loopback port, forwarding to upstream. It returns nginx's address, and
// the file of its JSON access log.
func startNginx(t *testing.T, upstream string) (addr, accessLog string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nginx is not installed; .ci/run installs it with apt-get")
		}
		t.Skip("nginx not installed (apt-get install nginx)")
	}
	conf, err := os.ReadFile("../deploy/nginx/terminator.conf")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	dir := t.TempDir()
	accessLog = filepath.Join(dir, "access.log")
	site, err := nginxconf.SiteLogging(conf, fmt.Sprintf("127.0.0.1:%d", port), upstream, accessLog)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site), 0o644)
	main := nginxconf.Main(dir, 1, filepath.Join(dir, "site.conf"))
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644)
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	out, _ := os.Create(filepath.Join(dir, "stderr"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // nginx's fast shutdown; we stop only the process we started
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	eventually(t, "nginx listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, accessLog
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// GET and POST through nginx -> terminator -> service, with the client
// address and request ID preserved, nginx reaching the front over loopback
// TCP or the front's unix socket.
func TestBehindNginx(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listen func(t *testing.T) terminator.Config
	}{
		{"tcp", func(t *testing.T) terminator.Config {
			trusted, _ := terminator.ParsePrefixes("127.0.0.1")
			return terminator.Config{TrustedProxies: trusted}
		}},
		{"unix", func(t *testing.T) terminator.Config {
			// nginx's workers connect: the socket is its group's (when
			// started by root, they are nobody:nogroup), and the
			// directory lets them through to it.
			sock := socketPath(t)
			if err := os.Chmod(filepath.Dir(sock), 0o711); err != nil {
				t.Fatal(err)
			}
			trusted, unix, _ := terminator.ParseTrustedProxies(terminator.DefaultTrustedProxies)
			return terminator.Config{Listen: "unix:" + sock, TrustedProxies: trusted, TrustUnix: unix,
				Socket: terminator.SocketPerm{Group: nginxconf.WorkerGroup()}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testBehindNginx(t, tc.listen(t)) })
	}
}

func testBehindNginx(t *testing.T, cfg terminator.Config) {
	svc := echoService(t, "echo", nil)
	var frontLogs nanobustest.Logs
	srv, _ := frontLog(t, cfg, jsonLogger(&frontLogs), echoRoutes("echo"), svc)
	nginx, accessLog := startNginx(t, srv.Addr())

	resp, body := get(t, "http://"+nginx+"/items/7?x=1", map[string]string{"X-Request-Id": "from-client-1"})
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET via nginx: %d %s", resp.StatusCode, body)
	}
	if s.Path != "/items/7" || s.Query != "x=1" || s.Client != "127.0.0.1" {
		t.Errorf("service saw %+v", s)
	}
	if s.Header["X-Request-Id"] != "from-client-1" || resp.Header.Get("X-Request-Id") != "from-client-1" {
		t.Errorf("request ID: service %q, client %q", s.Header["X-Request-Id"], resp.Header.Get("X-Request-Id"))
	}

	// The client's address as nginx saw it reaches the service: claim to be
	// a proxy ourselves and check the chain is read from the right.
	resp, body = do(t, "POST", "http://"+nginx+"/echo", "payload", map[string]string{"X-Forwarded-For": "198.51.100.23"})
	s = seen{}
	if err := json.Unmarshal([]byte(body), &s); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST via nginx: %d %s", resp.StatusCode, body)
	}
	if s.Method != "POST" || s.Body != "payload" {
		t.Errorf("service saw %+v", s)
	}
	if s.Client != "127.0.0.1" {
		t.Errorf("client %q: nginx's X-Real-IP (the direct client) should win over a forged X-Forwarded-For", s.Client)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("nginx generated no request ID")
	}

	resp, _ = get(t, "http://"+nginx+"/nowhere", nil)
	if resp.StatusCode != 404 {
		t.Errorf("no route via nginx: %d", resp.StatusCode)
	}
	generated := resp.Header.Get("X-Request-Id")

	// nginx logs each request as a JSON line with the front's key names,
	// under the request ID the front logged it with: the client's, or
	// nginx's own. An ID the front would not keep is replaced by nginx's.
	resp, _ = get(t, "http://"+nginx+"/echo", map[string]string{"X-Request-Id": "not an id"})
	bad := resp.Header.Get("X-Request-Id")
	if bad == "" || bad == "not an id" {
		t.Errorf("an ID the front refuses reached it: %q", bad)
	}
	for _, id := range []string{"from-client-1", generated, bad} {
		var ngx, fr map[string]any
		eventually(t, "nginx's line for "+id, func() bool {
			b, _ := os.ReadFile(accessLog) // nginx writes a line once the response is sent
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) == nil && m["request_id"] == id {
					ngx = m
				}
			}
			return ngx != nil
		})
		for _, l := range jsonLines(t, &frontLogs) {
			if l["msg"] == "request" && l["request_id"] == id {
				fr = l
			}
		}
		if fr == nil {
			t.Errorf("the front logged no request %s", id)
			continue
		}
		for _, k := range []string{"msg", "method", "path", "status", "client"} {
			if ngx[k] != fr[k] && !(k == "client" && ngx[k] == "127.0.0.1") {
				t.Errorf("%s: nginx's %s %v, the front's %v", id, k, ngx[k], fr[k])
			}
		}
		if ngx["hop"] != "nginx" || ngx["level"] != "INFO" || ngx["upstream"] != srv.Addr() {
			t.Errorf("nginx's line (upstream want %s): %v", srv.Addr(), ngx)
		}
	}
}
