package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

// newer plays a node of a later protocol: it sets flag bits this package
// does not know and appends an extension area with tags it does not know.
func newer(t testing.TB, frame []byte) []byte {
	t.Helper()
	b := bytes.Clone(frame)
	flags := binary.BigEndian.Uint16(b[2:]) | 0x8000 | 0x4000 | 0x0100 // extension area, two unknown bits
	binary.BigEndian.PutUint16(b[2:], flags)
	b = binary.BigEndian.AppendUint16(b, 2)                          // two entries
	b = append(b, 0x12, 0x34, 0, 3, 'a', 'b', 'c', 0xff, 0xff, 0, 0) // (0x1234, "abc"), (0xffff, "")
	return b
}

func checkExt(t *testing.T, e *wire.Extensions) {
	t.Helper()
	if e.Len() != 2 {
		t.Fatalf("extensions: %d entries, want 2", e.Len())
	}
	if v, ok := e.Get(0x1234); !ok || string(v) != "abc" {
		t.Errorf("Get(0x1234) = %q %v", v, ok)
	}
	if v, ok := e.Get(0xffff); !ok || len(v) != 0 {
		t.Errorf("Get(0xffff) = %q %v", v, ok)
	}
	if _, ok := e.Get(1); ok {
		t.Error("Get(1) found a tag that is not there")
	}
}

