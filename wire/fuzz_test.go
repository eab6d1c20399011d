package wire_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

// seed adds the golden corpus, frames of every kind (plain and as a newer
// node sends them) and some near-misses to a fuzz corpus; more seeds live
// under testdata/fuzz/<FuzzName>/.
func seed(f *testing.F) {
	for _, g := range goldenCorpus() {
		b, err := os.ReadFile(filepath.Join("testdata", g.name))
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
	labeled.Ext.Add(3, []byte("x"))
	b, err := wire.AppendRequest(nil, labeled)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, k := range newKindFrames(f) {
		f.Add(k.frame)
		f.Add(newer(f, k.frame))
	}
}

// roundTrip checks what every decoder must do: reject a frame, or accept
// one that encodes back to the very same bytes (the format is canonical),
// but for flag bits outside known, which a decoder ignores and an encoder
// never writes; and never panic.
func roundTrip(t *testing.T, frame []byte, known uint16, decode func([]byte) error, encode func() ([]byte, error)) {
	if decode(frame) != nil {
		return
	}
	out, err := encode()
	if err != nil {
		t.Fatalf("decoded frame does not encode: %v", err)
	}
	want := bytes.Clone(frame)
	binary.BigEndian.PutUint16(want[2:], binary.BigEndian.Uint16(want[2:])&(known|0x8000))
	if !bytes.Equal(out, want) {
		t.Fatalf("round trip changed the frame\n in %x\nout %x", want, out)
	}
}

const requestFlags = wire.FlagGhost | wire.FlagTiming | 0x4 | wire.FlagNested

func FuzzDecodeRequest(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var r wire.Request
		roundTrip(t, frame, requestFlags, func(b []byte) error { return wire.DecodeRequest(b, &r) },
			func() ([]byte, error) { return wire.AppendRequest(nil, &r) })
	})
}

func FuzzDecodeReply(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var r wire.Reply
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeReply(b, &r) },
			func() ([]byte, error) {
				for k, v := range r.Header.All() {
					_, _ = k, v
				}
				for k, v := range r.Ext.All() {
					_, _ = k, v
				}
				return wire.AppendReply(nil, &r)
			})
	})
}

func FuzzDecodeError(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var e wire.Error
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeError(b, &e) },
			func() ([]byte, error) { return wire.AppendError(nil, &e) })
	})
}

func FuzzDecodeCancel(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var c wire.Cancel
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeCancel(b, &c) },
			func() ([]byte, error) { return wire.AppendCancel(nil, &c) })
	})
}

func FuzzDecodeEvent(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var e wire.Event
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeEvent(b, &e) },
			func() ([]byte, error) { return wire.AppendEvent(nil, &e) })
	})
}

func FuzzDecodeEventAck(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var a wire.EventAck
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeEventAck(b, &a) },
			func() ([]byte, error) { return wire.AppendEventAck(nil, &a) })
	})
}

func FuzzDecodeChunk(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var c wire.Chunk
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeChunk(b, &c) },
			func() ([]byte, error) { return wire.AppendChunk(nil, &c) })
	})
}

func FuzzDecodeEnd(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var e wire.End
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeEnd(b, &e) },
			func() ([]byte, error) { return wire.AppendEnd(nil, &e) })
	})
}

func FuzzDecodeCredit(f *testing.F) {
	seed(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var c wire.Credit
		roundTrip(t, frame, 0, func(b []byte) error { return wire.DecodeCredit(b, &c) },
			func() ([]byte, error) { return wire.AppendCredit(nil, &c) })
	})
}
