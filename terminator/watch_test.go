package terminator

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func closedChan(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// The context keeps its channel from request to request until it is
// closed, and closes Done at its deadline on the watcher's tick.
func TestReqContextDeadlineAndReuse(t *testing.T) {
	w := newWatcher(time.Hour) // ticks driven by hand
	c := newReqContext()
	c.prepare(time.Now().Add(time.Hour), -1)
	first := c.Done()
	w.park(&c, time.Now())
	w.check(time.Now())
	w.unpark(&c)
	if closedChan(c.Done()) || c.Err() != nil {
		t.Fatalf("live context: closed %v, err %v", closedChan(c.Done()), c.Err())
	}
	c.prepare(time.Now().Add(-time.Millisecond), -1)
	if c.Done() != first {
		t.Fatal("an open channel was replaced")
	}
	if c.Err() != context.DeadlineExceeded {
		t.Fatalf("past its deadline: err %v", c.Err())
	}
	w.park(&c, time.Now())
	w.check(time.Now())
	if !closedChan(c.Done()) || c.Err() != context.DeadlineExceeded {
		t.Fatalf("after the tick past the deadline: closed %v, err %v", closedChan(c.Done()), c.Err())
	}
	w.unpark(&c)
	c.prepare(time.Now().Add(time.Hour), -1)
	if c.Done() == first || closedChan(c.Done()) || c.Err() != nil {
		t.Fatalf("after a close: a new open channel wanted; closed %v, err %v", closedChan(c.Done()), c.Err())
	}
	if n := w.parkedNow(); n != 0 {
		t.Fatalf("%d parked", n)
	}
}

// socketPair is a loopback TCP connection: the server side's fd, and the
// client side.
func socketPair(t *testing.T) (net.Conn, int, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	fd := rawFD(server)
	if fd < 0 {
		t.Fatal("no fd")
	}
	return server, fd, client.(*net.TCPConn)
}

// tickUntil runs the watcher's tick by hand until cond holds, for at most
// two seconds (the bytes or the FIN cross loopback asynchronously).
func tickUntil(t *testing.T, w *watcher, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		w.check(time.Now())
	}
}

// The watcher's verdicts on one socket: an idle client stays, pipelined
// bytes stay (unread), and a close, a reset or a half close (the client
// shut its sending side, as nginx's abort does not, but a client that is
// done may) is a client gone.
func TestWatcherVerdicts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("client sockets are polled on Linux only")
	}
	leave := map[string]func(*net.TCPConn){
		"close":      func(c *net.TCPConn) { c.Close() },
		"reset":      func(c *net.TCPConn) { c.SetLinger(0); c.Close() },
		"half close": func(c *net.TCPConn) { c.CloseWrite() },
		"data then close": func(c *net.TCPConn) {
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			c.Close()
		},
	}
	for name, how := range leave {
		t.Run(name, func(t *testing.T) {
			w := newWatcher(time.Millisecond)
			server, fd, client := socketPair(t)
			c := newReqContext()
			c.prepare(time.Now().Add(time.Hour), fd)
			w.park(&c, time.Now().Add(-time.Second))
			defer w.unpark(&c)

			w.check(time.Now())
			if c.Err() != nil || w.polled.Load() != 1 {
				t.Fatalf("idle client: err %v, polled %d", c.Err(), w.polled.Load())
			}
			client.Write([]byte("GET /next HTTP/1.1\r\n\r\n"))
			tickUntil(t, w, "the pipelined bytes", func() bool { return w.pipelined.Load() > 0 })
			if c.Err() != nil {
				t.Fatalf("pipelined bytes taken for a client gone: %v", c.Err())
			}
			how(client)
			tickUntil(t, w, "the client gone", func() bool { return c.cancelled() })
			if !closedChan(c.Done()) || c.Err() != context.Canceled {
				t.Fatalf("closed %v, err %v", closedChan(c.Done()), c.Err())
			}
			if name != "reset" { // a reset may discard what was unread
				server.SetReadDeadline(time.Now().Add(time.Second))
				b := make([]byte, 64)
				if n, _ := server.Read(b); !strings.HasPrefix(string(b[:n]), "GET /next HTTP/1.1\r\n\r\n") {
					t.Fatalf("the peek took bytes: read %q", b[:n])
				}
			}
		})
	}
}

// A registration the watcher saw but that ended (and was replaced by
// another request of the same exchange) before its verdict is not
// cancelled.
func TestWatcherStaleVerdict(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("client sockets are polled on Linux only")
	}
	w := newWatcher(time.Millisecond)
	_, fd, client := socketPair(t)
	client.Close()
	tickUntil(t, w, "the FIN to arrive", func() bool {
		gone := []bool{false}
		w.probe.probe([]int32{int32(fd)}, gone)
		return gone[0]
	})
	c := newReqContext()
	c.prepare(time.Now().Add(time.Hour), fd)
	w.park(&c, time.Now())
	stale := parkedRef{&c, c.gen}
	w.unpark(&c)
	c.prepare(time.Now().Add(time.Hour), fd)
	w.park(&c, time.Now()) // younger than a quarter tick: check would not poll it
	defer w.unpark(&c)
	w.batch = append(w.batch, stale)
	w.fds = append(w.fds, int32(fd))
	w.flush()
	if c.Err() != nil || w.found.Load() != 0 {
		t.Fatalf("a later request cancelled by a stale verdict: %v", c.Err())
	}
}

// More parked requests than one poll takes are polled in several, and a
// list that shrinks while the watcher polls (the lock is not held over
// poll) is walked safely.
func TestWatcherBatches(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("client sockets are polled on Linux only")
	}
	w := newWatcher(time.Millisecond)
	_, fd, _ := socketPair(t)
	cs := make([]reqContext, maxPollBatch*parkShards+10)
	old := time.Now().Add(-time.Second)
	for i := range cs {
		cs[i] = newReqContext()
		cs[i].shard = 0 // all in one shard: the batch fills mid-shard
		cs[i].prepare(time.Now().Add(time.Hour), fd)
		w.park(&cs[i], old)
	}
	done := make(chan struct{})
	go func() { // requests ending meanwhile
		defer close(done)
		for i := len(cs) - 1; i >= len(cs)/2; i-- {
			w.unpark(&cs[i])
		}
	}()
	w.check(time.Now())
	<-done
	w.check(time.Now())
	if got := w.polled.Load(); got < uint64(len(cs)/2) {
		t.Fatalf("polled %d sockets, want at least %d", got, len(cs)/2)
	}
	for i := range cs[:len(cs)/2] {
		if cs[i].Err() != nil {
			t.Fatalf("request %d: %v (its client is there)", i, cs[i].Err())
		}
		w.unpark(&cs[i])
	}
}
