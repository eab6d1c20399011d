package terminator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/terminator"
)

// socketPath is a fresh unix socket path, short enough for sun_path (108
// bytes: t.TempDir's names can be longer).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "front.sock")
}

// unixClient is an HTTP client whose every request goes to the socket.
func unixClient(t *testing.T, sock string) *http.Client {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// The front on a unix socket serves requests, with the socket's mode as
// asked, and the client address is what the trusted proxy says it is (a
// peer on the socket has none of its own), or nothing when not trusted.
func TestFrontOnUnixSocket(t *testing.T) {
	svc := echoService(t, "echo", nil)
	cases := []struct {
		name       string
		trustUnix  bool
		mode       fs.FileMode
		header     map[string]string
		wantClient string
		wantXFF    bool // X-Forwarded-For reaches the service
	}{
		{name: "trusted, X-Real-IP", trustUnix: true, header: map[string]string{"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "198.51.100.1, 203.0.113.7"},
			wantClient: "203.0.113.7", wantXFF: true},
		{name: "trusted, X-Forwarded-For read from the right", trustUnix: true, mode: 0o600,
			header: map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, wantClient: "203.0.113.9", wantXFF: true},
		{name: "trusted, only trusted hops", trustUnix: true, header: map[string]string{"X-Forwarded-For": "127.0.0.1"}, wantClient: "127.0.0.1", wantXFF: true},
		{name: "trusted, no header", trustUnix: true, wantClient: ""},
		{name: "not trusted", header: map[string]string{"X-Real-IP": "203.0.113.7", "X-Forwarded-For": "203.0.113.7"}, wantClient: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sock := socketPath(t)
			trusted, _ := terminator.ParsePrefixes("127.0.0.1")
			srv, _ := front(t, terminator.Config{Listen: "unix:" + sock, TrustedProxies: trusted, TrustUnix: tc.trustUnix,
				Socket: terminator.SocketPerm{Mode: tc.mode}}, echoRoutes("echo"), svc)
			if srv.Addr() != "unix:"+sock {
				t.Errorf("Addr %q, want unix:%s", srv.Addr(), sock)
			}
			fi, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.mode
			if want == 0 {
				want = terminator.DefaultSocketMode
			}
			if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != want {
				t.Errorf("socket file mode %v, want a socket with %v", fi.Mode(), want)
			}

			req, _ := http.NewRequest("GET", "http://localhost/items/7?x=1", nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := unixClient(t, sock).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var s seen
			if err := json.Unmarshal(b, &s); err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET over the socket: %d %s", resp.StatusCode, b)
			}
			if s.Path != "/items/7" || s.Query != "x=1" || s.Client != tc.wantClient {
				t.Errorf("service saw path %q query %q client %q, want client %q", s.Path, s.Query, s.Client, tc.wantClient)
			}
			if _, ok := s.Header["X-Forwarded-For"]; ok != tc.wantXFF {
				t.Errorf("X-Forwarded-For reached the service: %v, want %v (headers %v)", ok, tc.wantXFF, s.Header)
			}
		})
	}
}

// The socket file: one left by a process that died is taken over, a live
// one or anything else at the path is not, and a drained front removes
// its own.
func TestUnixSocketFile(t *testing.T) {
	svc := echoService(t, "echo", nil)
	start := func(sock string) (*terminator.Server, error) {
		node := nanobustest.NewNode(t, nanobus.Config{})
		nanobustest.Connect(t, node, svc)
		srv, err := terminator.New(terminator.Config{Listen: "unix:" + sock}, node, quiet)
		if err != nil {
			t.Fatal(err)
		}
		srv.SetRoutes(echoRoutes("echo"))
		return srv, srv.Start()
	}
	stop := func(srv *terminator.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Drain(ctx)
		srv.Close()
	}

	t.Run("stale socket removed", func(t *testing.T) {
		sock := socketPath(t)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false) // a process that died: the file stays
		ln.Close()
		srv, err := start(sock)
		if err != nil {
			t.Fatalf("start on a stale socket: %v", err)
		}
		resp, err := unixClient(t, sock).Get("http://localhost/echo")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET: %v %v", resp, err)
		}
		resp.Body.Close()
		stop(srv)
		if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket file after drain: %v", err)
		}
	})
	t.Run("live socket kept", func(t *testing.T) {
		sock := socketPath(t)
		first, err := start(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer stop(first)
		second, err := start(sock)
		if err == nil {
			stop(second)
			t.Fatal("a second front took a live socket")
		}
		if !strings.Contains(err.Error(), "another process listens") {
			t.Errorf("error %v", err)
		}
		resp, err := unixClient(t, sock).Get("http://localhost/echo")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the first front after the second's attempt: %v %v", resp, err)
		}
		resp.Body.Close()
	})
	t.Run("not a socket", func(t *testing.T) {
		sock := socketPath(t)
		os.WriteFile(sock, []byte("data"), 0o600)
		if srv, err := start(sock); err == nil {
			stop(srv)
			t.Fatal("started over a regular file")
		}
		if b, _ := os.ReadFile(sock); string(b) != "data" {
			t.Errorf("the file was touched: %q", b)
		}
	})
}

// A client on the unix socket (nginx, aborting for its own client) that
// closes while its request is parked: the watcher sees it on the unix
// socket as on TCP, and the call is cancelled (499).
func TestUnixClientGoneCancelsCall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	svc := echoService(t, "echo", release)
	sock := socketPath(t)
	srv, _ := front(t, terminator.Config{Listen: "unix:" + sock, Timeout: 30 * time.Second}, echoRoutes("echo"), svc)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, blockRequest); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the request parked on the bus", func() bool { return terminator.Parked(srv) == 1 })
	polled := terminator.Polled(srv)
	eventually(t, "the socket polled", func() bool { return terminator.Polled(srv) > polled })
	c.Close()
	eventually(t, "the call cancelled", func() bool { return cancelledOf(srv, "POST", "/block") == 1 })
	eventually(t, "the admission slot freed", func() bool { return srv.Status().Waiting == 0 })

	// A pipelined request behind a parked one is not a client gone.
	k, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	k.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(k)
	for i := range 2 {
		if code, body := readResponse(t, br); code != 200 && !(i == 0 && code == 504) {
			t.Fatalf("pipelined request %d: %d %s", i, code, body)
		}
	}
	if n := cancelledOf(srv, "GET", "/slow"); n != 0 {
		t.Errorf("a pipelined request cancelled its predecessor (%d)", n)
	}
}
