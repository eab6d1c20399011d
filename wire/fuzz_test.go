package wire_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

// seed adds the golden frames and some near-misses to a fuzz corpus; more
// seeds live under testdata/fuzz/<FuzzName>/.
func seed(f *testing.F) {
	for _, name := range []string{"request.bin", "reply.bin", "error.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0})
	labeled := sampleRequest()
	labeled.Flags, labeled.Labels = wire.FlagGhost|wire.FlagTiming, []byte("+flag,exp=B")
	b, err := wire.AppendRequest(nil, labeled)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

// Every decoder must either reject a frame or accept one that encodes back
// to the very same bytes (the format is canonical), and never panic.
func FuzzDecodeRequest(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var r wire.Request
		if wire.DecodeRequest(frame, &r) != nil {
			return
		}
		out, err := wire.AppendRequest(nil, &r)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		if !bytes.Equal(out, frame) {
			t.Fatalf("round trip changed the frame\n in %x\nout %x", frame, out)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var r wire.Reply
		if wire.DecodeReply(frame, &r) != nil {
			return
		}
		for k, v := range r.Header.All() {
			_, _ = k, v
		}
		out, err := wire.AppendReply(nil, &r)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		if !bytes.Equal(out, frame) {
			t.Fatalf("round trip changed the frame\n in %x\nout %x", frame, out)
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var e wire.Error
		if wire.DecodeError(frame, &e) != nil {
			return
		}
		out, err := wire.AppendError(nil, &e)
		if err != nil {
			t.Fatalf("decoded frame does not encode: %v", err)
		}
		if !bytes.Equal(out, frame) {
			t.Fatalf("round trip changed the frame\n in %x\nout %x", frame, out)
		}
	})
}
