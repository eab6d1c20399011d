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
	for name, f := range map[string]func(){
		"AppendRequest": func() { buf, _ = wire.AppendRequest(buf[:0], req) },
		"DecodeRequest": func() { _ = wire.DecodeRequest(frame, &dr) },
		"AppendReply":   func() { buf, _ = wire.AppendReply(buf[:0], rep) },
		"DecodeReply":   func() { _ = wire.DecodeReply(repFrame, &dp) },
		"HeadersReuse": func() {
			h.Reset()
			h.Add("Content-Type", "text/plain")
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
