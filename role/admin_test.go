package role

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startAdmin(t *testing.T, cfg AdminConfig) *Admin {
	t.Helper()
	a, err := NewAdmin(cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// get asks the admin listener for path with the given Authorization
// (bearer "<token>", basic "user:password", or none).
func get(t *testing.T, addr, path, bearer string, basic ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAdminToken(t *testing.T) {
	const token = "s3cret-token"
	a := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0", Token: token})
	a.Section(Section{Name: "thing", Status: func() any { return map[string]int{"n": 7} }})

	// Probes need no token.
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, body := get(t, a.Addr(), path, ""); status != 200 {
			t.Errorf("%s without a token: %d %s, want 200", path, status, body)
		}
	}
	for _, path := range []string{"/", "/status/", "/status.json", "/status/series.json", "/status/console.json", "/debug/pprof/", "/debug/pprof/cmdline"} {
		status, h, _ := get(t, a.Addr(), path, "")
		if status != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s without a token: %d (WWW-Authenticate %q), want 401 asking for basic auth", path, status, h.Get("WWW-Authenticate"))
		}
		for _, wrong := range [][]string{{"wrong"}, {token + "x"}, {"", "admin", "wrong"}, {"", "admin", ""}} {
			if status, _, _ := get(t, a.Addr(), path, wrong[0], wrong[1:]...); status != 401 {
				t.Errorf("%s with a wrong token %q: %d, want 401", path, wrong, status)
			}
		}
		if status, _, _ := get(t, a.Addr(), path, token); status != 200 {
			t.Errorf("%s with the bearer token: %d, want 200", path, status)
		}
		if status, _, _ := get(t, a.Addr(), path, "", "anyone", token); status != 200 {
			t.Errorf("%s with basic auth: %d, want 200", path, status)
		}
	}
	_, h, body := get(t, a.Addr(), "/status.json", token)
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status.json: %v (%q): %s", err, h.Get("Content-Type"), body)
	}
	if st["ready"] != true || st["thing"].(map[string]any)["n"] != 7.0 {
		t.Errorf("status.json %v: want ready and the section", st)
	}
	if _, _, page := get(t, a.Addr(), "/status/", token); !strings.Contains(page, "<h1>thing</h1>") {
		t.Errorf("status page does not show the section: %.300s", page)
	}
	if _, h, page := get(t, a.Addr(), "/", token); !strings.Contains(page, "<title>terminator console</title>") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "connect-src 'self'") {
		t.Errorf("/ is not the console (CSP %q): %.300s", h.Get("Content-Security-Policy"), page)
	}
}

func TestAdminReadiness(t *testing.T) {
	a := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0"})
	failing := errors.New("disk on fire")
	var fail atomic.Bool
	a.Check("ok", func(context.Context) error { return nil })
	a.Check("store", func(context.Context) error {
		if fail.Load() {
			return failing
		}
		return nil
	})
	if status, _, body := get(t, a.Addr(), "/readyz", ""); status != 200 {
		t.Fatalf("readyz: %d %s", status, body)
	}
	fail.Store(true)
	status, _, body := get(t, a.Addr(), "/readyz", "")
	if status != 503 || !strings.Contains(body, "store: disk on fire") {
		t.Errorf("readyz with a failing check: %d %q, want 503 naming the check", status, body)
	}
	if err := a.Ready(context.Background()); !errors.Is(err, failing) {
		t.Errorf("Ready = %v, want the check's error", err)
	}
	// Without a token (on loopback) the private pages are open.
	_, _, js := get(t, a.Addr(), "/status.json", "")
	if !strings.Contains(js, `"ready": false`) || !strings.Contains(js, "disk on fire") {
		t.Errorf("status.json without a token on loopback: %s", js)
	}
}

