package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// The real binary, as `make run` starts it: it serves through embedded etcd
// and the bus, and on SIGTERM it drains (an in-flight request completes)
// and exits 0.
func TestBinaryServesAndDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "terminator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	public, admin := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "all", "-data", filepath.Join(dir, "data"), "-listen", public, "-admin", admin,
		"-embedded-etcd-client", "http://"+freeAddr(t), "-embedded-etcd-peer", "http://"+freeAddr(t))
	out, _ := os.Create(filepath.Join(dir, "out"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	logs := func() string { b, _ := os.ReadFile(filepath.Join(dir, "out")); return string(b) }

	ready := false
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end) && !ready; time.Sleep(100 * time.Millisecond) {
		code, _, _ := get("http://" + admin + "/readyz")
		ready = code == 200
	}
	if !ready {
		t.Fatalf("not ready in 30s:\n%s", logs())
	}
	var code int
	var body string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && code != 200; time.Sleep(50 * time.Millisecond) {
		code, body, _ = get("http://" + public + "/echo") // routes arrive through etcd
	}
	if code != 200 || body != "hello\n" {
		t.Fatalf("GET /echo: %d %q\n%s", code, body, logs())
	}

	inflight := make(chan string, 1)
	go func() {
		code, body, err := get("http://" + public + "/echo?sleep=700ms")
		inflight <- fmt.Sprint(code, " ", strings.TrimSpace(body), " ", err)
	}()
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	if got := <-inflight; got != "200 hello <nil>" {
		t.Fatalf("in-flight request during drain: %s\n%s", got, logs())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v (want code 0)\n%s", err, logs())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("did not exit after SIGTERM\n%s", logs())
	}
	if _, _, err := get("http://" + public + "/echo"); err == nil {
		t.Fatal("still serving after exit")
	}
}
