package transport_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.nanomsg.org/mangos/v3/protocol/xbus"
	mtransport "go.nanomsg.org/mangos/v3/transport"
	stocktcp "go.nanomsg.org/mangos/v3/transport/tcp"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/nanobus/transport"
	"github.com/terminator-gw/terminator/wire"
)

// Importing mangos' stock tcp transport registered it for "tcp" over ours:
// take "tcp" back, and give the stock one the scheme "stocktcp", so that a
// stock mangos BUS socket and a nanobus node can meet in one process, each
// with its own framing code.
func init() {
	mtransport.RegisterTransport(transport.TCP)
	mtransport.RegisterTransport(renamed{stocktcp.Transport})
}

type renamed struct{ mtransport.Transport }

func (renamed) Scheme() string { return "stocktcp" }

func (r renamed) NewDialer(url string, s mangos.Socket) (mtransport.Dialer, error) {
	return r.Transport.NewDialer("tcp"+strings.TrimPrefix(url, "stocktcp"), s)
}

func (r renamed) NewListener(url string, s mangos.Socket) (mtransport.Listener, error) {
	return r.Transport.NewListener("tcp"+strings.TrimPrefix(url, "stocktcp"), s)
}

// stockRecv receives the next non-empty message: our dialers open with an
// empty hello frame, which a stock socket passes on.
func stockRecv(t *testing.T, s mangos.Socket) []byte {
	t.Helper()
	for {
		b, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			return b
		}
	}
}

