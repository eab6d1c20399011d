package nanobus_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"go.nanomsg.org/mangos/v3"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/wire"
)

// Mixed versions interoperate: during a rollout, nodes of protocol 1 (the
// wire of before cancels, events and streams) and of protocol 2 talk, in
// both directions, each knowing what the other speaks. A protocol 1 node is
// played two ways: a node built to speak only protocol 1, and a bare BUS
// socket that writes and checks frames exactly as protocol 1 did.

// recvFrame reads one frame off a raw socket, or fails within 10 seconds.
func recvFrame(t *testing.T, s mangos.Socket) []byte {
	t.Helper()
	must(t, s.SetOption(mangos.OptionRecvDeadline, 10*time.Second))
	b, err := s.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return b
}

// protocol1 checks that frame is one a protocol 1 decoder accepts: no flag
// bit but those protocol 1 knew (request: ghost, timing, labels; others
// none), so no extension area, and a kind it knew.
func protocol1(t *testing.T, frame []byte) {
	t.Helper()
	k, err := wire.KindOf(frame)
	if err != nil || k.Protocol() != 1 {
		t.Fatalf("kind %v (%v): not a protocol 1 frame", k, err)
	}
	known := uint16(0)
	if k == wire.KindRequest {
		known = wire.FlagGhost | wire.FlagTiming | 0x4
	}
	if flags := binary.BigEndian.Uint16(frame[2:]); flags&^known != 0 {
		t.Fatalf("%v with flags %#x: a protocol 1 node refuses it", k, flags)
	}
}

