package transport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/xbus"
	mtransport "go.nanomsg.org/mangos/v3/transport"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/nanobus/transport"
	"github.com/terminator-gw/terminator/wire"
)

// A connection that said hello and nothing since keeps no slot from a
// newcomer: at MaxConns, the one silent the longest (past IdleTimeout) is
// closed to make room, and counted; a member carrying calls is kept.
func TestSilentMembersMakeRoom(t *testing.T) {
	limits := nanobus.Limits{IdleTimeout: 200 * time.Millisecond, MaxConns: 4}
	svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Limits: limits})
	if err := svc.Handle("ping", func(context.Context, *nanobus.Request) (nanobus.Reply, error) { return nanobus.Reply{}, nil }); err != nil {
		t.Fatal(err)
	}

	// A member that keeps calling, all through the attack.
	busy := nanobustest.NewNode(t, nanobus.Config{})
	nanobustest.Connect(t, busy, svc)
	stop := make(chan struct{})
	var calls, failed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := busy.Call(context.Background(), "s", "ping", nil)
			if err != nil {
				failed.Add(1)
				continue
			}
			resp.Release()
			calls.Add(1)
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	// Three members that say hello and nothing more fill the cap.
	silent := make([]net.Conn, 3)
	for i := range silent {
		silent[i] = rawPeer(t, svc.Addr())
		silent[i].Write(frameHeader(0))
	}

	// Legitimately idle members are not closed while there is room: a
	// connection that never says hello starts its probation after the
	// hellos, so when the probation closes it the silent ones have been
	// silent past IdleTimeout, and the cap is not reached.
	svcIdle := nanobustest.NewNode(t, nanobus.Config{Service: "quiet", Limits: limits})
	quiet := rawPeer(t, svcIdle.Addr())
	quiet.Write(frameHeader(0))
	for range 2 { // twice the idle timeout
		closedByPeer(t, rawPeer(t, svcIdle.Addr()))
	}
	if got := svcIdle.Stats().IdleClosed; got != 2 {
		t.Fatalf("idle closed %d, want only the 2 that never said hello", got)
	}

	// A newcomer gets in: the silent member that said hello first makes
	// room (the newcomer redials while none is silent long enough yet).
	newcomer := nanobustest.NewNode(t, nanobus.Config{})
	nanobustest.Connect(t, newcomer, svc)
	closedByPeer(t, silent[0])
	resp, err := newcomer.Call(context.Background(), "s", "ping", nil)
	if err != nil {
		t.Fatalf("the newcomer's call: %v", err)
	}
	resp.Release()
	if s := svc.Stats(); s.IdleClosed != 1 {
		t.Fatalf("idle closed %d, want 1: one newcomer, one silent member closed", s.IdleClosed)
	}
	nanobustest.Eventually(t, "the busy member kept calling", func() bool { return calls.Load() > 10 })
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d calls of the busy member failed", f)
	}

	// The quiet member of the node with room is still there: it answers a
	// request frame's arrival by counting it, not by closing.
	req, _ := wire.AppendRequest(nil, &wire.Request{ID: wire.ID{Node: 1, Seq: 1}, Deadline: time.Now().Add(time.Second).UnixNano(),
		From: []byte("tcp://127.0.0.1:1"), Service: []byte("quiet"), Route: []byte("none"), Body: nil})
	quiet.Write(append(frameHeader(uint64(len(req))), req...))
	nanobustest.Eventually(t, "the quiet member's request arrived", func() bool { return svcIdle.Stats().Requests == 1 })
}

// Connections still in their handshake count against MaxConns too: one
// that has said nothing past IdleTimeout makes room for a newcomer as a
// silent member does, rather than holding its slot until the handshake
// times out.
func TestSilentHandshakesMakeRoom(t *testing.T) {
	limits := nanobus.Limits{IdleTimeout: 200 * time.Millisecond, MaxConns: 2}
	svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Limits: limits})
	for range limits.MaxConns {
		c, err := net.Dial("tcp", strings.TrimPrefix(svc.Addr(), "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	newcomer := nanobustest.NewNode(t, nanobus.Config{})
	nanobustest.Connect(t, newcomer, svc)
	if s := svc.Stats(); s.IdleClosed != 1 || s.BadHeader != 0 {
		t.Fatalf("idle closed %d, bad headers %d: want one silent handshake closed to make room, not counted as a bad header",
			s.IdleClosed, s.BadHeader)
	}
}

// Frames whose length is over the maximum close the connection, counted.
func TestFrameTooLong(t *testing.T) {
	for _, size := range []uint64{1 << 60, wire.MaxFrameSize + 1} {
		svc := nanobustest.NewNode(t, nanobus.Config{Service: "s"})
		c := rawPeer(t, svc.Addr())
		c.Write(frameHeader(0))
		c.Write(frameHeader(size))
		closedByPeer(t, c)
		nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().TooLong == 1 })
	}
}