func TestNewAdminChecks(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cfg    AdminConfig
		errHas string // "" for success
	}{
		{"loopback v4", AdminConfig{Listen: "127.0.0.1:0"}, ""},
		{"loopback other", AdminConfig{Listen: "127.0.0.2:0"}, ""},
		{"loopback v6", AdminConfig{Listen: "[::1]:0"}, ""},
		{"localhost", AdminConfig{Listen: "localhost:0"}, ""},
		{"all interfaces", AdminConfig{Listen: "0.0.0.0:8081"}, "TERMINATOR_ADMIN_TOKEN"},
		{"all interfaces, no host", AdminConfig{Listen: ":8081"}, "not on loopback"},
		{"all v6 interfaces", AdminConfig{Listen: "[::]:8081"}, "not on loopback"},
		{"a host name", AdminConfig{Listen: "admin.example:8081"}, "not on loopback"},
		{"public address", AdminConfig{Listen: "192.0.2.1:8081"}, "not on loopback"},
		{"no port", AdminConfig{Listen: "127.0.0.1"}, "not on loopback"},
		{"public with a token", AdminConfig{Listen: "0.0.0.0:8081", Token: "t"}, ""},
		{"public with a token file", AdminConfig{Listen: "0.0.0.0:8081", TokenFile: tokenFile}, ""},
		{"missing token file", AdminConfig{Listen: "127.0.0.1:0", TokenFile: filepath.Join(dir, "none")}, "admin token"},
		{"cert without key", AdminConfig{Listen: "127.0.0.1:0", CertFile: "c.pem"}, "admin-key"},
		{"key without cert", AdminConfig{Listen: "127.0.0.1:0", KeyFile: "k.pem"}, "admin-cert"},
	}
	for _, tt := range tests {
		_, err := NewAdmin(tt.cfg, quiet)
		if tt.errHas == "" && err != nil || tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)) {
			t.Errorf("%s: NewAdmin(%+v) = %v, want error with %q", tt.name, tt.cfg, err, tt.errHas)
		}
	}

	// The token file's token (without its line end) is the token, and
	// wins over Token.
	a := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0", Token: "ignored", TokenFile: tokenFile})
	if status, _, _ := get(t, a.Addr(), "/status.json", "from-file"); status != 200 {
		t.Errorf("the token from the file: %d, want 200", status)
	}
	if status, _, _ := get(t, a.Addr(), "/status.json", "ignored"); status != 401 {
		t.Errorf("Token beside TokenFile: %d, want 401 (the file wins)", status)
	}
}

// idleKeepAlive opens a connection to addr and makes one request on it,
// leaving it open and idle as a keep-alive client would.
func idleKeepAlive(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("/healthz: %d (close %v), want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	return c
}

// closedByServer reports whether the server closes c within bound: a read
// ends with EOF (or a reset) rather than the deadline.
func closedByServer(c net.Conn, bound time.Duration) error {
	c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, c) // nil at EOF
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %v", bound)
	}
	return nil
}

// Idle keep-alive connections to the admin listener are closed after its
// idle timeout, and connections over its cap are closed at once and
// counted in status.json: /healthz needs no token, so anyone who reaches
// the listener could otherwise hold the process's file descriptors.
func TestAdminClosesIdleAndCapsConns(t *testing.T) {
	const maxConns = 8
	a := startAdmin(t, AdminConfig{Listen: "127.0.0.1:0", MaxConns: maxConns, IdleTimeout: 300 * time.Millisecond})
	var idle []net.Conn
	for range maxConns {
		idle = append(idle, idleKeepAlive(t, a.Addr()))
	}
	// The cap is full: one more is closed at once, unanswered.
	over, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.Write([]byte("GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n"))
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Closed with the request unread: EOF or a reset, not a deadline.
	b, err := io.ReadAll(over)
	var ne net.Error
	if len(b) > 0 || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("a connection over the cap of %d: read %q, %v; want it closed unanswered", maxConns, b, err)
	}
	for i, c := range idle {
		if err := closedByServer(c, 10*time.Second); err != nil {
			t.Errorf("idle keep-alive connection %d: %v, want closed after the idle timeout", i, err)
		}
	}
	// The slots are free again, and the refusal was counted.
	status, _, body := get(t, a.Addr(), "/status.json", "")
	var st struct {
		Admin AdminStats `json:"admin"`
	}
	if err := json.Unmarshal([]byte(body), &st); status != 200 || err != nil {
		t.Fatalf("status.json: %d %v: %s", status, err, body)
	}
	if st.Admin.Refused < 1 || st.Admin.MaxConns != maxConns {
		t.Errorf("status.json admin = %+v, want the refused connection counted under the cap of %d", st.Admin, maxConns)
	}
}
