package terminator_test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/terminator"
)

// A UDP listener stands in for the DogStatsD agent: the expected metric
// names arrive, tagged by route and status class.
func TestMetricsReachStatsd(t *testing.T) {
	agent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	var mu sync.Mutex
	var got strings.Builder
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, _, err := agent.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			got.Write(buf[:n])
			got.WriteByte('\n')
			mu.Unlock()
		}
	}()

	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{StatsdAddr: agent.LocalAddr().String(), StatsdInterval: 100 * time.Millisecond, LatencySample: 1},
		echoRoutes("echo"), svc)
	for range 5 {
		get(t, "http://"+srv.Addr()+"/echo", nil)
	}
	get(t, "http://"+srv.Addr()+"/nowhere", nil)

	want := []string{
		"terminator.requests:5|c|#route:GET /echo,status:2xx",
		"terminator.latency_ms:",
		"terminator.in_flight:",
		"terminator.bus.calls:5|c",
		"terminator.http.no_route:1|c",
		"terminator.peers:1|g|#service:echo",
	}
	eventually(t, "metrics at the agent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range want {
			if !strings.Contains(got.String(), w) {
				return false
			}
		}
		return true
	})
}
