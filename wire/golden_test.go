package wire_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

// The golden corpus: frames of protocol 1 as its encoder wrote them
// (generated once, with -update, from the encoder of before protocol 2;
// the bytes are committed). Every later decoder must accept each one and
// decode it to the values it was made from: a node of today must keep
// understanding a node of then, in the middle of a rollout.

type goldenFrame struct {
	name string
	req  *wire.Request
	rep  *wire.Reply
	err  *wire.Error
}

func goldenCorpus() []goldenFrame {
	id := wire.ID{Node: 0xfeedfacecafebeef, Seq: 7<<32 | 0x9abcdef0}
	flagged := sampleRequest()
	flagged.ID, flagged.Flags, flagged.Labels = id, wire.FlagGhost|wire.FlagTiming, []byte("+new-inbox,page=B")
	ghost := sampleRequest()
	ghost.Flags = wire.FlagGhost
	labels := sampleRequest()
	labels.Labels = []byte("checkout=v2")
	headers := sampleRequest()
	headers.Header.Reset()
	headers.Header.Add("Cookie", "a=1; b=2")
	headers.Header.Add("cookie", "c=3") // repeated, other case: both kept, in order
	headers.Header.Add("X-Empty", "")
	headers.Header.AddBytes([]byte("X-Bytes"), []byte{0xc3, 0xa9, 0x00, 0xff})
	headers.Body = []byte{0, 1, 2, 0xfe, 0xff}
	internal := &wire.Request{ID: id, Deadline: -1, From: []byte("tls+tcp://[::1]:7100"), Service: []byte("visits"),
		Route: []byte("visits.count"), Body: []byte("42")}

	replyHeaders := &wire.Reply{ID: id, Status: 503, Body: []byte("busy")}
	replyHeaders.Header.Add("Retry-After", "1")
	replyHeaders.Header.Add("Server-Timing", `profiles;desc="v2";dur=0.412`)
	replyHeaders.Header.Add("Set-Cookie", "a=1")
	replyHeaders.Header.Add("Set-Cookie", "b=2")

	out := []goldenFrame{
		{name: "request.bin", req: sampleRequest()},
		{name: "request-flags-labels.bin", req: flagged},
		{name: "request-ghost.bin", req: ghost},
		{name: "request-labels.bin", req: labels},
		{name: "request-headers.bin", req: headers},
		{name: "request-empty.bin", req: &wire.Request{}},
		{name: "request-internal.bin", req: internal},
		{name: "reply.bin", rep: sampleReply()},
		{name: "reply-empty.bin", rep: &wire.Reply{Status: 204}},
		{name: "reply-headers.bin", rep: replyHeaders},
		{name: "error.bin", err: sampleError()},
		{name: "error-empty.bin", err: &wire.Error{ID: id, Code: wire.CodeNoRoute}},
	}
	for code := wire.CodeBusy; code <= wire.CodeUnavailable; code++ {
		out = append(out, goldenFrame{name: fmt.Sprintf("error-%d.bin", code),
			err: &wire.Error{ID: id, Code: code, Message: []byte(code.String())}})
	}
	return out
}

func (g goldenFrame) encode(t testing.TB) []byte {
	t.Helper()
	var b []byte
	var err error
	switch {
	case g.req != nil:
		b, err = wire.AppendRequest(nil, g.req)
	case g.rep != nil:
		b, err = wire.AppendReply(nil, g.rep)
	default:
		b, err = wire.AppendError(nil, g.err)
	}
	if err != nil {
		t.Fatalf("%s: %v", g.name, err)
	}
	return b
}

func headerList(h *wire.Headers) string {
	var s []string
	for k, v := range h.All() {
		s = append(s, fmt.Sprintf("%q=%q", k, v))
	}
	return strings.Join(s, ",")
}

// TestGoldenCorpus: every frame of the corpus decodes to what it was made
// from. Run with -update only to add frames; never rewrite existing ones.
func TestGoldenCorpus(t *testing.T) {
	for _, g := range goldenCorpus() {
		path := filepath.Join("testdata", g.name)
		if *update {
			if err := os.WriteFile(path, g.encode(t), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		frame, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(g.name, func(t *testing.T) {
			switch {
			case g.req != nil:
				var r wire.Request
				if err := wire.DecodeRequest(frame, &r); err != nil {
					t.Fatal(err)
				}
				want := g.req
				if r.ID != want.ID || r.Flags != want.Flags || r.Deadline != want.Deadline {
					t.Errorf("id, flags, deadline = %v %x %d, want %v %x %d", r.ID, r.Flags, r.Deadline, want.ID, want.Flags, want.Deadline)
				}
				for _, f := range [][3]any{
					{"from", r.From, want.From}, {"service", r.Service, want.Service}, {"route", r.Route, want.Route},
					{"method", r.Method, want.Method}, {"path", r.Path, want.Path}, {"query", r.Query, want.Query},
					{"client", r.Client, want.Client}, {"traceparent", r.TraceParent, want.TraceParent},
					{"labels", r.Labels, want.Labels}, {"body", r.Body, want.Body},
				} {
					if !bytes.Equal(f[1].([]byte), f[2].([]byte)) {
						t.Errorf("%s = %q, want %q", f[0], f[1], f[2])
					}
				}
				if got, exp := headerList(&r.Header), headerList(&want.Header); got != exp {
					t.Errorf("headers = %s, want %s", got, exp)
				}
			case g.rep != nil:
				var r wire.Reply
				if err := wire.DecodeReply(frame, &r); err != nil {
					t.Fatal(err)
				}
				want := g.rep
				if r.ID != want.ID || r.Status != want.Status || !bytes.Equal(r.Body, want.Body) {
					t.Errorf("reply = %v %d %q, want %v %d %q", r.ID, r.Status, r.Body, want.ID, want.Status, want.Body)
				}
				if got, exp := headerList(&r.Header), headerList(&want.Header); got != exp {
					t.Errorf("headers = %s, want %s", got, exp)
				}
			default:
				var e wire.Error
				if err := wire.DecodeError(frame, &e); err != nil {
					t.Fatal(err)
				}
				if want := g.err; e.ID != want.ID || e.Code != want.Code || !bytes.Equal(e.Message, want.Message) {
					t.Errorf("error = %v %v %q, want %v %v %q", e.ID, e.Code, e.Message, want.ID, want.Code, want.Message)
				}
			}
			// What protocol 1 wrote, today's encoder still writes: a frame
			// without extensions is byte for byte the same.
			if b := g.encode(t); !bytes.Equal(b, frame) {
				t.Errorf("encoding changed\n got %x\nwant %x", b, frame)
			}
		})
	}
}