// A connection whose SP header is wrong is closed, counted.
func TestBadHeader(t *testing.T) {
	pair := [8]byte{0, 'S', 'P', 0}
	binary.BigEndian.PutUint16(pair[4:], mangos.ProtoPair)
	for name, h := range map[string][]byte{
		"garbage":        []byte("GET / HTTP/1.1\r\n\r\n"),
		"wrong version":  {0, 'S', 'P', 1, 0x70, 0, 0, 0},
		"wrong protocol": pair[:],
	} {
		t.Run(name, func(t *testing.T) {
			log := &nanobustest.Logs{}
			svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Logger: slog.New(slog.NewTextHandler(log, nil))})
			c, err := net.Dial("tcp", strings.TrimPrefix(svc.Addr(), "tcp://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(h)
			closedByPeer(t, c)
			nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().BadHeader == 1 })
			nanobustest.Eventually(t, "logged with the peer's address", func() bool {
				return strings.Contains(log.String(), "bad-header") && strings.Contains(log.String(), c.LocalAddr().String())
			})
		})
	}
}

// Refused TLS handshakes are counted and logged with their cause and the
// peer's address.
func TestTLSRefused(t *testing.T) {
	ca := nanobustest.NewCA(t)
	other := nanobustest.NewCA(t)
	for name, tc := range map[string]struct {
		cfg   *tls.Config // nil: plain TCP
		cause string
	}{
		"no certificate": {&tls.Config{RootCAs: ca.Pool}, "certificate"},
		"foreign CA":     {&tls.Config{Certificates: []tls.Certificate{other.Issue(t, "intruder", time.Hour)}, RootCAs: ca.Pool}, "unknown authority"},
		"expired":        {&tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "late", -time.Minute)}, RootCAs: ca.Pool}, "expired"},
		"plain TCP":      {nil, "TLS handshake"},
	} {
		t.Run(name, func(t *testing.T) {
			log := &nanobustest.Logs{}
			svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Listen: "tls+tcp://127.0.0.1:0",
				TLS: ca.Config(t, "svc"), Logger: slog.New(slog.NewTextHandler(log, nil))})
			addr := strings.TrimPrefix(svc.Addr(), "tls+tcp://")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			local := c.LocalAddr().String()
			if tc.cfg == nil {
				h := [8]byte{0, 'S', 'P', 0}
				binary.BigEndian.PutUint16(h[4:], mangos.ProtoBus)
				c.Write(h[:])
			} else {
				cfg := tc.cfg.Clone()
				cfg.MinVersion = tls.VersionTLS13
				cfg.ServerName = "127.0.0.1"
				tc := tls.Client(c, cfg)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				// TLS 1.3: the client may finish before the server
				// checks its certificate; the server closes then.
				if err := tc.Handshake(); err == nil {
					_, _ = io.Copy(io.Discard, tc)
				}
			}
			closedByPeer(t, c)
			nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().TLSRefused == 1 })
			nanobustest.Eventually(t, "logged with the cause and the peer's address", func() bool {
				s := log.String()
				return strings.Contains(s, tc.cause) && strings.Contains(s, local) && strings.Contains(s, "tls")
			})
		})
	}
}

// A large frame takes its whole declared length from MaxBuffered before any
// of it is read: over the budget it is refused at once, not after its bytes
// arrive.
func TestBufferedReservedUpFront(t *testing.T) {
	svc := nanobustest.NewNode(t, nanobus.Config{Service: "s",
		Limits: nanobus.Limits{FrameTimeout: time.Minute, MaxBuffered: 100 << 10}})
	c := rawPeer(t, svc.Addr())
	c.Write(frameHeader(0))
	c.Write(frameHeader(200 << 10)) // no body: the length alone is over
	closedByPeer(t, c)
	nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().BufferRefused == 1 })
}

