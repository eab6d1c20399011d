// Package pgtest runs a throwaway PostgreSQL server for tests, as
// net/http/httptest runs an HTTP server: Debian's server binaries, a data
// directory in a temp dir, a free port on 127.0.0.1, trust authentication,
// and the whole directory removed when it stops.
//
// A package's tests share one server, started on first use:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t) // a fresh, empty database
//		...
//	}
//
// The server is tuned for speed, not crash safety: fsync and
// full_page_writes are off, in this test server only (a test checks what
// the server makes visible; a crash of a test server loses nothing of
// value). Everything else, synchronous_commit included, keeps its default.
//
// When no server binaries are found, NewDatabase fails the test with what
// to install (Debian: apt-get install postgresql); it never skips. As
// root, which initdb refuses to run as, the server runs as the unprivileged
// "postgres" user that Debian's package creates (or a "pgtest" user made
// for the purpose). Every wait is bounded.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds on each wait.
const (
	initTimeout  = 2 * time.Minute  // initdb
	startTimeout = 30 * time.Second // until the server accepts connections
	stopTimeout  = 15 * time.Second // fast shutdown, then SIGKILL
)

// BinDirEnv names the environment variable that, when set, says where the
// server binaries (initdb, postgres) are.
const BinDirEnv = "PGTEST_BINDIR"

// Server is one running PostgreSQL server.
type Server struct {
	dir     string // temp dir: data/ and postgres.log
	port    int
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the server process has exited
	waitErr error         // how it exited; read after exited is closed
	dbs     atomic.Int64  // databases made by NewDatabase
}

// Start runs a new server. Stop it when done.
func Start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: hand %s to the server's user: %w", dir, err)
		}
	}
	s := &Server{dir: dir}
	if err := s.initdb(bin, cred); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// The free port found here may be taken before the server binds it:
	// try a few.
	for try := 1; ; try++ {
		err = s.start(bin, cred)
		if err == nil {
			return s, nil
		}
		if try == 3 || !strings.Contains(s.logTail(), "could not bind") {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// binDir finds the directory of initdb and postgres: $PGTEST_BINDIR, the
// newest /usr/lib/postgresql/*/bin (Debian), or $PATH.
func binDir() (string, error) {
	if d := os.Getenv(BinDirEnv); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("pgtest: %s=%s: no initdb there: %w", BinDirEnv, d, err)
		}
		return d, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(found, func(a, b string) int { return version(a) - version(b) })
	if len(found) > 0 {
		return filepath.Dir(found[len(found)-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found in " +
		"/usr/lib/postgresql/*/bin or $PATH: install Debian's postgresql package " +
		"(apt-get install postgresql), or set " + BinDirEnv + " to their directory")
}

// version is N of /usr/lib/postgresql/N/bin/initdb.
func version(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// serverUser is who the server runs as: nil (ourselves) unless we are
// root, which initdb and postgres refuse to be.
func serverUser() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres") // made by Debian's postgresql-common
	if err != nil {
		if u, err = user.Lookup("pgtest"); err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
			defer cancel()
			out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home",
				"--shell", "/usr/sbin/nologin", "pgtest").CombinedOutput()
			if err != nil {
				return nil, fmt.Errorf("pgtest: running as root, and no unprivileged user to run "+
					"PostgreSQL as: useradd pgtest: %v: %s", err, out)
			}
			if u, err = user.Lookup("pgtest"); err != nil {
				return nil, fmt.Errorf("pgtest: %w", err)
			}
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: user %s: %w", u.Username, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) command(ctx context.Context, cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.dir // the server's user may not be able to enter our cwd
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

func (s *Server) initdb(bin string, cred *syscall.Credential) error {
	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	cmd := s.command(ctx, cred, filepath.Join(bin, "initdb"), "-D", filepath.Join(s.dir, "data"),
		"-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	return nil
}

// start runs the server on a free port and waits until it accepts
// connections.
func (s *Server) start(bin string, cred *syscall.Credential) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	return s.startOn(bin, cred, port, os.O_TRUNC)
}

// startOn runs the server on port, its log opened with flag (O_TRUNC or
// O_APPEND), and waits until it accepts connections.
func (s *Server) startOn(bin string, cred *syscall.Credential, port, flag int) error {
	log, err := os.OpenFile(filepath.Join(s.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|flag, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer log.Close() // the server has its own copy
	cmd := s.command(context.Background(), cred, filepath.Join(bin, "postgres"),
		"-D", filepath.Join(s.dir, "data"),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
	)
	cmd.Stdout, cmd.Stderr = log, log
	// If this test process dies without Stop, the server goes too.
	// Pdeathsig follows the thread that started the child, so that
	// thread stays locked to the goroutine that waits for the server.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	started := make(chan error, 1)
	s.exited = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd, s.port = cmd, port
	if err := s.waitReady(); err != nil {
		s.kill()
		return err
	}
	return nil
}

// waitReady polls until the server accepts a connection, the server
// exits, or startTimeout passes.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("pgtest: postgres exited (%v) before accepting connections:\n%s", s.waitErr, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres not accepting connections after %v: %v\n%s", startTimeout, err, s.logTail())
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail is the end of the server's log, for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "postgres.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// URL is the connection URL of database db on s.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// CreateDatabase makes a new empty database and returns its URL.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test%d", s.dbs.Add(1))
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// Stop shuts the server down (fast shutdown: open sessions are ended),
// kills it if it takes longer than stopTimeout, and removes its directory.
func (s *Server) Stop() error {
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			s.kill()
		}
	}
	return os.RemoveAll(s.dir)
}

// Restart stops the server as a crash would (immediate shutdown: every
// session is cut, nothing is checkpointed) and starts it again on the same
// port and data, which it recovers from its WAL: for tests of what
// clients do while their database goes away and comes back. It returns
// once the server accepts connections again.
func (s *Server) Restart() error {
	bin, err := binDir()
	if err != nil {
		return err
	}
	cred, err := serverUser()
	if err != nil {
		return err
	}
	s.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.kill()
	}
	// The port was ours a moment ago; another process taking it in between
	// fails the restart, with the server's log saying so.
	return s.startOn(bin, cred, s.port, os.O_APPEND)
}

// kill ends the server at once and waits (bounded) for it to be gone.
func (s *Server) kill() {
	s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
	}
}

// The server a package's tests share.
var shared struct {
	sync.Mutex
	main   bool // Main is running the tests
	server *Server
	err    error
}

// Main runs m's tests and stops the shared server, if any test started
// it, before exiting with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	shared.Lock()
	shared.main = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop:", err)
		}
	}
	shared.Unlock()
	os.Exit(code)
}

// NewDatabase returns the URL of a new empty database on the shared
// server, starting the server on first use. It fails t when there is no
// server to be had, saying why.
func NewDatabase(t testing.TB) string {
	t.Helper()
	shared.Lock()
	if !shared.main {
		shared.Unlock()
		t.Fatal("pgtest: call pgtest.Main(m) from TestMain, so the server is stopped at the end")
	}
	if shared.server == nil && shared.err == nil {
		shared.server, shared.err = Start()
	}
	s, err := shared.server, shared.err
	shared.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	url, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return url
}
