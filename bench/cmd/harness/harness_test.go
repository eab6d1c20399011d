package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmokeHello runs the fasthttp hello case end to end, briefly, and checks
// the report files; it asserts behaviour, not speed.
func TestSmokeHello(t *testing.T) {
	out := t.TempDir()
	md, err := run(context.Background(), config{
		dur: 300 * time.Millisecond, warm: 100 * time.Millisecond, sweepDur: 300 * time.Millisecond,
		conns: 4, out: out, wrk: false, plots: true, stamp: "smoke", maxSweepSteps: 2,
		cases: map[string]bool{"hello": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md, "| "+nameHello+" | loadgen |") || !strings.Contains(md, "| 1.00 |") {
		t.Errorf("table lacks the hello row:\n%s", md)
	}
	b, err := os.ReadFile(filepath.Join(out, "smoke.md"))
	if err != nil || string(b) != md {
		t.Errorf("written table differs or missing: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(out, "latency.png")); err != nil || fi.Size() == 0 {
		t.Errorf("latency.png: %v", err)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   450.00us  300.00us  12.00ms   90.00%
    Req/Sec    85.00k     3.00k   90.00k    70.00%
  Latency Distribution
     50%  440.00us
     75%  600.00us
     90%    1.20ms
     99%    2.40ms
  425000 requests in 5.00s, 50.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  85000.12
Transfer/sec:     10.00MB
BENCH_P999_US 7610
BENCH_MAX_US 12000
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 85000.12 || r.P50 != 440*time.Microsecond || r.P90 != 1200*time.Microsecond ||
		r.P99 != 2400*time.Microsecond || r.P999 != 7610*time.Microsecond || r.Max != 12*time.Millisecond ||
		r.Errors != 5 || r.Non2xx != 7 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parseWrk("garbage"); err == nil {
		t.Error("want an error for output without Requests/sec")
	}
}

func TestNginxConfProxiesWithKeepalive(t *testing.T) {
	c := nginxConf("/tmp/x", 1234, "127.0.0.1:99")
	for _, want := range []string{"listen 127.0.0.1:1234", "server 127.0.0.1:99; keepalive", "proxy_http_version 1.1", "daemon off"} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
}
