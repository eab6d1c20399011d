package wire_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

var update = flag.Bool("update", false, "rewrite the golden frames under testdata/")

func sampleRequest() *wire.Request {
	r := &wire.Request{
		ID:          wire.ID{Node: 0x0102030405060708, Seq: 42},
		Deadline:    1767225600123456789,
		From:        []byte("tcp://127.0.0.1:7100"),
		Service:     []byte("profiles"),
		Route:       []byte("GET /profiles/{id}"),
		Method:      []byte("GET"),
		Path:        []byte("/profiles/7"),
		Query:       []byte("fields=name&x=1"),
		Client:      []byte("203.0.113.9"),
		TraceParent: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		Body:        []byte(`{"hello":"world"}`),
	}
	r.Header.Add("Accept", "application/json")
	r.Header.Add("X-Request-Id", "abc-123")
	return r
}

func sampleReply() *wire.Reply {
	r := &wire.Reply{ID: wire.ID{Node: 0x0102030405060708, Seq: 42}, Status: 200, Body: []byte(`{"name":"Ann"}`)}
	r.Header.Add("Content-Type", "application/json")
	return r
}

func sampleError() *wire.Error {
	return &wire.Error{ID: wire.ID{Node: 9, Seq: 10}, Code: wire.CodeBusy, Message: []byte("profiles: 512 calls in flight")}
}

func encodeRequest(t testing.TB, r *wire.Request) []byte {
	t.Helper()
	b, err := wire.AppendRequest(nil, r)
	if err != nil {
		t.Fatalf("AppendRequest: %v", err)
	}
	if len(b) != r.Size() {
		t.Fatalf("Size() = %d, encoded %d bytes", r.Size(), len(b))
	}
	return b
}

func TestRequestRoundTrip(t *testing.T) {
	in := sampleRequest()
	frame := encodeRequest(t, in)
	if k, err := wire.KindOf(frame); err != nil || k != wire.KindRequest {
		t.Fatalf("KindOf = %v, %v", k, err)
	}
	var out wire.Request
	if err := wire.DecodeRequest(frame, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Deadline != in.Deadline {
		t.Fatalf("id/deadline: got %+v %d", out.ID, out.Deadline)
	}
	for _, f := range []struct {
		name     string
		got, exp []byte
	}{
		{"from", out.From, in.From}, {"service", out.Service, in.Service}, {"route", out.Route, in.Route},
		{"method", out.Method, in.Method}, {"path", out.Path, in.Path}, {"query", out.Query, in.Query},
		{"client", out.Client, in.Client}, {"traceparent", out.TraceParent, in.TraceParent}, {"body", out.Body, in.Body},
	} {
		if !bytes.Equal(f.got, f.exp) {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.exp)
		}
	}
	if got := string(out.Header.Get("x-request-id")); got != "abc-123" {
		t.Errorf("Get(x-request-id) = %q", got)
	}
	if out.Header.Get("missing") != nil {
		t.Error("Get(missing) != nil")
	}
	var names []string
	for k, v := range out.Header.All() {
		names = append(names, string(k)+"="+string(v))
	}
	if strings.Join(names, ",") != "Accept=application/json,X-Request-Id=abc-123" {
		t.Errorf("All() = %v", names)
	}
	// Views are capacity-limited: appending to one never clobbers the next field.
	_ = append(out.Path, 'X')
	if string(out.Query) != "fields=name&x=1" {
		t.Errorf("append to Path clobbered Query: %q", out.Query)
	}
}

func TestReplyAndErrorRoundTrip(t *testing.T) {
	frame, err := wire.AppendReply(nil, sampleReply())
	if err != nil {
		t.Fatal(err)
	}
	var r wire.Reply
	if err := wire.DecodeReply(frame, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status != 200 || string(r.Body) != `{"name":"Ann"}` || string(r.Header.Get("content-type")) != "application/json" {
		t.Fatalf("reply = %+v", r)
	}
	frame, err = wire.AppendError(nil, sampleError())
	if err != nil {
		t.Fatal(err)
	}
	var e wire.Error
	if err := wire.DecodeError(frame, &e); err != nil {
		t.Fatal(err)
	}
	if e.Code != wire.CodeBusy || e.ID.Seq != 10 || string(e.Message) != "profiles: 512 calls in flight" {
		t.Fatalf("error = %+v", e)
	}
}

// TestGolden pins the byte layout: an accidental format change fails here.
// Run `go test ./wire -run Golden -update` after a deliberate one (and bump Version).
func TestGolden(t *testing.T) {
	rep, _ := wire.AppendReply(nil, sampleReply())
	errf, _ := wire.AppendError(nil, sampleError())
	for name, frame := range map[string][]byte{
		"request.bin": encodeRequest(t, sampleRequest()),
		"reply.bin":   rep,
		"error.bin":   errf,
	} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, frame, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(frame, want) {
			t.Errorf("%s: encoding changed\n got %x\nwant %x", name, frame, want)
		}
	}
}

