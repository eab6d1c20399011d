package terminator

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Listening on a unix socket: "-listen unix:/run/terminator/front.sock",
// for nginx on the same host. A unix socket skips the loopback TCP stack
// (no ports, no Nagle, no checksums, no SYN backlog) and is reached only by
// who may open its file: the socket's mode and group are its access
// control, which is also why a peer on it may be a trusted proxy (see
// Config.TrustUnix).

// UnixPrefix starts a listen address that is a unix socket's path.
const UnixPrefix = "unix:"

// DefaultSocketMode is a unix socket's mode unless told: its owner and its
// group may connect, nobody else. nginx, another user, connects as a member
// of the socket's group (SocketPerm.Group, or the directory's setgid
// group). 0666 would let every local user connect, and claim any client
// address in X-Forwarded-For when unix peers are trusted proxies.
const DefaultSocketMode fs.FileMode = 0o660

// SocketPerm is who may connect to a unix socket listener.
type SocketPerm struct {
	Mode  fs.FileMode // permission bits; 0: DefaultSocketMode
	Group string      // group name or number the socket is given, "": the process's
}

// UnixPath returns the socket path of a "unix:PATH" listen address, and
// whether addr is one.
func UnixPath(addr string) (string, bool) {
	p, ok := strings.CutPrefix(addr, UnixPrefix)
	return p, ok && p != ""
}

// Listen binds addr: "host:port" over TCP, or "unix:PATH" a unix stream
// socket with perm. A socket file left at PATH by a process that died is
// removed first, but only when nothing answers on it (a dial is refused):
// a second process never takes a live one's socket. The listener removes
// the file when closed.
func Listen(addr string, perm SocketPerm) (net.Listener, error) {
	path, ok := UnixPath(addr)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// Bound under a temporary name, given its mode and group, then renamed
	// into place: at path, the socket never has the mode bind gave it
	// (0777 less the umask), which may be wider than asked.
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	if err := removeStaleSocket(tmp); err != nil { // a crash between bind and rename, same PID (a container's 1)
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // the file is at path by then: unixListener.Close removes it
	if err := setSocketPerm(tmp, perm); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("socket into place: %w", err)
	}
	return &unixListener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener is a unix socket listener at addr, whose file it removes
// when closed.
type unixListener struct {
	*net.UnixListener
	addr      *net.UnixAddr
	closeOnce sync.Once
	closeErr  error
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	l.closeOnce.Do(func() {
		l.closeErr = l.UnixListener.Close()
		if err := os.Remove(l.addr.Name); err != nil && !errors.Is(err, fs.ErrNotExist) && l.closeErr == nil {
			l.closeErr = err
		}
	})
	return l.closeErr
}

// removeStaleSocket removes path when it is a socket nothing listens on.
// Anything else at path (a live socket, a regular file) is an error.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: not removed", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: not known to be stale: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

func setSocketPerm(path string, perm SocketPerm) error {
	if perm.Group != "" {
		gid, err := lookupGroup(perm.Group)
		if err != nil {
			return err
		}
		// Allowed to a process that is a member of the group (systemd:
		// SupplementaryGroups=).
		if err := os.Lchown(path, -1, gid); err != nil {
			return fmt.Errorf("socket group %s: %w", perm.Group, err)
		}
	}
	mode := perm.Mode
	if mode == 0 {
		mode = DefaultSocketMode
	}
	if err := os.Chmod(path, mode.Perm()); err != nil {
		return fmt.Errorf("socket mode %#o: %w", mode.Perm(), err)
	}
	return nil
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("socket group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

// listenAddr is ln's address as a listen address: "host:port", or
// "unix:PATH" (what nginx's upstream server takes too).
func listenAddr(ln net.Listener) string {
	if a, ok := ln.Addr().(*net.UnixAddr); ok {
		return UnixPrefix + a.Name
	}
	return ln.Addr().String()
}

// socketMode parses an octal permission flag value ("0660", "660").
type socketMode fs.FileMode

func (m *socketMode) String() string { return fmt.Sprintf("%#o", fs.FileMode(*m).Perm()) }

func (m *socketMode) Set(s string) error {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o777 || v == 0 {
		return fmt.Errorf("socket mode %q: want octal permission bits, e.g. 0660", s)
	}
	*m = socketMode(v)
	return nil
}