// Reading one 16 MiB frame allocates about 16 MiB, not a buffer grown step
// by step.
func TestLargeFrameAllocation(t *testing.T) {
	svc := nanobustest.NewNode(t, nanobus.Config{Service: "s"})
	c := rawPeer(t, svc.Addr())
	c.Write(frameHeader(0))
	frame := append(frameHeader(wire.MaxFrameSize), make([]byte, wire.MaxFrameSize)...) // zeros: malformed, dropped
	nanobustest.Eventually(t, "hello arrived", func() bool { return true })
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	nanobustest.Eventually(t, "the frame was read", func() bool { return svc.Stats().Malformed == 1 })
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(wire.MaxFrameSize)*3/2; got > limit {
		t.Fatalf("reading a %d-byte frame allocated %d bytes, want under %d", wire.MaxFrameSize, got, limit)
	}
}

// The SP transport contract: Accept before Listen and Listen after Close
// fail with ErrClosed instead of blocking or listening; a wrongly typed
// option value is ErrBadValue and leaves the option as it was; an unknown
// option is ErrBadOption.
func TestTransportContract(t *testing.T) {
	sock, err := xbus.NewSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	newListener := func() mtransport.Listener {
		l, err := transport.TCP.NewListener("tcp://127.0.0.1:0", sock)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	t.Run("accept before listen", func(t *testing.T) {
		l := newListener()
		defer l.Close()
		done := make(chan error, 1)
		go func() { _, err := l.Accept(); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, mangos.ErrClosed) {
				t.Fatalf("Accept before Listen: %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Accept before Listen blocked")
		}
	})

	t.Run("listen after close", func(t *testing.T) {
		l := newListener()
		l.Close()
		if err := l.Listen(); !errors.Is(err, mangos.ErrClosed) {
			t.Fatalf("Listen after Close: %v, want ErrClosed", err)
		}
	})

	t.Run("option values", func(t *testing.T) {
		l, err := transport.TCP.NewListener("tcp://127.0.0.1:0", sock)
		if err != nil {
			t.Fatal(err)
		}
		d, err := transport.TCP.NewDialer("tcp://127.0.0.1:1", sock)
		if err != nil {
			t.Fatal(err)
		}
		valid := map[string]any{
			mangos.OptionTLSConfig:       &tls.Config{},
			mangos.OptionMaxRecvSize:     1234,
			transport.OptionWritten:      &atomic.Uint64{},
			transport.OptionFrameTimeout: time.Second,
			transport.OptionIdleTimeout:  time.Second,
			transport.OptionPeerTimeout:  time.Second,
			transport.OptionMaxConns:     7,
			transport.OptionMaxBuffered:  1 << 20,
			transport.OptionOnRefuse:     func(string, error) {},
			transport.OptionDeliver:      transport.Deliver(func(*mangos.Message, func([]byte) error, *atomic.Int64) bool { return false }),
		}
		for _, ep := range []interface {
			SetOption(string, any) error
			GetOption(string) (any, error)
		}{l, d} {
			for name, v := range valid {
				if err := ep.SetOption(name, v); err != nil {
					t.Fatalf("%s = %v: %v", name, v, err)
				}
				before, _ := ep.GetOption(name)
				for _, bad := range []any{"x", nil, struct{}{}, func(string) {}} {
					if err := ep.SetOption(name, bad); !errors.Is(err, mangos.ErrBadValue) {
						t.Errorf("%s = %#v: %v, want ErrBadValue", name, bad, err)
					}
				}
				if after, _ := ep.GetOption(name); after != before {
					t.Errorf("%s changed by refused values: %v, was %v", name, after, before)
				}
			}
			if err := ep.SetOption(mangos.OptionMaxRecvSize, -1); !errors.Is(err, mangos.ErrBadValue) {
				t.Errorf("negative max recv size: %v, want ErrBadValue", err)
			}
			if err := ep.SetOption("no-such-option", 1); !errors.Is(err, mangos.ErrBadOption) {
				t.Errorf("unknown option: %v, want ErrBadOption", err)
			}
		}
	})
}