// (a) An old asker calls a new service.
func TestOldAskerNewService(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	old := newNode(t, nanobus.WithProtocol(nanobus.Config{}, 1))
	connect(t, old, svc)
	resp, err := old.Call(nanobustest.Context(t, 10*time.Second), "echo", "echo", []byte("from 1"))
	must(t, err)
	if string(resp.Body) != "from 1" {
		t.Fatalf("body %q", resp.Body)
	}
	resp.Release()

	// The same, byte for byte as protocol 1 wrote a request: the reply is
	// one protocol 1 decodes.
	raw := rawSocket(t, svc.Addr())
	req := &wire.Request{ID: wire.ID{Node: 77, Seq: 1}, From: []byte("tcp://127.0.0.1:1"), Service: []byte("echo"),
		Route: []byte("echo"), Flags: wire.FlagTiming, Labels: []byte("+a"), Body: []byte("raw 1")}
	frame, err := wire.AppendRequest(nil, req)
	must(t, err)
	protocol1(t, frame)
	sendRaw(t, raw, frame)
	got := recvFrame(t, raw)
	protocol1(t, got)
	var rep wire.Reply
	must(t, wire.DecodeReply(got, &rep))
	if rep.ID != req.ID || rep.Status != 200 || string(rep.Body) != "raw 1" || rep.Ext.Len() != 0 {
		t.Fatalf("reply %+v", rep)
	}
	if s := svc.Stats(); s.UnknownKinds != 0 || s.Malformed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// (b) A new asker calls an old service, and never sends it a kind of
// protocol 2: it knows from the peer's announcement what it speaks.
func TestNewAskerOldService(t *testing.T) {
	old := newNode(t, nanobus.WithProtocol(nanobus.Config{Service: "old"}, 1))
	must(t, old.Handle("echo", echo))
	if p := old.Peer().Protocol; p != 1 {
		t.Fatalf("old node announces protocol %d", p)
	}
	current := newNode(t, nanobus.Config{Service: "new"})
	must(t, current.Handle("echo", echo))
	if p := current.Peer().Protocol; p != wire.ProtocolVersion {
		t.Fatalf("new node announces protocol %d", p)
	}
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, old)
	connect(t, caller, current)
	for _, svc := range []string{"old", "new"} {
		resp, err := caller.Call(nanobustest.Context(t, 10*time.Second), svc, "echo", []byte(svc))
		must(t, err)
		if string(resp.Body) != svc {
			t.Fatalf("%s: body %q", svc, resp.Body)
		}
		resp.Release()
	}
	for _, k := range []wire.Kind{wire.KindCancel, wire.KindEvent, wire.KindChunk} {
		if nanobus.Speaks(caller, "old", old.Addr(), k) {
			t.Errorf("the caller would send a %v to a protocol 1 node", k)
		}
		if !nanobus.Speaks(caller, "new", current.Addr(), k) {
			t.Errorf("the caller would not send a %v to a protocol 2 node", k)
		}
	}
	if !nanobus.Speaks(caller, "old", old.Addr(), wire.KindRequest) {
		t.Error("the caller would not send a request to a protocol 1 node")
	}
	if s := old.Stats(); s.UnknownKinds != 0 || s.Cancels != 0 || s.Malformed != 0 {
		t.Fatalf("the old node got what it does not speak: %+v", s)
	}

	// A bare socket as a protocol 1 instance, announced without a protocol
	// (a registration of before): what it gets is protocol 1 exactly, and
	// its protocol 1 reply completes the call.
	raw := rawInstance(t, caller, "raw")
	if nanobus.Speaks(caller, "raw", caller.Instances("raw")[0].Addr, wire.KindCancel) {
		t.Error("an instance that announced no protocol is sent cancels")
	}
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := caller.Call(nanobustest.Context(t, 10*time.Second), "raw", "echo", []byte("hi"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Release()
		done <- result{body: string(resp.Body)}
	}()
	frame := recvFrame(t, raw)
	protocol1(t, frame)
	var req wire.Request
	must(t, wire.DecodeRequest(frame, &req))
	if out, _ := wire.AppendRequest(nil, &req); !bytes.Equal(out, frame) {
		t.Fatal("the request is not in protocol 1's canonical form")
	}
	reply, err := wire.AppendReply(nil, &wire.Reply{ID: req.ID, Status: 200, Body: []byte("old hi")})
	must(t, err)
	sendRaw(t, raw, reply)
	if r := receive(t, done); r.err != nil || r.body != "old hi" {
		t.Fatalf("call: %+v", r)
	}
}

// (c) A request from a newer node, with flag bits and an extension area
// this node does not know, is served as if they were not there.
func TestNewerRequestIsServed(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	raw := rawSocket(t, svc.Addr())
	req := &wire.Request{ID: wire.ID{Node: 78, Seq: 2}, From: []byte("tcp://127.0.0.1:1"), Route: []byte("echo"), Body: []byte("newer")}
	req.Ext.Add(0xbeef, []byte("a field of protocol 9"))
	frame, err := wire.AppendRequest(nil, req)
	must(t, err)
	frame[2] |= 0x40 // and a flag bit no one has defined
	sendRaw(t, raw, frame)
	var rep wire.Reply
	must(t, wire.DecodeReply(recvFrame(t, raw), &rep))
	if rep.ID != req.ID || rep.Status != 200 || string(rep.Body) != "newer" {
		t.Fatalf("reply %+v", rep)
	}
}

// (d) A frame of a kind the node does not know is answered at once with an
// error frame, not met with silence; so is a request that does not decode
// (its prefix does); a cancel for a call not running is counted, not
// answered.
func TestUnknownKindAndMalformedAreAnswered(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	old := newNode(t, nanobus.WithProtocol(nanobus.Config{Service: "old"}, 1))
	id := wire.ID{Node: 79, Seq: 3}
	cancel, err := wire.AppendCancel(nil, &wire.Cancel{ID: id})
	must(t, err)
	unknown := bytes.Clone(cancel)
	unknown[1] = 200
	good, err := wire.AppendRequest(nil, &wire.Request{ID: id, From: []byte("tcp://127.0.0.1:1"), Route: []byte("echo"), Body: []byte("ok")})
	must(t, err)

	answered := func(t *testing.T, n *nanobus.Node, frame []byte, want wire.Code) {
		t.Helper()
		raw := rawSocket(t, n.Addr())
		sendRaw(t, raw, frame)
		var e wire.Error
		must(t, wire.DecodeError(recvFrame(t, raw), &e))
		if e.ID != id || e.Code != want {
			t.Fatalf("answer %v %v %q, want %v", e.ID, e.Code, e.Message, want)
		}
	}
	answered(t, svc, unknown, wire.CodeUnknownKind)
	answered(t, old, cancel, wire.CodeUnknownKind) // a kind past protocol 1
	answered(t, svc, good[:len(good)-1], wire.CodeMalformed)
	ev, err := wire.AppendEvent(nil, &wire.Event{ID: id, Topic: []byte("t")})
	must(t, err)
	answered(t, svc, ev, wire.CodeNoRoute) // known, but no node handles events yet
	if s, o := svc.Stats(), old.Stats(); s.UnknownKinds != 1 || s.Malformed != 1 || o.UnknownKinds != 1 {
		t.Fatalf("counted: new %d unknown, %d malformed; old %d unknown", s.UnknownKinds, s.Malformed, o.UnknownKinds)
	}

	// A cancel for no running call: counted, and no answer (the next frame
	// on the connection is the reply to the request sent after it).
	raw := rawSocket(t, svc.Addr())
	sendRaw(t, raw, cancel)
	sendRaw(t, raw, good)
	if k, _ := wire.KindOf(recvFrame(t, raw)); k != wire.KindReply {
		t.Fatalf("first answer after a cancel: %v, want the reply", k)
	}
	if c := svc.Stats().Cancels; c != 1 {
		t.Fatalf("cancels counted: %d", c)
	}
}

// The caller's side of (d): an instance that did not understand its request
// answers with an error frame, and the call fails at once with a 502-class
// error, long before its deadline.
func TestNotUnderstoodIsA502AtOnce(t *testing.T) {
	caller := newNode(t, nanobus.Config{})
	raw := rawInstance(t, caller, "raw")
	for _, code := range []wire.Code{wire.CodeUnknownKind, wire.CodeMalformed} {
		done := make(chan error, 1)
		go func() {
			resp, err := caller.Call(nanobustest.Context(t, time.Minute), "raw", "echo", nil)
			resp.Release()
			done <- err
		}()
		var req wire.Request
		must(t, wire.DecodeRequest(recvFrame(t, raw), &req))
		e, err := wire.AppendError(nil, &wire.Error{ID: req.ID, Code: code, Message: []byte("not understood")})
		must(t, err)
		sendRaw(t, raw, e)
		err = receive(t, done)
		if !errors.Is(err, nanobus.ErrMalformed) || nanobus.StatusOf(err).Code != 502 {
			t.Fatalf("%v: call failed with %v (status %d), want ErrMalformed, 502", code, err, nanobus.StatusOf(err).Code)
		}
	}
}