// A frame from a newer node, with flags and an extension area this node
// does not know, still decodes: unknown flags are ignored, the area kept
// for whoever knows its tags, every known field as it was. This is what
// protocol 1's decoder refused (ErrFlags, then ErrTrailing).
func TestNewerFramesDecode(t *testing.T) {
	req := sampleRequest()
	req.Flags, req.Labels = wire.FlagTiming, []byte("+x")
	var r wire.Request
	if err := wire.DecodeRequest(newer(t, encodeRequest(t, req)), &r); err != nil {
		t.Fatal(err)
	}
	if r.Flags != wire.FlagTiming || string(r.Labels) != "+x" || string(r.Body) != string(req.Body) || string(r.Header.Get("accept")) != "application/json" {
		t.Fatalf("request decoded as flags %x labels %q body %q", r.Flags, r.Labels, r.Body)
	}
	checkExt(t, &r.Ext)

	rep, _ := wire.AppendReply(nil, sampleReply())
	var p wire.Reply
	if err := wire.DecodeReply(newer(t, rep), &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != 200 || string(p.Body) != `{"name":"Ann"}` {
		t.Fatalf("reply = %d %q", p.Status, p.Body)
	}
	checkExt(t, &p.Ext)

	errf, _ := wire.AppendError(nil, sampleError())
	var e wire.Error
	if err := wire.DecodeError(newer(t, errf), &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != wire.CodeBusy {
		t.Fatalf("error code %v", e.Code)
	}
	checkExt(t, &e.Ext)

	for _, f := range newKindFrames(t) {
		if err := f.decode(newer(t, f.frame)); err != nil {
			t.Errorf("%v from a newer node: %v", f.kind, err)
		}
	}

	// Still refused: bytes after the area, an empty area, an entry cut short.
	good := newer(t, rep)
	for name, bad := range map[string][]byte{
		"trailing":   append(bytes.Clone(good), 0),
		"empty area": append(bytes.Clone(rep[:2]), append([]byte{0x80, 0}, append(bytes.Clone(rep[4:]), 0, 0)...)...),
		"cut entry":  good[:len(good)-1],
	} {
		if err := wire.DecodeReply(bad, &p); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// Extensions round-trip through every encoder, and the flag is set exactly
// when there are some.
func TestExtensionsRoundTrip(t *testing.T) {
	req := sampleRequest()
	req.Ext.Add(7, []byte("seven"))
	frame := encodeRequest(t, req)
	if frame[2]&0x80 == 0 {
		t.Fatal("extension flag not set")
	}
	var r wire.Request
	if err := wire.DecodeRequest(frame, &r); err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Ext.Get(7); !ok || string(v) != "seven" || r.Flags != 0 {
		t.Fatalf("ext %q %v, flags %x", v, ok, r.Flags)
	}
	req.Ext.Reset()
	if frame := encodeRequest(t, req); frame[2] != 0 {
		t.Fatalf("flags %x after Reset", frame[2:4])
	}
	var big wire.Extensions
	for range wire.MaxExtensions + 1 {
		big.Add(1, nil)
	}
	if _, err := wire.AppendReply(nil, &wire.Reply{Status: 200, Ext: big}); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("too many extensions: %v", err)
	}
}

type kindFrame struct {
	kind   wire.Kind
	frame  []byte
	decode func([]byte) error
}

func newKindFrames(t testing.TB) []kindFrame {
	id := wire.ID{Node: 5, Seq: 6}
	cancel, err1 := wire.AppendCancel(nil, &wire.Cancel{ID: id})
	ev := &wire.Event{ID: id, Deadline: 99, Topic: []byte("profiles.changed"), Body: []byte("42")}
	ev.Header.Add("Content-Type", "text/plain")
	event, err2 := wire.AppendEvent(nil, ev)
	ack, err3 := wire.AppendEventAck(nil, &wire.EventAck{ID: id})
	ch := &wire.Chunk{ID: id, Status: 200, Body: []byte("data: 1\n\n")}
	ch.Header.Add("Content-Type", "text/event-stream")
	chunk, err4 := wire.AppendChunk(nil, ch)
	end, err5 := wire.AppendEnd(nil, &wire.End{ID: id, Chunks: 3})
	credit, err6 := wire.AppendCredit(nil, &wire.Credit{ID: id, Chunks: 8})
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		t.Fatal(err)
	}
	return []kindFrame{
		{wire.KindCancel, cancel, func(b []byte) error { return wire.DecodeCancel(b, new(wire.Cancel)) }},
		{wire.KindEvent, event, func(b []byte) error { return wire.DecodeEvent(b, new(wire.Event)) }},
		{wire.KindEventAck, ack, func(b []byte) error { return wire.DecodeEventAck(b, new(wire.EventAck)) }},
		{wire.KindChunk, chunk, func(b []byte) error { return wire.DecodeChunk(b, new(wire.Chunk)) }},
		{wire.KindEnd, end, func(b []byte) error { return wire.DecodeEnd(b, new(wire.End)) }},
		{wire.KindCredit, credit, func(b []byte) error { return wire.DecodeCredit(b, new(wire.Credit)) }},
	}
}

func TestNewKinds(t *testing.T) {
	for _, f := range newKindFrames(t) {
		want := 2
		if f.kind == wire.KindCredit {
			want = 3
		}
		if k, err := wire.KindOf(f.frame); err != nil || k != f.kind || k.Protocol() != want {
			t.Errorf("KindOf = %v %v, protocol %d; want %v of protocol %d", k, err, k.Protocol(), f.kind, want)
		}
		if err := f.decode(f.frame); err != nil {
			t.Errorf("%v: %v", f.kind, err)
		}
		if err := f.decode(f.frame[:len(f.frame)-1]); err == nil && len(f.frame) > 20 {
			t.Errorf("%v: a truncated frame decoded", f.kind)
		}
		if err := f.decode(append(bytes.Clone(f.frame), 0)); !errors.Is(err, wire.ErrTrailing) {
			t.Errorf("%v with a trailing byte: %v", f.kind, err)
		}
	}
	// Decoded values.
	frames := newKindFrames(t)
	var ev wire.Event
	if err := wire.DecodeEvent(frames[1].frame, &ev); err != nil || ev.Deadline != 99 || string(ev.Topic) != "profiles.changed" ||
		string(ev.Body) != "42" || string(ev.Header.Get("content-type")) != "text/plain" {
		t.Errorf("event = %+v, %v", ev, err)
	}
	var ch wire.Chunk
	if err := wire.DecodeChunk(frames[3].frame, &ch); err != nil || ch.Index != 0 || ch.Status != 200 || string(ch.Body) != "data: 1\n\n" {
		t.Errorf("chunk = %+v, %v", ch, err)
	}
	var end wire.End
	if err := wire.DecodeEnd(frames[4].frame, &end); err != nil || end.Chunks != 3 || end.Status != 0 || end.ID != (wire.ID{Node: 5, Seq: 6}) {
		t.Errorf("end = %+v, %v", end, err)
	}
	// Field rules.
	if _, err := wire.AppendChunk(nil, &wire.Chunk{Index: 1, Status: 200}); !errors.Is(err, wire.ErrField) {
		t.Errorf("a later chunk with a status: %v", err)
	}
	if _, err := wire.AppendChunk(nil, &wire.Chunk{Index: 0}); !errors.Is(err, wire.ErrField) {
		t.Errorf("chunk 0 without a status: %v", err)
	}
	if _, err := wire.AppendEvent(nil, &wire.Event{}); !errors.Is(err, wire.ErrField) {
		t.Errorf("an event without a topic: %v", err)
	}
	if _, err := wire.AppendEnd(nil, &wire.End{Status: 42}); !errors.Is(err, wire.ErrField) {
		t.Errorf("end with status 42: %v", err)
	}
	var cr wire.Credit
	if err := wire.DecodeCredit(frames[5].frame, &cr); err != nil || cr.Chunks != 8 || cr.ID != (wire.ID{Node: 5, Seq: 6}) {
		t.Errorf("credit = %+v, %v", cr, err)
	}
	if _, err := wire.AppendCredit(nil, &wire.Credit{}); !errors.Is(err, wire.ErrField) {
		t.Errorf("a credit of 0: %v", err)
	}
	// A stream request: its first credit in an extension entry, which a
	// node of before ignores.
	req := wire.Request{ID: wire.ID{Node: 5, Seq: 6}, Route: []byte("feed")}
	wire.AskStream(&req, 16)
	b, err := wire.AppendRequest(nil, &req)
	var got wire.Request
	if err != nil || wire.DecodeRequest(b, &got) != nil || wire.StreamCredit(&got) != 16 || wire.StreamCredit(&wire.Request{}) != 0 {
		t.Errorf("stream credit did not travel: %v", err)
	}
	// A kind past what this package knows: KindOf refuses it, PrefixOf
	// still reads its ID so that it can be answered.
	unknown := bytes.Clone(frames[0].frame)
	unknown[1] = 200
	if _, err := wire.KindOf(unknown); !errors.Is(err, wire.ErrKind) {
		t.Errorf("KindOf(kind 200) = %v", err)
	}
	if k, id, err := wire.PrefixOf(unknown); err != nil || k != 200 || id != (wire.ID{Node: 5, Seq: 6}) || k.Protocol() != 0 {
		t.Errorf("PrefixOf = %v %v %v", k, id, err)
	}
	if _, _, err := wire.PrefixOf(unknown[:19]); !errors.Is(err, wire.ErrTruncated) {
		t.Errorf("PrefixOf(19 bytes) = %v", err)
	}
}