// A stock mangos v3 BUS socket calls a nanobus node and serves a nanobus
// caller: the bytes on the wire stay standard SP over TCP.
func TestStockMangosPeer(t *testing.T) {
	svc := nanobustest.NewNode(t, nanobus.Config{Service: "echo"})
	if err := svc.Handle("echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Body: append([]byte("echo: "), req.Body...)}, nil
	}); err != nil {
		t.Fatal(err)
	}

	stock, err := xbus.NewSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer stock.Close()
	_ = stock.SetOption(mangos.OptionRecvDeadline, 10*time.Second)
	l, err := stock.NewListener("stocktcp://127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	stockAddr := l.Address() // "tcp://127.0.0.1:port": nanobus dials it with its own transport
	out, err := xbus.NewSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Dial("stocktcp" + strings.TrimPrefix(svc.Addr(), "tcp")); err != nil {
		t.Fatal(err)
	}

	// Stock caller -> nanobus service: the reply comes back on the
	// connection the request came in on.
	req := wire.Request{ID: wire.ID{Node: 7, Seq: 1}, Deadline: time.Now().Add(5 * time.Second).UnixNano(),
		From: []byte(stockAddr), Service: []byte("echo"), Route: []byte("echo"), Body: []byte("from stock")}
	frame, err := wire.AppendRequest(nil, &req)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Send(frame); err != nil {
		t.Fatal(err)
	}
	var rep wire.Reply
	_ = out.SetOption(mangos.OptionRecvDeadline, 10*time.Second)
	if err := wire.DecodeReply(stockRecv(t, out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ID != req.ID || rep.Status != 200 || string(rep.Body) != "echo: from stock" {
		t.Fatalf("reply %+v %q", rep, rep.Body)
	}

	// nanobus caller -> stock service.
	caller := nanobustest.NewNode(t, nanobus.Config{})
	caller.AddPeer(nanobus.Peer{Service: "stock", Addr: stockAddr})
	nanobustest.Eventually(t, "the caller connected to the stock socket", func() bool {
		in := caller.Instances("stock")
		return len(in) == 1 && in[0].Ready
	})
	type result struct {
		resp *nanobus.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := caller.Call(context.Background(), "stock", "upper", []byte("hi"))
		done <- result{resp, err}
	}()
	var got wire.Request
	if err := wire.DecodeRequest(stockRecv(t, stock), &got); err != nil {
		t.Fatal(err)
	}
	// The stock socket answers on its pipes, of which the caller's
	// connection is the only one.
	reply, _ := wire.AppendReply(nil, &wire.Reply{ID: got.ID, Status: 200, Body: bytes.ToUpper(got.Body)})
	if err := stock.Send(reply); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string(r.resp.Body) != "HI" {
		t.Fatalf("call to the stock service: %v %+v", r.err, r.resp)
	}
	r.resp.Release()
}

// rawPeer connects to addr and does the SP handshake as a BUS peer, then
// sends nothing on its own: a peer misbehaving on purpose.
func rawPeer(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(addr, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := [8]byte{0, 'S', 'P', 0}
	binary.BigEndian.PutUint16(h[4:], mangos.ProtoBus)
	if _, err := c.Write(h[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByPeer waits (10s at most) until the node closes c.
func closedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the node kept the connection")
	}
}

func frameHeader(size uint64) []byte { return binary.BigEndian.AppendUint64(nil, size) }

func TestLimits(t *testing.T) {
	limits := nanobus.Limits{FrameTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
		MaxConns: 4, MaxBuffered: 100 << 10}

	t.Run("a frame that stalls is cut", func(t *testing.T) {
		svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Limits: limits})
		c := rawPeer(t, svc.Addr())
		c.Write(frameHeader(0)) // hello: a member, not idle
		c.Write(append(frameHeader(1000), make([]byte, 10)...))
		closedByPeer(t, c)
		nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().FrameTimeouts == 1 })
	})

	t.Run("a connection that never sends is closed; a quiet member is kept", func(t *testing.T) {
		svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Limits: limits})
		if err := svc.Handle("ping", func(context.Context, *nanobus.Request) (nanobus.Reply, error) { return nanobus.Reply{}, nil }); err != nil {
			t.Fatal(err)
		}
		caller := nanobustest.NewNode(t, nanobus.Config{})
		nanobustest.Connect(t, caller, svc) // says hello, then nothing
		c := rawPeer(t, svc.Addr())         // after the caller: its probation ends later
		closedByPeer(t, c)
		if s := svc.Stats(); s.IdleClosed != 1 || !caller.Instances("s")[0].Ready {
			t.Fatalf("idle closed %d, caller ready %v", s.IdleClosed, caller.Instances("s")[0].Ready)
		}
		resp, err := caller.Call(context.Background(), "s", "ping", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
	})

	t.Run("connections over the cap are refused", func(t *testing.T) {
		svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Limits: limits})
		for range limits.MaxConns {
			c := rawPeer(t, svc.Addr())
			c.Write(frameHeader(0))
		}
		c, err := net.Dial("tcp", strings.TrimPrefix(svc.Addr(), "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		closedByPeer(t, c)
		nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().ConnsRefused == 1 })
	})

	t.Run("bytes held for unfinished frames are bounded", func(t *testing.T) {
		svc := nanobustest.NewNode(t, nanobus.Config{Service: "s", Limits: limits})
		if err := svc.Handle("size", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			return nanobus.Reply{Body: []byte{byte(len(req.Body) >> 10)}}, nil
		}); err != nil {
			t.Fatal(err)
		}
		c := rawPeer(t, svc.Addr())
		c.Write(frameHeader(0))
		c.Write(append(frameHeader(200<<10), make([]byte, 200<<10)...)) // two 64 KiB chunks held: over 100 KiB
		closedByPeer(t, c)
		nanobustest.Eventually(t, "counted", func() bool { return svc.Stats().BufferRefused == 1 })
		// What the refused frame held is given back: a 70 KiB call fits.
		caller := nanobustest.NewNode(t, nanobus.Config{})
		nanobustest.Connect(t, caller, svc)
		resp, err := caller.Call(context.Background(), "s", "size", make([]byte, 70<<10))
		if err != nil || len(resp.Body) != 1 || resp.Body[0] != 70 {
			t.Fatalf("70 KiB call after the refusal: %v", err)
		}
		resp.Release()
	})
}
