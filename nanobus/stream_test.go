package nanobus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/nanobustest"
	"github.com/terminator-gw/terminator/wire"
)

// counting is a stream handler that sends n chunks ("0", "1"...), each
// with an id header, counting the chunks sent in sent.
func counting(n int, sent *atomic.Int64) nanobus.StreamHandler {
	return func(ctx context.Context, req *nanobus.Request, w *nanobus.StreamWriter) error {
		w.Header.Add("Content-Type", "text/event-stream")
		for i := range n {
			var h wire.Headers
			h.Add("id", strconv.Itoa(i))
			if err := w.Send(h, []byte(strconv.Itoa(i))); err != nil {
				return err
			}
			sent.Add(1)
		}
		return nil
	}
}

// A stream delivers every chunk in order, past many credits, then io.EOF;
// its head carries the handler's status and headers.
func TestStreamDeliversInOrder(t *testing.T) {
	var sent atomic.Int64
	caller, svc := nanobustest.Pair(t, "feed", func(n *nanobus.Node) error {
		return n.HandleStream("feed", counting(500, &sent))
	})
	s, err := caller.Stream(context.Background(), "feed", "feed", nil)
	must(t, err)
	defer s.Close()
	if s.Status != 200 || string(s.Header.Get("content-type")) != "text/event-stream" {
		t.Fatalf("head: %d %v", s.Status, s.Header)
	}
	for i := 0; ; i++ {
		h, body, err := s.Next()
		if err == io.EOF {
			if i != 500 {
				t.Fatalf("EOF after %d chunks", i)
			}
			break
		}
		must(t, err)
		if want := strconv.Itoa(i); string(body) != want || string(h.Get("id")) != want {
			t.Fatalf("chunk %d: id %q body %q", i, h.Get("id"), body)
		}
	}
	if c, s := caller.Stats(), svc.Stats(); c.Malformed != 0 || c.InFlight != 0 || s.Undeliverable != 0 {
		t.Fatalf("caller %+v", c)
	}
}

// A stream is flow controlled: an instance sends no more than its reader's
// credit (the window) before the reader reads.
func TestStreamWaitsForCredit(t *testing.T) {
	var sent atomic.Int64
	caller, _ := nanobustest.Pair(t, "feed", func(n *nanobus.Node) error {
		return n.HandleStream("feed", counting(1000, &sent))
	})
	s, err := caller.Stream(context.Background(), "feed", "feed", nil)
	must(t, err)
	defer s.Close()
	// The window is 16 chunks, the head one of them.
	eventually(t, "the window filled", func() bool { return sent.Load() == 15 })
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if n := sent.Load(); n > 15 {
			t.Fatalf("%d chunks sent on a credit of 15", n)
		}
	}
	for range 8 {
		_, _, err := s.Next()
		must(t, err)
	}
	eventually(t, "a credit let more through", func() bool { return sent.Load() > 15 })
	for {
		if _, _, err := s.Next(); err == io.EOF {
			break
		} else {
			must(t, err)
		}
	}
	if sent.Load() != 1000 || caller.Stats().Malformed != 0 {
		t.Fatalf("sent %d, malformed %d", sent.Load(), caller.Stats().Malformed)
	}
}

