package loadgen

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

// These tests assert accounting, never speed: thresholds are about the
// injected 300ms stall, which dwarfs any scheduling noise.

const stall = 300 * time.Millisecond

// countAtLeast counts recorded values >= d.
func countAtLeast(h *hdrhistogram.Histogram, d time.Duration) int64 {
	var n int64
	for _, b := range h.Distribution() {
		if b.From >= d.Microseconds() {
			n += b.Count
		}
	}
	return n
}

// stallServer is a fasthttp server that stalls once, on request number stallAt.
func stallServer(t *testing.T, stallAt int64) (url string, handled *atomic.Int64) {
	t.Helper()
	handled = &atomic.Int64{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if handled.Add(1) == stallAt {
			time.Sleep(stall)
		}
		ctx.SetBodyString("ok")
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String() + "/", handled
}

func TestOpenLoopSeesStall(t *testing.T) {
	url, handled := stallServer(t, 40)
	res, err := Run(context.Background(), Options{
		URLs: []string{url}, Connections: 1, Rate: 200, Duration: 1200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary())
	if res.Max() < stall-20*time.Millisecond || res.Percentile(99.9) < stall-20*time.Millisecond {
		t.Errorf("open loop must see the stall: max=%v p99.9=%v", res.Max(), res.Percentile(99.9))
	}
	// At 200/s a 300ms stall delays ~60 scheduled requests; every one of them
	// is charged from its intended time, so many exceed 100ms.
	if n := countAtLeast(res.Latency, 100*time.Millisecond); n < 10 {
		t.Errorf("open loop charged only %d requests >= 100ms; coordinated omission?", n)
	}
	if got := res.Requests + res.Unsent; got < 200 {
		t.Errorf("scheduled %d (sent %d + unsent %d), want ~240", got, res.Requests, res.Unsent)
	}
	if res.Requests != handled.Load() {
		t.Errorf("requests %d != server handled %d", res.Requests, handled.Load())
	}
}

func TestClosedLoopRecordsStallOnce(t *testing.T) {
	url, handled := stallServer(t, 40)
	res, err := Run(context.Background(), Options{
		URLs: []string{url}, Connections: 1, Duration: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary())
	if res.Max() < stall-20*time.Millisecond {
		t.Errorf("max=%v, want the stall", res.Max())
	}
	if n := countAtLeast(res.Latency, 200*time.Millisecond); n != 1 {
		t.Errorf("closed loop with one connection records the stall once, got %d", n)
	}
	if res.Requests != handled.Load() || res.Status[200] != res.Requests || res.Errors != 0 {
		t.Errorf("requests=%d handled=%d status=%v errors=%d", res.Requests, handled.Load(), res.Status, res.Errors)
	}
}

// TestStatusAndErrorCounts uses net/http so the handler can abort a
// connection (a transport error for the client) as well as answer 500s.
func TestStatusAndErrorCounts(t *testing.T) {
	var n, n500, aborted, badBody atomic.Int64
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(b) != "ping" || !strings.HasPrefix(r.URL.Path, "/p") {
			badBody.Add(1)
		}
		switch i := n.Add(1); {
		case i%7 == 0:
			aborted.Add(1)
			panic(http.ErrAbortHandler) // closes the connection without a response
		case i%5 == 0:
			n500.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ErrorLog: nil}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close(); wg.Wait() }()
	base := "http://" + ln.Addr().String()
	res, err := Run(context.Background(), Options{
		URLs: []string{base + "/p1", base + "/p2"}, Body: []byte("ping"),
		Connections: 4, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary(), res.ErrorKinds)
	if badBody.Load() != 0 {
		t.Errorf("%d requests arrived without POST /p* and body", badBody.Load())
	}
	if res.Requests != n.Load() {
		t.Errorf("requests %d != server saw %d", res.Requests, n.Load())
	}
	if res.Errors != aborted.Load() || res.Errors == 0 {
		t.Errorf("errors %d, server aborted %d", res.Errors, aborted.Load())
	}
	if res.Status[500] != n500.Load() || res.Non2xx() != n500.Load() {
		t.Errorf("500s %d (non-2xx %d), server sent %d", res.Status[500], res.Non2xx(), n500.Load())
	}
	if res.Status[200]+res.Status[500]+res.Errors != res.Requests {
		t.Errorf("counts do not add up: %v errors=%d requests=%d", res.Status, res.Errors, res.Requests)
	}
	if res.Admitted.TotalCount() != res.Status[200] || res.Latency.TotalCount() != res.Requests-res.Errors {
		t.Errorf("histograms: admitted %d latency %d", res.Admitted.TotalCount(), res.Latency.TotalCount())
	}
}

func TestWarmupExcluded(t *testing.T) {
	url, handled := stallServer(t, 5) // the stall lands in the warm-up
	res, err := Run(context.Background(), Options{
		URLs: []string{url}, Connections: 1, Warmup: 500 * time.Millisecond, Duration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Max() >= 200*time.Millisecond {
		t.Errorf("warm-up stall leaked into the measurement: max=%v", res.Max())
	}
	if res.Requests >= handled.Load() {
		t.Errorf("warm-up requests counted: %d of %d", res.Requests, handled.Load())
	}
}

func TestRefusesRemote(t *testing.T) {
	for _, u := range []string{"http://10.1.2.3/", "http://example.com/", "http://0.0.0.0:80/"} {
		if _, err := Run(context.Background(), Options{URLs: []string{u}, Duration: time.Millisecond}); err == nil {
			t.Errorf("%s: want refusal", u)
		}
	}
	if _, err := Run(context.Background(), Options{URLs: []string{"http://127.0.0.1:1/"}}); err == nil {
		t.Error("zero duration: want an error (runs are bounded)")
	}
	// Refused connections are counted as errors, not dropped.
	res, err := Run(context.Background(), Options{URLs: []string{"http://127.0.0.1:1/"}, Connections: 2, Duration: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Errors != res.Requests {
		t.Errorf("errors=%d requests=%d", res.Errors, res.Requests)
	}
}

// OnWindow brackets the measured window, in order, even when the run is
// cancelled before the window opens; completions are split by status.
func TestOnWindowBracketsTheWindow(t *testing.T) {
	url, _ := stallServer(t, -1)
	type call struct {
		open bool
		at   time.Time
	}
	for _, cancelEarly := range []bool{false, true} {
		var mu sync.Mutex
		var calls []call
		ctx, cancel := context.WithCancel(context.Background())
		if cancelEarly {
			cancel()
		}
		start := time.Now()
		res, err := Run(ctx, Options{URLs: []string{url}, Connections: 2, Warmup: 100 * time.Millisecond, Duration: 200 * time.Millisecond,
			OnWindow: func(open bool) { mu.Lock(); calls = append(calls, call{open, time.Now()}); mu.Unlock() }})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if len(calls) != 2 || !calls[0].open || calls[1].open {
			t.Fatalf("cancelled=%v: calls %+v, want open then close", cancelEarly, calls)
		}
		if !cancelEarly && (calls[0].at.Sub(start) < 100*time.Millisecond || calls[1].at.Sub(start) < 300*time.Millisecond) {
			t.Errorf("window called at %v and %v after start, want after the warm-up and the duration", calls[0].at.Sub(start), calls[1].at.Sub(start))
		}
		mu.Unlock()
		var sum int64
		for _, n := range res.CompletedStatus {
			sum += n
		}
		if sum != res.Completed || (!cancelEarly && res.CompletedStatus[200] == 0) {
			t.Errorf("cancelled=%v: CompletedStatus %v does not add up to Completed %d", cancelEarly, res.CompletedStatus, res.Completed)
		}
	}
}

// In open loop a slow answer must not delay the next send: with room to
// open connections, a stall costs the stalled request only, and the
// generator sends on time; with a fixed set, the requests queued behind
// it are charged the wait and counted late. Either way every slot is sent
// or counted unsent.
func TestOpenLoopOpensConnections(t *testing.T) {
	for _, tc := range []struct {
		name            string
		maxConns        int
		wantSlowAtMost  int64 // requests >= 100ms
		wantSlowAtLeast int64
		wantLateAtLeast int64
		wantPeak        func(int) bool
	}{
		{name: "fixed", maxConns: 0, wantSlowAtMost: 1 << 30, wantSlowAtLeast: 10, wantLateAtLeast: 10, wantPeak: func(n int) bool { return n == 1 }},
		{name: "grows", maxConns: 64, wantSlowAtMost: 3, wantPeak: func(n int) bool { return n >= 2 && n <= 64 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, handled := stallServer(t, 40)
			res, err := Run(context.Background(), Options{
				URLs: []string{url}, Connections: 1, MaxConnections: tc.maxConns, Rate: 200, Duration: 1200 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res.Summary(), "late:", res.Late, "peak conns:", res.PeakConnections)
			if res.Max() < stall-20*time.Millisecond {
				t.Errorf("the stalled request must be charged: max=%v", res.Max())
			}
			slow := countAtLeast(res.Latency, 100*time.Millisecond)
			if slow < tc.wantSlowAtLeast || slow > tc.wantSlowAtMost {
				t.Errorf("%d requests >= 100ms, want %d..%d", slow, tc.wantSlowAtLeast, tc.wantSlowAtMost)
			}
			if res.Late < tc.wantLateAtLeast {
				t.Errorf("late %d, want >= %d", res.Late, tc.wantLateAtLeast)
			}
			if !tc.wantPeak(res.PeakConnections) {
				t.Errorf("peak connections %d", res.PeakConnections)
			}
			if got := res.Requests + res.Unsent; got < 200 {
				t.Errorf("scheduled %d (sent %d + unsent %d), want ~240", got, res.Requests, res.Unsent)
			}
			if res.Requests != handled.Load() {
				t.Errorf("requests %d != server handled %d", res.Requests, handled.Load())
			}
			if res.SendLag.TotalCount() != res.Requests {
				t.Errorf("send lag recorded for %d of %d requests", res.SendLag.TotalCount(), res.Requests)
			}
		})
	}
}

// MaxConnections bounds the connections even when every answer is slow;
// what cannot go out on time is counted late.
func TestOpenLoopConnectionBound(t *testing.T) {
	var open atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) { time.Sleep(50 * time.Millisecond) },
		ConnState: func(_ net.Conn, s fasthttp.ConnState) {
			switch s {
			case fasthttp.StateNew:
				open.Add(1)
			case fasthttp.StateClosed:
				open.Add(-1)
			}
		},
	}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })
	// 400/s of 50ms answers would need ~20 connections; 4 are allowed.
	res, err := Run(context.Background(), Options{URLs: []string{"http://" + ln.Addr().String() + "/"},
		Connections: 1, MaxConnections: 4, Rate: 400, Duration: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.Summary(), "late:", res.Late, "peak conns:", res.PeakConnections, "server saw open:", open.Load())
	if res.PeakConnections != 4 || res.MaxConnections != 4 {
		t.Errorf("peak %d of max %d, want 4 of 4", res.PeakConnections, res.MaxConnections)
	}
	if res.Late == 0 {
		t.Error("four connections cannot carry 400/s of 50ms answers: want late requests")
	}
	if res.CPU <= 0 {
		t.Error("the generator's CPU over the window was not measured")
	}
}
