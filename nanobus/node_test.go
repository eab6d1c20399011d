package nanobus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/wire"
)

func TestConcurrentCalls(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)

	const workers, each = 32, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := fmt.Sprintf("%d-%d", w, i)
				resp, err := caller.Call(context.Background(), "echo", "echo", []byte(body))
				if err != nil {
					errs <- err
					return
				}
				if resp.Status != 200 || string(resp.Body) != body {
					errs <- fmt.Errorf("got %d %q, want 200 %q", resp.Status, resp.Body, body)
				}
				resp.Release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%v\ncaller %+v\nservice %+v", err, caller.Stats(), svc.Stats())
	}
	cs, ss := caller.Stats(), svc.Stats()
	if cs.Calls != workers*each || cs.Replies != workers*each || ss.Handled != workers*each {
		t.Fatalf("calls %d replies %d handled %d, want %d each", cs.Calls, cs.Replies, ss.Handled, workers*each)
	}
	if cs.InFlight != 0 {
		t.Fatalf("in flight after all returned: %d", cs.InFlight)
	}
	// The service counts a handler done after its reply is out.
	eventually(t, "service idle", func() bool { return svc.Stats().Serving == 0 })
}

// Three askers call one service: each must receive exactly its own replies
// (a broadcast reply would show up at the others as stale or unknown).
func TestReplyReachesOnlyTheAsker(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	askers := make([]*nanobus.Node, 3)
	for i := range askers {
		askers[i] = newNode(t, nanobus.Config{})
		connect(t, askers[i], svc)
	}
	const each = 200
	var wg sync.WaitGroup
	for _, a := range askers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				resp, err := a.Call(context.Background(), "echo", "echo", []byte(strconv.Itoa(i)))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Release()
			}
		}()
	}
	wg.Wait()
	// One more round trip on each asker's connection, now that every reply
	// above was sent: a copy of another asker's reply sent on it came
	// before this one's reply.
	for _, a := range askers {
		resp, err := a.Call(context.Background(), "echo", "echo", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
	}
	for i, a := range askers {
		s := a.Stats()
		if s.Replies != each+1 || s.StaleReplies != 0 || s.UnknownReplies != 0 || s.LateReplies != 0 {
			t.Errorf("asker %d: replies %d stale %d unknown %d late %d, want %d/0/0/0",
				i, s.Replies, s.StaleReplies, s.UnknownReplies, s.LateReplies, each+1)
		}
	}
}

// Two instances of a service: every request is handled by exactly one.
func TestOneInstancePerRequest(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	handled := make([]atomic.Int64, 2)
	caller := newNode(t, nanobus.Config{})
	for i := range 2 {
		svc := newNode(t, nanobus.Config{Service: "echo"})
		must(t, svc.Handle("echo", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
			handled[i].Add(1)
			mu.Lock()
			seen[string(req.Body)]++
			mu.Unlock()
			return nanobus.Reply{Body: req.Body}, nil
		}))
		connect(t, caller, svc)
	}
	const n = 1000
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 10 {
				resp, err := caller.Call(context.Background(), "echo", "echo", fmt.Appendf(nil, "%d-%d", w, i))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Release()
			}
		}()
	}
	wg.Wait()
	a, b := handled[0].Load(), handled[1].Load()
	if a+b != n {
		t.Fatalf("handled %d + %d = %d, want %d", a, b, a+b, n)
	}
	if a == 0 || b == 0 {
		t.Errorf("one instance got nothing: %d / %d", a, b)
	}
	mu.Lock() // the handlers' writes reach us over TCP, which the race detector cannot see
	defer mu.Unlock()
	for body, k := range seen {
		if k != 1 {
			t.Fatalf("request %s handled %d times", body, k)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct requests handled, want %d", len(seen), n)
	}
}

func TestStatusesAndErrors(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	must(t, svc.Handle("ok", echo))
	must(t, svc.Handle("notfound", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, nanobus.Errorf(404, "no such thing")
	}))
	must(t, svc.Handle("fail", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		return nanobus.Reply{}, errors.New("database on fire")
	}))
	must(t, svc.Handle("panic", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		panic("boom")
	}))
	must(t, svc.Handle("created", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		r := nanobus.Reply{Status: 201}
		r.Header.Add("Location", "/things/1")
		return r, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)

	tests := []struct {
		route      string
		wantStatus int
		wantBody   string
		wantErr    error
	}{
		{"ok", 200, "x", nil},
		{"notfound", 404, "no such thing", nil},
		{"fail", 500, "internal error", nil},
		{"panic", 500, "internal error", nil},
		{"created", 201, "", nil},
		{"missing", 0, "", nanobus.ErrNoRoute},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			resp, err := caller.Call(context.Background(), "s", tt.route, []byte("x"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer resp.Release()
			if resp.Status != tt.wantStatus || string(resp.Body) != tt.wantBody {
				t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	if s := svc.Stats(); s.HandlerErrors != 2 || s.NoRoute != 1 {
		t.Errorf("handler errors %d, no route %d; want 2, 1", s.HandlerErrors, s.NoRoute)
	}
	if _, err := caller.Call(context.Background(), "nobody", "x", nil); !errors.Is(err, nanobus.ErrNoPeer) {
		t.Errorf("call to unknown service: %v, want ErrNoPeer", err)
	}
}

func TestPathValue(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "s"})
	got := make(chan string, 1)
	must(t, svc.Handle("GET /users/{uid}/files/{path...}", func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		got <- req.PathValue("uid") + "|" + req.PathValue("path") + "|" + req.PathValue("nope")
		return nanobus.Reply{}, nil
	}))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	for path, want := range map[string]string{
		"/users/7/files/a/b.txt": "7|a/b.txt|",
		"/users/7/files/x":       "7|x|",
		"/users/7/files/":        "7||",
	} {
		resp, err := caller.Do(context.Background(), "s", &wire.Request{
			Route: []byte("GET /users/{uid}/files/{path...}"), Method: []byte("GET"), Path: []byte(path),
		})
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
		if v := <-got; v != want {
			t.Errorf("%s: PathValue gave %q, want %q", path, v, want)
		}
	}
}

// Frames far larger than the transport's read chunk arrive whole.
func TestLargeBodies(t *testing.T) {
	svc := newNode(t, nanobus.Config{Service: "echo"})
	must(t, svc.Handle("echo", echo))
	caller := newNode(t, nanobus.Config{})
	connect(t, caller, svc)
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 3<<20 + 17} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i * 7)
		}
		resp, err := caller.Call(context.Background(), "echo", "echo", body)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(resp.Body, body) {
			t.Fatalf("%d bytes: body changed on the way", size)
		}
		resp.Release()
	}
}
