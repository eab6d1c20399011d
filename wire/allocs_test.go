//go:build !race

package wire_test

// Allocation guards. They run without the race detector only (its
// instrumentation allocates): `make test` runs them in a step of their own,
// go test -run Allocs ./...

import (
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

// Encoding and decoding on the hot path allocate nothing.
func TestZeroAllocs(t *testing.T) {
	req, rep := sampleRequest(), sampleReply()
	buf := make([]byte, 0, 4096)
	frame := encodeRequest(t, req)
	repFrame, _ := wire.AppendReply(nil, rep)
	var dr wire.Request
	var dp wire.Reply
	var h wire.Headers
	newerFrame := newer(t, frame)
	frames := newKindFrames(t)
	var dc wire.Cancel
	var da wire.EventAck
	var ev wire.Event
	var ch wire.Chunk
	var end wire.End
	_ = wire.DecodeEvent(frames[1].frame, &ev)
	_ = wire.DecodeChunk(frames[3].frame, &ch)
	_ = wire.DecodeEnd(frames[4].frame, &end)
	for name, f := range map[string]func(){
		"AppendRequest": func() { buf, _ = wire.AppendRequest(buf[:0], req) },
		"DecodeRequest": func() { _ = wire.DecodeRequest(frame, &dr) },
		"AppendReply":   func() { buf, _ = wire.AppendReply(buf[:0], rep) },
		"DecodeReply":   func() { _ = wire.DecodeReply(repFrame, &dp) },
		"HeadersReuse": func() {
			h.Reset()
			h.Add("Content-Type", "text/plain")
		},
		"DecodeNewerRequest": func() { _ = wire.DecodeRequest(newerFrame, &dr) },
		"AppendCancel":       func() { buf, _ = wire.AppendCancel(buf[:0], &wire.Cancel{ID: req.ID}) },
		"DecodeCancel":       func() { _ = wire.DecodeCancel(frames[0].frame, &dc) },
		"AppendEvent":        func() { buf, _ = wire.AppendEvent(buf[:0], &ev) },
		"DecodeEvent":        func() { _ = wire.DecodeEvent(frames[1].frame, &ev) },
		"AppendEventAck":     func() { buf, _ = wire.AppendEventAck(buf[:0], &wire.EventAck{ID: req.ID}) },
		"DecodeEventAck":     func() { _ = wire.DecodeEventAck(frames[2].frame, &da) },
		"AppendChunk":        func() { buf, _ = wire.AppendChunk(buf[:0], &ch) },
		"DecodeChunk":        func() { _ = wire.DecodeChunk(frames[3].frame, &ch) },
		"AppendEnd":          func() { buf, _ = wire.AppendEnd(buf[:0], &end) },
		"DecodeEnd":          func() { _ = wire.DecodeEnd(frames[4].frame, &end) },
		"ExtensionLookup": func() {
			for k, v := range dr.Ext.All() {
				_, _ = k, v
			}
			_, _ = dr.Ext.Get(0x1234)
		},
		"HeaderLookup": func() {
			for k, v := range dr.Header.All() {
				_, _ = k, v
			}
			_ = dr.Header.Get("x-request-id")
		},
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

// Reading and writing a traceparent allocate nothing.
func TestTraceParentAllocs(t *testing.T) {
	in := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	buf := make([]byte, 0, wire.TraceParentLen)
	if n := testing.AllocsPerRun(100, func() {
		tid, sid, flags, _ := wire.ParseTraceParent(in)
		buf = wire.AppendTraceParent(buf[:0], tid, sid, flags)
	}); n != 0 {
		t.Errorf("parse and append allocate %v times", n)
	}
}