// A reader that closes a stream early cancels its handler; a handler that
// fails ends the stream with its status after the chunks it sent.
func TestStreamEnds(t *testing.T) {
	ended := make(chan error, 1)
	caller, svc := nanobustest.Pair(t, "feed", func(n *nanobus.Node) error {
		if err := n.HandleStream("endless", func(ctx context.Context, req *nanobus.Request, w *nanobus.StreamWriter) error {
			for {
				if err := w.Send(wire.Headers{}, []byte("tick")); err != nil {
					ended <- err
					return err
				}
			}
		}); err != nil {
			return err
		}
		return n.HandleStream("failing", func(ctx context.Context, req *nanobus.Request, w *nanobus.StreamWriter) error {
			must(t, w.Send(wire.Headers{}, []byte("one")))
			must(t, w.Send(wire.Headers{}, []byte("two")))
			return nanobus.Errorf(503, "store down")
		})
	})
	s, err := caller.Stream(context.Background(), "feed", "endless", nil)
	must(t, err)
	_, _, err = s.Next()
	must(t, err)
	s.Close()
	if err := receive(t, ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("handler's Send: %v, want context.Canceled", err)
	}
	eventually(t, "the stream's handler counted cancelled", func() bool { return svc.Stats().HandlersCancelled == 1 })

	s, err = caller.Stream(context.Background(), "feed", "failing", nil)
	must(t, err)
	defer s.Close()
	var got []string
	for {
		_, body, err := s.Next()
		if err != nil {
			var se *nanobus.StatusError
			if !errors.As(err, &se) || se.Status != 503 || fmt.Sprint(got) != "[one two]" {
				t.Fatalf("after %v: %v, want status 503 after two chunks", got, err)
			}
			break
		}
		got = append(got, string(body))
	}
	if c := caller.Stats(); c.InFlight != 0 {
		t.Fatalf("calls in flight after the streams: %d", c.InFlight)
	}
}

// Mixed versions: a node of before streams answers a stream call with one
// reply, which reads as a stream of one; a plain call to a stream route is
// answered 400, not with chunks it cannot read.
func TestStreamMixedVersions(t *testing.T) {
	old := newNode(t, nanobus.WithProtocol(nanobus.Config{Service: "old"}, 2))
	must(t, old.Handle("feed", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{Status: 203, Body: []byte("all at once")}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, old)
	s, err := caller.Stream(context.Background(), "old", "feed", nil)
	must(t, err)
	_, body, err := s.Next()
	if err != nil || s.Status != 203 || string(body) != "all at once" {
		t.Fatalf("stream of one: %d %q %v", s.Status, body, err)
	}
	if _, _, err := s.Next(); err != io.EOF {
		t.Fatalf("after the one: %v", err)
	}
	s.Close()

	var sent atomic.Int64
	_, svc := nanobustest.Pair(t, "feed", func(n *nanobus.Node) error {
		return n.HandleStream("feed", counting(3, &sent))
	})
	connect(t, caller, svc)
	resp, err := caller.Call(context.Background(), "feed", "feed", nil)
	must(t, err)
	defer resp.Release()
	if resp.Status != 400 || sent.Load() != 0 {
		t.Fatalf("plain call to a stream route: %d %q", resp.Status, resp.Body)
	}
}

// An instance that breaks the stream's rules breaks the stream, at once
// and counted: a chunk out of order, or chunks past the credit it was
// given (the reader never buffers more than its window).
func TestStreamRulesBroken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		indexes []uint32
		read    int // chunks read before the error
	}{
		{"out of order", []uint32{0, 1, 3}, 1},
		{"past its credit", []uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caller := newNode(t, nanobus.Config{})
			raw := rawInstance(t, caller, "raw")
			got := make(chan error, 1)
			sent, read := make(chan struct{}), make(chan int, 1)
			go func() {
				s, err := caller.Stream(nanobustest.Context(t, 10*time.Second), "raw", "feed", nil)
				if err != nil {
					got <- err
					return
				}
				defer s.Close()
				<-sent // every frame is on its way before the first read
				for n := 0; ; n++ {
					if _, _, err := s.Next(); err != nil {
						read <- n
						got <- err
						return
					}
				}
			}()
			var req wire.Request
			must(t, wire.DecodeRequest(recvFrame(t, raw), &req))
			for _, i := range tc.indexes {
				c := wire.Chunk{ID: req.ID, Index: i, Body: []byte("x")}
				if i == 0 {
					c.Status = 200
				}
				b, err := wire.AppendChunk(nil, &c)
				must(t, err)
				sendRaw(t, raw, b)
			}
			if tc.read > 1 {
				eventually(t, "the chunk past the credit counted", func() bool { return caller.Stats().Malformed == 1 })
			}
			close(sent)
			if n := receive(t, read); n != tc.read {
				t.Errorf("read %d chunks before the error, want %d", n, tc.read)
			}
			if err := receive(t, got); !errors.Is(err, nanobus.ErrMalformed) {
				t.Fatalf("stream: %v, want ErrMalformed", err)
			}
		})
	}
}