// Flags and labels travel; the labels field is there exactly when it is
// not empty (an empty one flagged as present is not canonical).
func TestFlagsAndLabels(t *testing.T) {
	in := sampleRequest()
	in.Flags = wire.FlagGhost | wire.FlagTiming
	in.Labels = []byte("+new-inbox,page=B")
	frame := encodeRequest(t, in)
	var out wire.Request
	if err := wire.DecodeRequest(frame, &out); err != nil {
		t.Fatal(err)
	}
	if out.Flags != in.Flags || string(out.Labels) != string(in.Labels) || string(out.Body) != string(in.Body) {
		t.Fatalf("got flags %x labels %q body %q", out.Flags, out.Labels, out.Body)
	}
	// Without labels the frame is as before flags existed.
	in.Flags, in.Labels = 0, nil
	plain := encodeRequest(t, in)
	if len(plain) != len(frame)-2-len("+new-inbox,page=B") {
		t.Fatalf("labels cost %d bytes, want %d", len(frame)-len(plain), 2+len("+new-inbox,page=B"))
	}
	// Flag 0x4 with an empty labels field: refused.
	pos := 20 + 8
	for range 8 { // from .. traceparent
		pos += 2 + int(plain[pos])<<8 + int(plain[pos+1])
	}
	bad := append(append(bytes.Clone(plain[:pos]), 0, 0), plain[pos:]...)
	bad[3] = 4
	if err := wire.DecodeRequest(bad, &out); !errors.Is(err, wire.ErrField) {
		t.Fatalf("empty flagged labels: %v, want ErrField", err)
	}
	if _, err := wire.AppendRequest(nil, &wire.Request{Flags: 0x100}); !errors.Is(err, wire.ErrFlags) {
		t.Fatalf("encoding an unknown flag: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := encodeRequest(t, sampleRequest())
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"prefix only", good[:20], wire.ErrTruncated},
		{"truncated body", good[:len(good)-1], wire.ErrTruncated},
		{"trailing byte", append(bytes.Clone(good), 0), wire.ErrTrailing},
		{"version", mutate(func(b []byte) []byte { b[0] = 2; return b }), wire.ErrVersion},
		{"kind", mutate(func(b []byte) []byte { b[1] = 9; return b }), wire.ErrKind},
		{"reply as request", mutate(func(b []byte) []byte { b[1] = byte(wire.KindReply); return b }), wire.ErrKind},
		{"extension flag, no area", mutate(func(b []byte) []byte { b[2] = 0x80; return b }), wire.ErrTruncated},
		{"from too long", mutate(func(b []byte) []byte { b[28], b[29] = 0xff, 0xff; return b }), wire.ErrTooLarge},
		{"huge body length", mutate(func(b []byte) []byte {
			n := len(b) - len(`{"hello":"world"}`) - 4
			b[n], b[n+1], b[n+2], b[n+3] = 0xff, 0xff, 0xff, 0xff
			return b
		}), wire.ErrTooLarge},
		{"oversized frame", make([]byte, wire.MaxFrameSize+1), wire.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r wire.Request
			err := wire.DecodeRequest(tt.frame, &r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRequest = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeLimits(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *wire.Request)
		want error
	}{
		{"too many headers", func(r *wire.Request) {
			for i := 0; i < wire.MaxHeaders; i++ {
				r.Header.Add("X-A", "b")
			}
		}, wire.ErrTooLarge},
		{"empty header name", func(r *wire.Request) { r.Header.Add("", "b") }, wire.ErrField},
		{"header value too long", func(r *wire.Request) { r.Header.Add("X-A", strings.Repeat("v", wire.MaxHeaderValue+1)) }, wire.ErrTooLarge},
		{"header block too large", func(r *wire.Request) {
			for i := 0; i < 5; i++ {
				r.Header.Add("X-A", strings.Repeat("v", wire.MaxHeaderValue))
			}
		}, wire.ErrTooLarge},
		{"path too long", func(r *wire.Request) { r.Path = make([]byte, wire.MaxPath+1) }, wire.ErrTooLarge},
		{"method too long", func(r *wire.Request) { r.Method = make([]byte, wire.MaxMethod+1) }, wire.ErrTooLarge},
		{"body too large", func(r *wire.Request) { r.Body = make([]byte, wire.MaxFrameSize) }, wire.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleRequest()
			tt.edit(r)
			if _, err := wire.AppendRequest(nil, r); !errors.Is(err, tt.want) {
				t.Fatalf("AppendRequest = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := wire.AppendReply(nil, &wire.Reply{Status: 42}); !errors.Is(err, wire.ErrField) {
		t.Fatalf("AppendReply(status 42) = %v", err)
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	r := sampleRequest()
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(r.Size()))
	for b.Loop() {
		buf, _ = wire.AppendRequest(buf[:0], r)
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	frame := encodeRequest(b, sampleRequest())
	var r wire.Request
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := wire.DecodeRequest(frame, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeReply(b *testing.B) {
	frame, _ := wire.AppendReply(nil, sampleReply())
	var r wire.Reply
	b.ReportAllocs()
	for b.Loop() {
		if err := wire.DecodeReply(frame, &r); err != nil {
			b.Fatal(err)
		}
	}
}
